"""Ledger steps through the local cloud: reserve and settle latency and throughput, hot account vs many.

Each step is a Lambda invoke through the edge (the way Step Functions calls it), so a figure includes the
Lambda API, the warm worker, the service's read and the DynamoDB transaction. The baseline in the same run is
a bare DynamoDB GetItem through the same edge. Write units per step come from ReturnConsumedCapacity.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its sibling is a module
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' event builders
from localcloud_bench import ROOT, client, percentile, start_cloud, stop_cloud
from support.apigw import proxy_event


class GaveUp(Exception):
    """A step still failed with a retryable error after every attempt the state machine would make."""


# The errors the transfer state machine retries (infra/statemachines/transfer.asl.json), and how often.
RETRYABLE = {"ConcurrentModification", "TransientError"}
SAGA_ATTEMPTS = 6  # the ASL's transient retrier: 5 retries


class Ledger:
    def __init__(self, state: dict[str, Any]) -> None:
        from botocore.config import Config

        from vaultpay_cli.target import local_client

        config = Config(max_pool_connections=64, read_timeout=60, retries={"max_attempts": 0})
        self.lam = local_client("lambda", state["endpoints"]["edge"], config=config)
        self.names = {v["logical_id"]: k for k, v in state["functions"].items()}

        self.retries = 0
        self._lock = threading.Lock()

    def invoke(self, logical_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One step as the state machine runs it: a retryable error is retried with jittered back-off."""
        for attempt in range(SAGA_ATTEMPTS):
            response = self.lam.invoke(
                FunctionName=self.names[logical_id], Payload=json.dumps(payload).encode()
            )
            body = json.loads(response["Payload"].read())
            if not response.get("FunctionError"):
                return dict(body)
            if body.get("errorType") in RETRYABLE and attempt == SAGA_ATTEMPTS - 1:
                raise GaveUp(body.get("errorType"))
            if body.get("errorType") not in RETRYABLE:
                raise RuntimeError(f"{logical_id}: {body.get('errorType')}: {body.get('errorMessage')}")
            with self._lock:
                self.retries += 1
            time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))  # noqa: S311 - jitter, not security
        raise AssertionError("unreachable")

    def open_account(self, user_id: str) -> str:
        response = self.invoke(
            "CreateAccountFunction",
            proxy_event(
                "POST",
                "/v1/accounts",
                user_id=user_id,
                body={"type": "CURRENT", "currency": "INR"},
                idempotency_key=uuid.uuid4().hex,
            ),
        )
        assert response["statusCode"] == 201, response
        return str(json.loads(response["body"])["account_id"])

    def deposit(self, account_id: str, amount: int) -> None:
        body = {"account_id": account_id, "amount": amount, "currency": "INR", "reference": "bench"}
        response = self.invoke(
            "AdminDepositFunction",
            proxy_event(
                "POST",
                "/v1/admin/deposits",
                user_id="ops",
                role="admin",
                body=body,
                idempotency_key=uuid.uuid4().hex,
            ),
        )
        assert response["statusCode"] == 201, response


def step(transfer_id: str, source: str, amount: int, destination: str | None = None) -> dict[str, Any]:
    event = {
        "transfer_id": transfer_id,
        "source_account_id": source,
        "amount": amount,
        "currency": "INR",
        "correlation_id": transfer_id,
    }
    if destination:
        event["destination_account_id"] = destination
    return event


def run_steps(
    ledger: Ledger, sources: list[str], destinations: list[str], n: int, threads: int
) -> dict[str, Any]:
    """n transfers (reserve, then settle), round-robin over sources and destinations, `threads` at once."""
    reserves: list[float] = []
    settles: list[float] = []
    retries_before = ledger.retries
    gave_up: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        source = sources[i % len(sources)]
        destination = destinations[(i + 1) % len(destinations)]
        if destination == source:
            destination = destinations[(i + 2) % len(destinations)]
        transfer_id = f"bench-{uuid.uuid4().hex}"
        began = time.perf_counter()
        try:
            ledger.invoke("ReserveFundsFunction", step(transfer_id, source, 100))
            mid = time.perf_counter()
            ledger.invoke("SettleTransferFunction", step(transfer_id, source, 100, destination))
        except GaveUp:
            with lock:
                gave_up.append(transfer_id)
            return
        reserves.append((mid - began) * 1000)
        settles.append((time.perf_counter() - mid) * 1000)

    began = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(n)))
    elapsed = time.perf_counter() - began
    return {
        "reserve_p50": statistics.median(reserves),
        "reserve_p99": percentile(reserves, 99),
        "settle_p50": statistics.median(settles),
        "settle_p99": percentile(settles, 99),
        "transfers_per_s": (n - len(gave_up)) / elapsed,
        "gave_up": len(gave_up),
        "retries": ledger.retries - retries_before,
        "n": n,
        "threads": threads,
    }


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's item size in bytes (attribute names plus values, as AWS documents it for capacity)."""

    def value_size(value: dict[str, Any]) -> int:
        ((kind, inner),) = value.items()
        if kind == "S":
            return len(inner.encode())
        if kind == "N":
            digits = inner.lstrip("-").replace(".", "").lstrip("0") or "0"
            return (len(digits) + 1) // 2 + 1
        if kind in ("BOOL", "NULL"):
            return 1
        if kind == "M":
            return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in inner.items())
        if kind == "L":
            return 3 + sum(value_size(v) + 1 for v in inner)
        if kind in ("SS", "NS"):
            return sum(value_size({kind[0]: v}) for v in inner)
        return len(inner)

    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(
    state: dict[str, Any], table: str, source: str, destination: str
) -> dict[str, dict[str, float]]:
    """Write units of each step's transaction: as DynamoDB Local reports them (ReturnConsumedCapacity), and
    by AWS's rules from the items written (2 WCU per KB per transactional item, 1 per KB per GSI row)."""
    from vaultpay.accounts.service import AccountsService
    from vaultpay.accounts.store import DynamoLedgerStore

    ddb = client(state, "dynamodb")
    indexes = [
        (
            [k["AttributeName"] for k in index["KeySchema"]],
            index["Projection"]["ProjectionType"],
        )
        for index in ddb.describe_table(TableName=table)["Table"].get("GlobalSecondaryIndexes", [])
    ]
    written: list[dict[str, Any]] = []
    transact = ddb.transact_write_items

    def recording(**kwargs: Any) -> Any:
        response = transact(**kwargs)
        written[:] = kwargs["TransactItems"]
        return response

    ddb.transact_write_items = recording

    def aws_units() -> float:
        units = 0.0
        for entry in written:
            ((_action, spec),) = entry.items()
            key = spec.get("Key") or {"pk": spec["Item"]["pk"], "sk": spec["Item"]["sk"]}
            image = ddb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item") or key
            size = item_size(image)
            units += 2 * -(-size // 1024)
            for keys, projection in indexes:
                if all(k in image for k in keys):
                    projected = size if projection == "ALL" else item_size({k: image[k] for k in keys})
                    units += -(-projected // 1024)
        return units

    store = DynamoLedgerStore(ddb, table)
    service = AccountsService(store=store, cipher=None, index=None, currencies=frozenset({"INR"}))  # type: ignore[arg-type]
    units: dict[str, dict[str, float]] = {}

    def measure(name: str) -> None:
        units[name] = {"items": len(written), "local": store.last_write_units, "aws": aws_units()}

    transfer_id = f"wcu-{uuid.uuid4().hex}"
    service.deposit("bench", source, 1_000, "INR", "wcu", "wcu")
    measure("deposit")
    service.reserve(step(transfer_id, source, 100))
    measure("reserve")
    service.settle(step(transfer_id, source, 100, destination))
    measure("settle")
    released = f"wcu-{uuid.uuid4().hex}"
    service.reserve(step(released, source, 100))
    service.release(step(released, source, 100))
    measure("release")
    return units


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transfers", type=int, default=300)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--accounts", type=int, default=32)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "ledger-results.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, state, _ = start_cloud(Path(tmp) / "s")
        try:
            status = json.loads(
                urllib.request.urlopen(state["endpoints"]["edge"] + "/_localcloud/status", timeout=10).read()  # noqa: S310
            )
            table = next(
                s["outputs"]["AccountsTableName"]
                for s in status["stacks"]
                if "AccountsTableName" in s["outputs"]
            )
            ledger = Ledger(state)
            payees = [ledger.open_account(f"bench-payee-{i}") for i in range(args.accounts)]
            hot = ledger.open_account("bench-hot")
            ledger.deposit(hot, 10**11)
            many = [ledger.open_account(f"bench-{i}") for i in range(args.accounts)]
            for account_id in many:
                ledger.deposit(account_id, 10**9)
            run_steps(ledger, many, payees, 16, 4)  # warm every worker
            ddb = client(state, "dynamodb")
            key = {"pk": {"S": f"ACCOUNT#{hot}"}, "sk": {"S": "ACCOUNT"}}
            floor = []
            for _ in range(200):
                began = time.perf_counter()
                ddb.get_item(TableName=table, Key=key, ConsistentRead=True)
                floor.append((time.perf_counter() - began) * 1000)
            sequential = run_steps(ledger, many, payees, args.transfers // 3, 1)
            hot_result = run_steps(ledger, [hot], payees, args.transfers, args.threads)
            many_result = run_steps(ledger, many, payees, args.transfers, args.threads)
            units = write_units(state, table, many[0], payees[0])
            reconcile = subprocess.run(
                [sys.executable, "-m", "vaultpay_cli.main", "ops", "reconcile", "--table", table],
                env={**os.environ, "AWS_ENDPOINT_URL": state["endpoints"]["edge"],
                     "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                     "AWS_DEFAULT_REGION": "us-east-1"},
                capture_output=True, text=True, check=False,
            )  # fmt: skip
        finally:
            stop_cloud(proc)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    rows = [
        "# Ledger benchmark (bench/ledger_bench.py)",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit.strip()}, "
        f"{platform.machine()}, {platform.python_version()}, cores: {os.cpu_count()}",
        "",
        "Each transfer = ReserveFunds invoke then SettleTransfer invoke through the edge",
        "(Lambda API → warm worker → DynamoDB Local), payees spread over as many accounts. Latencies in ms",
        "include the retries the state machine would make (ConcurrentModification after the service's own",
        "10 optimistic attempts; counted in the last column).",
        "",
        "| Run | threads | transfers | reserve p50 | reserve p99 | settle p50 | settle p99 | transfers/s "
        "| step retries | gave up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in (
        ("sequential, many accounts", sequential),
        ("one hot source account", hot_result),
        (f"{args.accounts} source accounts", many_result),
    ):
        rows.append(
            f"| {name} | {result['threads']} | {result['n']} | {result['reserve_p50']:.1f} | "
            f"{result['reserve_p99']:.1f} | {result['settle_p50']:.1f} | {result['settle_p99']:.1f} | "
            f"{result['transfers_per_s']:.1f} | {result['retries']} | {result['gave_up']} |"
        )
    rows += [
        "",
        "Baseline in the same run: DynamoDB GetItem (consistent) through the edge"
        f" p50 {statistics.median(floor):.2f} ms, p99 {percentile(floor, 99):.2f} ms.",
        "",
        "Write units per step. DynamoDB Local's ReturnConsumedCapacity for a transaction does not depend on",
        "the items (it reports the same figure for 4 and 6 items), so the AWS column applies AWS's rules to",
        "the items actually written: 2 WCU per started KB per transactional item, plus 1 per KB for each",
        "GSI row the item has (ByOwner projects ALL, so each account update writes it too).",
        "",
        "| Step | items in the transaction | WCU reported by DynamoDB Local | WCU by AWS rules |",
        "|---|---|---|---|",
        *[
            f"| {name} | {value['items']:g} | {value['local']:g} | {value['aws']:g} |"
            for name, value in units.items()
        ],
        "",
        "A completed transfer = reserve + settle"
        f" = {units['reserve']['aws'] + units['settle']['aws']:g} WCU in the ledger by AWS rules.",
        "",
        f"`vaultpay ops reconcile` after the run: exit {reconcile.returncode}",
        "",
        "```",
        reconcile.stdout.strip()[-3000:],
        "```",
    ]
    text = "\n".join(rows) + "\n"
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

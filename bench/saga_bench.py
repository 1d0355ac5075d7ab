"""The transfer saga end to end (issue 6 "Measure and report"): throughput and latency through the whole
system against the engine's ceiling in the same run, and what one transfer costs at AWS list prices.

In one run against a fresh local cloud (the project template plus bench/fixtures/template.yaml):

1. Engine ceiling: SixTaskMachine (six no-op Lambda tasks, as many as the saga's happy path has), run to
   completion with the same concurrency as the transfers.
2. Transfers: signed-in customers (MFA), funded by admin deposits, send small transfers (the APPROVE path)
   with `POST /v1/transfers`; a transfer is done when its `vaultpay.transaction.completed` event reaches
   JetStream (an ordered consumer of stream VAULTPAY, started before the run): no GET polls the API, whose
   requests and authorizer calls would compete with the saga for the same cores.
3. Per transfer: state transitions and Lambda invocations from GetExecutionHistory, the synchronous and
   asynchronous invocations around it from the local cloud's status, durations from the REPORT lines, and
   DynamoDB write units by AWS's rules from the Streams records of one transfer run alone.
4. Cost per million transfers at AWS list prices (PRICES below).

Exits non-zero if any transfer does not complete (or its event never reaches JetStream).
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import itertools
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its siblings are modules
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' HTTP helpers
from ledger_bench import item_size
from localcloud_bench import ROOT, client, percentile, start_cloud, stop_cloud
from runinfo import write_figures
from support.bank import create_admin, deposit, open_account, signed_in_admin, signed_in_customer
from support.http import ApiClient

RUPEE = 100  # paise
COMPLETED_SUBJECT = "vaultpay.transaction.completed"
STREAM = "VAULTPAY"
TERMINAL = {"COMPLETED", "DECLINED", "FAILED", "IN_REVIEW"}  # IN_REVIEW: not terminal, but not APPROVE
HAPPY_PATH_TASKS = 6
# The review machine's states for an approved review (review.asl.json: ReviewWindow, AwaitReview,
# ReviewDecided, Approved, ResumeTransfer): what a reviewed transfer adds in Standard transitions.
REVIEW_TRANSITIONS = 5
EXPRESS_MEMORY_GB = 64 / 1024  # one 64 MB step: the saga's definition and payload are far smaller
LOG_EVENT_OVERHEAD = 26  # bytes CloudWatch Logs counts per event on top of its message

# AWS list prices, us-east-1, as of 2026-11-28 (sources in PRICE_SOURCES; no free tier, first tiers).
PRICES: dict[str, float] = {
    "sfn_per_transition": 0.025 / 1_000,  # Step Functions Standard, per state transition
    "sfn_express_per_request": 1.00 / 1_000_000,  # Step Functions Express, per execution started
    "sfn_express_per_gb_s": 0.00001667,  # Express duration, first tier (64 MB steps, 100 ms steps)
    "logs_ingest_per_gb": 0.50,  # CloudWatch Logs ingestion (vended logs, first 10 TB a month)
    "lambda_per_request": 0.20 / 1_000_000,  # Lambda requests
    "lambda_per_gb_s_arm64": 0.0000133334,  # Lambda duration, arm64, first tier
    "ddb_per_wru": 0.625 / 1_000_000,  # DynamoDB on-demand write request unit (since 2024-11-01)
    "apigw_rest_per_request": 3.50 / 1_000_000,  # API Gateway REST API, first 333 M requests a month
}
PRICE_SOURCES = [
    "Step Functions: https://aws.amazon.com/step-functions/pricing/ (Standard, $0.025 per 1,000 state "
    "transitions; Express, $1.00 per million requests and $0.00001667 per GB-second for the first 1,000 "
    "hours GB a month, billed in 100 ms steps and 64 MB memory steps; US East (N. Virginia))",
    "CloudWatch Logs: https://aws.amazon.com/cloudwatch/pricing/ (vended logs, $0.50 per GB ingested, first "
    "10 TB a month)",
    "Lambda: https://aws.amazon.com/lambda/pricing/ ($0.20 per 1M requests; Arm $0.0000133334 per GB-s, "
    "first 7.5 billion GB-s a month; init duration billed since 2025-08-01)",
    "DynamoDB: https://aws.amazon.com/dynamodb/pricing/on-demand/ ($0.625 per million write request units "
    "in us-east-1 since the 50 % on-demand price cut of 2024-11-01; before it $1.25)",
    "API Gateway: https://aws.amazon.com/api-gateway/pricing/ (REST APIs, $3.50 per million requests, "
    "first 333 million a month)",
]

# The only plain (non-transactional) writes to the three streamed tables: the rescue's and the sweeper's
# marks on OUTBOX items (failure path only: the relay writes nothing) and the review record
# (vaultpay.fraud.store, UpdateItem on REVIEW#...). Every other write there is a TransactWriteItems
# (accounts, transfers and fraud stores, the fraud consumer).
PLAIN_WRITE_PREFIXES = ("REVIEW#",)


# ---- the cloud ---------------------------------------------------------------------------------------------


@dataclass
class Cloud:
    """The running local cloud: its endpoints, functions, and what /_localcloud/status reports."""

    state: dict[str, Any]
    state_dir: Path

    def status(self) -> dict[str, Any]:
        url = self.state["endpoints"]["edge"] + "/_localcloud/status"
        return dict(json.loads(urllib.request.urlopen(url, timeout=10).read()))  # noqa: S310

    def client(self, service: str) -> Any:
        return client(self.state, service)

    def function_name(self, logical_id: str) -> str:
        return next(str(k) for k, v in self.state["functions"].items() if v["logical_id"] == logical_id)

    def logical_id(self, name: str) -> str:
        return str(self.state["functions"].get(name, {}).get("logical_id", name))

    def table(self, logical_id: str) -> str:
        tables = [str(t) for stack in self.status()["stacks"] for t in stack["tables"]]
        return next(t for t in tables if t.endswith("-" + logical_id))

    def invocations(self) -> dict[str, int]:
        return {name: int(s["invocations"]) for name, s in self.status()["lambda"].items()}


def completed_events(endpoints: dict[str, Any]) -> int:
    """`vaultpay.transaction.completed` messages in stream VAULTPAY (JetStream's per-subject count)."""
    import nats

    from localcloud.nats_security import operator_options
    from vaultpay.events.jetstream import server_list

    async def count() -> int:
        nc = await nats.connect(
            server_list(endpoints["nats"]),
            connect_timeout=5,
            max_reconnect_attempts=0,
            **operator_options(endpoints),
        )
        try:
            info = await nc.jetstream().stream_info(STREAM, subjects_filter=COMPLETED_SUBJECT)
            return int((info.state.subjects or {}).get(COMPLETED_SUBJECT, 0))
        finally:
            await nc.close()

    return asyncio.run(count())


# ---- 1. the engine's ceiling -------------------------------------------------------------------------------


def engine_ceiling(
    cloud: Cloud, executions: int, concurrency: int, machine: str = "SixTaskMachine"
) -> dict[str, Any]:
    """`machine`'s executions to completion, `concurrency` at a time (closed loop, as the transfers):
    SixTaskMachine (six no-op tasks), or SameDefinitionNoopMachine (the saga's definition, no-op tasks)."""
    from botocore.config import Config

    from vaultpay_cli.target import local_client

    config = Config(max_pool_connections=max(10, concurrency * 2))
    sfn = local_client("stepfunctions", cloud.state["endpoints"]["edge"], config=config)
    arn = next(
        m["stateMachineArn"]
        for m in sfn.list_state_machines()["stateMachines"]
        if m["name"].endswith(machine)
    )

    def run_one(_: int) -> tuple[str, float]:
        began = time.perf_counter()
        execution = sfn.start_execution(stateMachineArn=arn, name=f"ceiling-{uuid.uuid4()}", input="{}")
        while True:
            status = sfn.describe_execution(executionArn=execution["executionArn"])["status"]
            if status != "RUNNING":
                return str(status), time.perf_counter() - began
            time.sleep(0.05)

    with ThreadPoolExecutor(concurrency) as pool:  # warm the Noop workers and moto's engine
        list(pool.map(run_one, range(concurrency)))
    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(run_one, range(executions)))
    elapsed = time.perf_counter() - began
    latencies = [seconds for _, seconds in results]
    return {
        "executions": executions,
        "succeeded": sum(1 for status, _ in results if status == "SUCCEEDED"),
        "seconds": elapsed,
        "per_second": executions / elapsed,
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 99),
    }


# ---- 2. transfers through the whole system -----------------------------------------------------------------


@dataclass
class Customer:
    client: ApiClient
    user_id: str
    account_id: str
    account_number: str


@dataclass
class Outcome:
    transfer_id: str
    status: str
    seconds: float  # POST sent -> COMPLETED seen
    gets: int
    body: dict[str, Any] = field(default_factory=dict)


def user_id_of(client: ApiClient) -> str:
    """The `sub` of the client's access token (a JWT; read, not verified)."""
    import base64

    payload = (client.token or "").split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["sub"])


def customers(
    cloud: Cloud, api: Callable[..., ApiClient], admin: ApiClient, n: int, balance: int
) -> list[Customer]:
    """n customers signed in over HTTP with MFA (tests/support/bank.py), one funded account each."""

    def make(i: int) -> Customer:
        client = signed_in_customer(api, device_id=f"saga-bench-phone-{i}")
        account = open_account(client)
        reply = deposit(admin, account["account_id"], balance)
        assert reply.status == 201, reply.body
        return Customer(client, user_id_of(client), account["account_id"], account["account_number"])

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(make, range(n)))


class CompletionWatcher:
    """`vaultpay.transaction.completed` events as they reach JetStream: when each transfer's arrived.

    An ordered push consumer of stream VAULTPAY (the operator's NATS login, TLS), from the moment it starts,
    on a thread of its own; `wait(transfer_id)` blocks until that transfer's event is in, or times out."""

    def __init__(self, endpoints: dict[str, Any]) -> None:
        self._endpoints = endpoints
        self._arrived: dict[str, float] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._consume()), daemon=True)

    def __enter__(self) -> CompletionWatcher:
        self._thread.start()
        if not self._ready.wait(30):
            raise SystemExit("could not subscribe to JetStream for the completed events")
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _consume(self) -> None:
        import nats
        from nats.js.api import DeliverPolicy

        from localcloud.nats_security import operator_options
        from vaultpay.events.jetstream import server_list

        nc = await nats.connect(
            server_list(self._endpoints["nats"]), connect_timeout=5, **operator_options(self._endpoints)
        )

        async def arrived(message: Any) -> None:
            at = time.perf_counter()
            event = json.loads(message.data)
            transfer_id = str(event.get("subject") or (event.get("data") or {}).get("transfer_id"))
            with self._changed:
                self._arrived.setdefault(transfer_id, at)
                self._changed.notify_all()

        subscription = await nc.jetstream().subscribe(
            COMPLETED_SUBJECT,
            stream=STREAM,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
            cb=arrived,
        )
        self._ready.set()
        await asyncio.to_thread(self._stop.wait)
        await subscription.unsubscribe()
        await nc.close()

    def wait(self, transfer_id: str, timeout_s: float) -> float | None:
        """When (time.perf_counter) the transfer's completed event arrived; None after `timeout_s`."""
        with self._changed:
            self._changed.wait_for(lambda: transfer_id in self._arrived, timeout_s)
            return self._arrived.get(transfer_id)


def send(
    sender: Customer, payee: Customer, amount: int, watcher: CompletionWatcher, timeout_s: float
) -> Outcome:
    """POST one transfer with an Idempotency-Key, then wait for its completed event on JetStream."""
    body = {
        "source_account_id": sender.account_id,
        "destination_account_number": payee.account_number,
        "amount": amount,
        "currency": "INR",
        "description": "saga bench",
    }
    began = time.perf_counter()
    reply = sender.client.post(
        "/v1/transfers", body, headers={"Idempotency-Key": f"saga-bench-{uuid.uuid4()}"}
    )
    if reply.status != 202:
        return Outcome("-", f"HTTP {reply.status}: {reply.body}", 0.0, 0)
    transfer_id = str(reply.body["transfer_id"])
    arrived = watcher.wait(transfer_id, timeout_s)
    if arrived is not None:
        return Outcome(transfer_id, "COMPLETED", arrived - began, 0)
    # Not completed in time: one GET says where it is (DECLINED, FAILED, still PROCESSING...)
    got = sender.client.get(f"/v1/transfers/{transfer_id}")
    status = str(got.body.get("status")) if got.status == 200 else f"HTTP {got.status}"
    return Outcome(transfer_id, f"{status}, no completed event in {timeout_s:.0f} s", 0.0, 1, dict(got.body))


def plan(senders: list[Customer], payees: list[Customer], transfers: int) -> list[tuple[Customer, Customer]]:
    """Round robin: transfer i goes from sender i mod n to payee i mod n (a different customer)."""
    return [(senders[i % len(senders)], payees[i % len(payees)]) for i in range(transfers)]


def run_transfers(
    cloud: Cloud, pairs: list[tuple[Customer, Customer]], amount: int, threads: int
) -> dict[str, Any]:
    endpoints = cloud.state["endpoints"]
    events_before = completed_events(endpoints)
    invocations_before = cloud.invocations()
    window_start = time.time()
    with CompletionWatcher(endpoints) as watcher:
        began = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            outcomes = list(pool.map(lambda pair: send(pair[0], pair[1], amount, watcher, 180.0), pairs))
    all_completed = time.perf_counter() - began
    done = [o for o in outcomes if o.status == "COMPLETED"]
    events = completed_events(endpoints) - events_before
    deadline = time.perf_counter() + 120
    while events < len(done) and time.perf_counter() < deadline:
        time.sleep(0.1)
        events = completed_events(endpoints) - events_before
    events_out = time.perf_counter() - began
    window_end = time.time()
    time.sleep(2)  # the relay's last batches and the log shipper
    invocations_after = cloud.invocations()
    return {
        "outcomes": outcomes,
        "completed": len(done),
        "events": events,
        "seconds_completed": all_completed,
        "seconds_events": events_out,
        "per_second": len(done) / events_out,
        "per_second_completed": len(done) / all_completed,
        "p50": statistics.median(o.seconds for o in done) if done else math.nan,
        "p99": percentile([o.seconds for o in done], 99) if done else math.nan,
        "gets": sum(o.gets for o in outcomes),
        "invocations": {
            name: invocations_after.get(name, 0) - invocations_before.get(name, 0)
            for name in invocations_after
            if invocations_after.get(name, 0) - invocations_before.get(name, 0)
        },
        "window": (window_start, window_end),
    }


# ---- 3. per transfer: executions, Lambda, DynamoDB ---------------------------------------------------------


def execution_counts(cloud: Cloud, transfer_ids: Iterable[str]) -> dict[str, Any]:
    """State transitions (*StateEntered) and Lambda tasks (LambdaFunctionScheduled) per execution."""
    sfn = cloud.client("stepfunctions")
    arn = next(
        m["stateMachineArn"]
        for m in sfn.list_state_machines()["stateMachines"]
        if m["name"].endswith("-transfer")
    )
    prefix = arn.replace(":stateMachine:", ":execution:")
    described = sfn.describe_state_machine(stateMachineArn=arn)
    express = described.get("type") == "EXPRESS"
    log_group = (
        described["loggingConfiguration"]["destinations"][0]["cloudWatchLogsLogGroup"]["logGroupArn"]
        .split(":log-group:", 1)[1]
        .removesuffix(":*")
    )
    logs = cloud.client("logs")
    entered: list[int] = []
    scheduled: list[int] = []
    billed_s: list[float] = []
    log_bytes: list[int] = []
    by_function: Counter[str] = Counter()
    states: Counter[str] = Counter()
    ids = list(transfer_ids)
    for transfer_id in ids:
        execution = sfn.describe_execution(executionArn=f"{prefix}:{transfer_id}")
        seconds = (execution["stopDate"] - execution["startDate"]).total_seconds()
        billed_s.append(math.ceil(seconds * 10) / 10)  # Express bills duration in 100 ms steps
        pages = logs.get_paginator("filter_log_events").paginate(
            logGroupName=log_group, filterPattern=f'"{transfer_id}"'
        )
        log_bytes.append(
            sum(len(e["message"].encode()) + LOG_EVENT_OVERHEAD for page in pages for e in page["events"])
        )
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": f"{prefix}:{transfer_id}", "maxResults": 1000}
        while True:
            page = sfn.get_execution_history(**kwargs)
            events += page["events"]
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        entered.append(sum(1 for e in events if e["type"].endswith("StateEntered")))
        lambdas = [e for e in events if e["type"] == "LambdaFunctionScheduled"]
        scheduled.append(len(lambdas))
        for event in lambdas:
            resource = event["lambdaFunctionScheduledEventDetails"]["resource"]
            by_function[resource.rsplit(":", 1)[-1]] += 1
        for event in events:
            if event["type"].endswith("StateEntered"):
                states[event["stateEnteredEventDetails"]["name"]] += 1
    return {
        "sample": len(ids),
        "transitions": statistics.mean(entered),
        "transitions_range": (min(entered), max(entered)),
        "lambda_tasks": statistics.mean(scheduled),
        "express": express,
        "billed_s": statistics.mean(billed_s),
        "log_bytes": statistics.mean(log_bytes),
        "by_function": {name: count / len(ids) for name, count in by_function.items()},
        "states": sorted(states, key=lambda s: -states[s]),
    }


REPORT = re.compile(
    r"^(?P<at>\S+) \S+ REPORT RequestId: \S+\tDuration: (?P<duration>[\d.]+) ms\t"
    r"Billed Duration: (?P<billed>\d+) ms\tMemory Size: (?P<memory>\d+) MB"
)


def durations(cloud: Cloud, window: tuple[float, float]) -> dict[str, dict[str, float]]:
    """Per function, from its REPORT lines in the run's window: invokes, mean duration and billed ms, MB."""
    out: dict[str, dict[str, float]] = {}
    for path in sorted((cloud.state_dir / "logs" / "lambda").glob("*.log")):
        rows = []
        for line in path.read_text(errors="replace").splitlines():
            match = REPORT.match(line)
            if not match:
                continue
            at = calendar.timegm(time.strptime(match["at"][:19], "%Y-%m-%dT%H:%M:%S"))
            if window[0] - 1 <= at <= window[1] + 1:
                rows.append((float(match["duration"]), float(match["billed"]), float(match["memory"])))
        if rows:
            out[path.stem] = {
                "reports": len(rows),
                "duration_ms": statistics.mean(r[0] for r in rows),
                "billed_ms": statistics.mean(r[1] for r in rows),
                "memory_mb": rows[0][2],
            }
    return out


class StreamReader:
    """Every Streams record of a table from the moment `mark()` is called (LATEST iterators per shard)."""

    def __init__(self, ddb: Any, streams: Any, table: str) -> None:
        self.table = table
        self._streams = streams
        description = ddb.describe_table(TableName=table)["Table"]
        self.arn = description["LatestStreamArn"]
        self.key_names = [k["AttributeName"] for k in description["KeySchema"]]
        self.indexes = [
            (
                index["IndexName"],
                [k["AttributeName"] for k in index["KeySchema"]],
                index["Projection"]["ProjectionType"],
                list(index["Projection"].get("NonKeyAttributes", [])),
            )
            for index in description.get("GlobalSecondaryIndexes", [])
        ]
        self._iterators: dict[str, str | None] = {}
        self.records: list[dict[str, Any]] = []

    def _shards(self) -> list[dict[str, Any]]:
        shards: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"StreamArn": self.arn}
        while True:
            page = self._streams.describe_stream(**kwargs)["StreamDescription"]
            shards += page["Shards"]
            if not page.get("LastEvaluatedShardId"):
                return shards
            kwargs["ExclusiveStartShardId"] = page["LastEvaluatedShardId"]

    def mark(self) -> None:
        for shard in self._shards():
            if "EndingSequenceNumber" not in shard["SequenceNumberRange"]:
                self._iterators[shard["ShardId"]] = self._streams.get_shard_iterator(
                    StreamArn=self.arn, ShardId=shard["ShardId"], ShardIteratorType="LATEST"
                )["ShardIterator"]

    def poll(self) -> int:
        """Reads what arrived since the last poll; shards born since `mark()` are read from their start."""
        for shard in self._shards():
            if shard["ShardId"] not in self._iterators:
                self._iterators[shard["ShardId"]] = self._streams.get_shard_iterator(
                    StreamArn=self.arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
        new = 0
        for shard_id, iterator in list(self._iterators.items()):
            while iterator:
                page = self._streams.get_records(ShardIterator=iterator, Limit=1000)
                self.records += page["Records"]
                new += len(page["Records"])
                iterator = page.get("NextShardIterator")
                if not page["Records"]:
                    break
            self._iterators[shard_id] = iterator
        return new


def gsi_units(
    indexes: list[tuple[str, list[str], str, list[str]]],
    table_keys: list[str],
    old: dict[str, Any],
    new: dict[str, Any],
) -> float:
    """Write units of the GSI rows one table write causes (AWS: 1 per started KB of the projected row;
    an update that moves the index key deletes the old row and puts the new one)."""

    def projected(image: dict[str, Any], keys: list[str], kind: str, extra: list[str]) -> int:
        if kind == "ALL":
            return item_size(image)
        wanted = set(table_keys) | set(keys) | (set(extra) if kind == "INCLUDE" else set())
        return item_size({k: v for k, v in image.items() if k in wanted})

    units = 0.0
    for _name, keys, kind, extra in indexes:
        in_old = bool(old) and all(k in old for k in keys)
        in_new = bool(new) and all(k in new for k in keys)
        if in_old and in_new:
            if any(old[k] != new[k] for k in keys):
                units += kb(projected(old, keys, kind, extra)) + kb(projected(new, keys, kind, extra))
            elif projected_view(old, keys, kind, extra, table_keys) != projected_view(
                new, keys, kind, extra, table_keys
            ):
                units += kb(max(projected(old, keys, kind, extra), projected(new, keys, kind, extra)))
        elif in_new:
            units += kb(projected(new, keys, kind, extra))
        elif in_old:
            units += kb(projected(old, keys, kind, extra))
    return units


def projected_view(
    image: dict[str, Any], keys: list[str], kind: str, extra: list[str], table_keys: list[str]
) -> dict[str, Any]:
    if kind == "ALL":
        return image
    wanted = set(table_keys) | set(keys) | (set(extra) if kind == "INCLUDE" else set())
    return {k: v for k, v in image.items() if k in wanted}


def kb(size: int) -> int:
    return max(1, -(-size // 1024))


@dataclass
class WriteRow:
    table: str
    what: str
    writes: int = 0
    base: float = 0.0
    gsi: float = 0.0


def classify(record: dict[str, Any]) -> tuple[str, bool]:
    """(what the record is, whether it was a plain write rather than a TransactWriteItems item)."""
    data = record["dynamodb"]
    image = data.get("NewImage") or data.get("OldImage") or {}
    pk, sk = key_of(record)
    kind = next(iter(image.get("kind", {}).values()), "") or sk.split("#", 1)[0].lower()
    if kind == "outbox" and record["eventName"] == "MODIFY":
        return "outbox item marked (rescue or sweeper, failure path)", True
    if pk.startswith(PLAIN_WRITE_PREFIXES):
        return f"{kind} (UpdateItem)", True
    verb = {"INSERT": "put", "MODIFY": "update", "REMOVE": "delete"}[record["eventName"]]
    return f"{kind} {verb} (transaction)", False


def key_of(record: dict[str, Any]) -> tuple[str, str]:
    keys = record["dynamodb"].get("Keys", {})
    return next(iter(keys.get("pk", {}).values()), ""), next(iter(keys.get("sk", {}).values()), "")


def related(record: dict[str, Any], tokens: set[str]) -> bool:
    """The record names the transfer, its parties or its events (a login's device sighting does not count:
    the fraud consumer may fold an earlier login into the profile meanwhile)."""
    if key_of(record)[1].startswith("DEVICE#"):
        return False
    text = json.dumps(record["dynamodb"], default=str)
    return any(token in text for token in tokens)


def scheduled_functions() -> set[str]:
    """Logical ids of the template's functions that a schedule invokes (a fixed rate, not per transfer)."""
    from samtranslator.yaml_helper import yaml_parse

    resources = yaml_parse((ROOT / "template.yaml").read_text())["Resources"]
    return {
        logical_id
        for logical_id, resource in resources.items()
        if resource.get("Type") == "AWS::Serverless::Function"
        and any(
            event.get("Type") in ("Schedule", "ScheduleV2")
            for event in (resource.get("Properties", {}).get("Events") or {}).values()
        )
    }


def lone_transfer_writes(
    cloud: Cloud, sender: Customer, payee: Customer, amount: int, consumer_wait_s: float
) -> dict[str, Any]:
    """One transfer alone: every Streams record of the three domain tables it caused, in write units by
    AWS's rules, plus the counters and idempotency records of the tables without a stream (scan diff)."""
    ddb, streams = cloud.client("dynamodb"), cloud.client("dynamodbstreams")
    readers = [
        StreamReader(ddb, streams, cloud.table(name))
        for name in ("AccountsTable", "TransfersTable", "FraudTable")
    ]
    unstreamed = [
        cloud.table(name)
        for name in (
            "AuthRateLimitTable",
            "TransfersIdempotencyTable",
            "TransfersRateLimitTable",
            "FraudCountersTable",
        )
    ]
    before = {table: scan(ddb, table) for table in unstreamed}
    for reader in readers:
        reader.mark()
    endpoints = cloud.state["endpoints"]
    events_before = completed_events(endpoints)
    invocations_before = cloud.invocations()
    body = {
        "source_account_id": sender.account_id,
        "destination_account_number": payee.account_number,
        "amount": amount,
        "currency": "INR",
        "description": "saga bench",
    }
    reply = sender.client.post("/v1/transfers", body, headers={"Idempotency-Key": f"lone-{uuid.uuid4()}"})
    if reply.status != 202:
        raise SystemExit(f"the lone transfer was refused: {reply.status} {reply.body}")
    transfer_id = str(reply.body["transfer_id"])
    sfn = cloud.client("stepfunctions")
    arn = next(
        m["stateMachineArn"].replace(":stateMachine:", ":execution:") + ":" + transfer_id
        for m in sfn.list_state_machines()["stateMachines"]
        if m["name"].endswith("-transfer")
    )
    deadline = time.monotonic() + 120
    while True:  # the execution's own status: no GET /v1/transfers, so no API calls but the POST
        try:
            status = sfn.describe_execution(executionArn=arn)["status"]
        except sfn.exceptions.ExecutionDoesNotExist:
            status = "STARTING"
        if status not in ("RUNNING", "STARTING"):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"the lone transfer {transfer_id} did not finish")
        time.sleep(0.1)
    if status != "SUCCEEDED":
        raise SystemExit(f"the lone transfer {transfer_id} ended {status}")
    while completed_events(endpoints) <= events_before:
        if time.monotonic() > deadline:
            raise SystemExit(f"the lone transfer's completed event never reached {STREAM}")
        time.sleep(0.1)
    # The relay marks its outbox items published after publishing; the fraud consumer (a schedule,
    # rate(1 minute)) folds the completed event into the sender's profile. Read until both are seen.
    tokens = {transfer_id, sender.user_id, sender.account_id, payee.account_id}
    consumer_seen = False
    outbox_ids: set[str] = set()
    settle_deadline = time.monotonic() + consumer_wait_s
    while time.monotonic() < settle_deadline:
        for reader in readers:
            reader.poll()
        records = [(r, rec) for r in readers for rec in r.records]
        outbox_ids = {
            next(iter(rec["dynamodb"]["Keys"]["pk"].values())).split("#", 1)[1]
            for _, rec in records
            if rec["eventName"] == "INSERT"
            and rec["dynamodb"].get("NewImage", {}).get("kind", {}).get("S") == "outbox"
            and related(rec, tokens)
        }
        marked = {
            next(iter(rec["dynamodb"]["Keys"]["pk"].values())).split("#", 1)[1]
            for _, rec in records
            if rec["eventName"] == "MODIFY"
            and rec["dynamodb"].get("NewImage", {}).get("kind", {}).get("S") == "outbox"
        }
        consumer_seen = any(key_of(rec) == (f"PROFILE#{sender.user_id}", "PROFILE") for _, rec in records)
        if outbox_ids and outbox_ids <= marked and consumer_seen:
            break
        time.sleep(0.5)
    time.sleep(1)
    for reader in readers:
        reader.poll()
    invocations = {
        name: count - invocations_before.get(name, 0)
        for name, count in cloud.invocations().items()
        if count - invocations_before.get(name, 0)
    }
    tokens |= {f"OUTBOX#{i}" for i in outbox_ids} | {f"EVENT#{i}" for i in outbox_ids}
    rows: dict[tuple[str, str], WriteRow] = {}
    for reader in readers:
        for record in reader.records:
            if record.get("userIdentity"):  # a TTL deletion: free
                continue
            if not related(record, tokens):
                continue
            what, plain = classify(record)
            data = record["dynamodb"]
            old, new = data.get("OldImage", {}), data.get("NewImage", {})
            size = max(item_size(old) if old else 0, item_size(new) if new else 0)
            short = reader.table.rsplit("-", 1)[-1]
            row = rows.setdefault((short, what), WriteRow(short, what))
            row.writes += 1
            row.base += kb(size) * (1 if plain else 2)
            row.gsi += gsi_units(reader.indexes, reader.key_names, old, new)
    after = {table: scan(ddb, table) for table in unstreamed}
    for table in unstreamed:
        for what, writes, units in unstreamed_writes(before[table], after[table], tokens):
            short = table.rsplit("-", 1)[-1]
            row = rows.setdefault((short, what), WriteRow(short, what))
            row.writes += writes
            row.base += units
    return {
        "transfer_id": transfer_id,
        "rows": sorted(rows.values(), key=lambda r: (r.table, r.what)),
        "consumer_seen": consumer_seen,
        "invocations": invocations,
    }


def scan(ddb: Any, table: str) -> dict[str, dict[str, Any]]:
    items: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = ddb.scan(**kwargs)
        for item in page["Items"]:
            key = item.get("pk") or item.get("id") or {}
            items[json.dumps(key, sort_keys=True)] = item
        if not page.get("LastEvaluatedKey"):
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def unstreamed_writes(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]], tokens: set[str]
) -> list[tuple[str, int, float]]:
    """Writes to a table without a stream, from a scan before and after: a counter's increase is that many
    UpdateItems (ADD); a new Powertools idempotency record is a PutItem (INPROGRESS) then an UpdateItem
    (COMPLETED), both counted at the final size. Keys that belong to other users are ignored."""
    out: list[tuple[str, int, float]] = []
    for key, item in after.items():
        old = before.get(key)
        if old == item:
            continue
        if "count" in item:
            if not any(t in json.dumps(item) for t in tokens):
                continue
            increments = int(item["count"]["N"]) - (int(old["count"]["N"]) if old else 0)
            scope = next(iter(item["pk"].values())).split("#")[:2]
            out.append(
                (f"counter {'#'.join(scope)} (UpdateItem ADD)", increments, increments * kb(item_size(item)))
            )
        elif "status" in item and old is None:
            out.append(("idempotency record (PutItem + UpdateItem)", 2, 2 * kb(item_size(item))))
        else:
            out.append(("other item (1 write)", 1, kb(item_size(item))))
    return out


# ---- 4. cost -----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transfers", type=int, default=120)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--per-user", type=int, default=4, help="transfers per sender in the whole run (≤ 5)")
    parser.add_argument("--amount", type=int, default=10 * RUPEE, help="paise, the same for every transfer")
    parser.add_argument("--sample", type=int, default=20, help="executions whose history is read")
    parser.add_argument("--single", type=int, default=10, help="transfers sent one at a time, for the p50")
    parser.add_argument(
        "--review-share",
        type=float,
        default=0.01,
        help="share of transfers sent to human review, for the cost of the Standard review machine",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "saga-results.md")
    args = parser.parse_args()
    if not 1 <= args.per_user <= 5:
        parser.error("--per-user must be 1..5: the VELOCITY rule reviews a sixth transfer in a minute")
    senders_needed = -(-args.transfers // args.per_user)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp) / "s"
        proc, state, startup = start_cloud(state_dir)
        try:
            cloud = Cloud(state, state_dir)
            addresses = (f"127.1.{a}.{b}" for a, b in itertools.product(range(0, 250), range(2, 250)))
            lock = threading.Lock()

            def api(device_id: str = "saga-bench") -> ApiClient:
                with lock:
                    return ApiClient(state["endpoints"]["api"], next(addresses), device_id)

            admin = signed_in_admin(api, create_admin(cloud))
            began = time.perf_counter()
            people = customers(cloud, api, admin, senders_needed + args.threads * 2 + 2, 10_000 * RUPEE)
            setup_s = time.perf_counter() - began
            senders = people[:senders_needed]
            warm = people[senders_needed : senders_needed + args.threads * 2]
            lone_sender, lone_payee = people[-2], people[-1]
            payees = senders[1:] + senders[:1] if len(senders) > 1 else [lone_payee]
            # Warm every saga function to the run's concurrency (cold starts stay out of the figures).
            run_transfers(cloud, list(zip(warm, warm[1:] + warm[:1], strict=True)), args.amount, args.threads)
            ceiling = engine_ceiling(cloud, args.transfers, args.threads)
            same = engine_ceiling(cloud, args.transfers, args.threads, "SameDefinitionNoopMachine")
            run = run_transfers(cloud, plan(senders, payees, args.transfers), args.amount, args.threads)
            # One transfer in flight at a time: the saga's own latency, without queueing behind others
            lone_pairs = list(zip(warm, warm[1:] + warm[:1], strict=True))[: args.single]
            single = run_transfers(cloud, lone_pairs, args.amount, 1)
            failed = [o for o in run["outcomes"] + single["outcomes"] if o.status != "COMPLETED"]
            if failed or run["events"] < args.transfers:
                for outcome in failed[:10]:
                    print(
                        f"not completed: {outcome.transfer_id}: {outcome.status} {outcome.body}",
                        file=sys.stderr,
                    )
                raise SystemExit(
                    f"{len(failed)} of {args.transfers} transfers did not complete; "
                    f"{run['events']} completed events in {STREAM}"
                )
            sample = [o.transfer_id for o in run["outcomes"]][:: max(1, args.transfers // args.sample)]
            executions = execution_counts(cloud, sample[: args.sample])
            lone = lone_transfer_writes(cloud, lone_sender, lone_payee, args.amount, 75.0)
            reports = durations(cloud, run["window"])
        finally:
            stop_cloud(proc)
    load_after = os.getloadavg()
    text, figures = report(
        args,
        startup,
        setup_s,
        ceiling,
        same,
        run,
        single,
        executions,
        lone,
        reports,
        cloud,
        (load_before, load_after),
    )
    args.out.write_text(text)
    write_figures(args.out, "saga", figures)  # bench/saga-results.json, read by bench/results.py
    print(text)


def report(
    args: argparse.Namespace,
    startup: float,
    setup_s: float,
    ceiling: dict[str, Any],
    same: dict[str, Any],
    run: dict[str, Any],
    single: dict[str, Any],
    executions: dict[str, Any],
    lone: dict[str, Any],
    reports: dict[str, dict[str, float]],
    cloud: Cloud,
    load: tuple[tuple[float, ...], tuple[float, ...]],
) -> tuple[str, dict[str, Any]]:
    n = run["completed"]
    inv: dict[str, int] = run["invocations"]
    name = cloud.function_name
    saga = {fn: count for fn, count in executions["by_function"].items()}
    polled = run["gets"]

    # Lambda invocations per transfer: the POST's (authorizer, create, the resolver it invokes), the saga's
    # tasks (history), and the asynchronous ones measured over the run (relay, consumers), amortised.
    per_transfer: dict[str, tuple[float, str]] = {
        name("AuthorizerFunction"): (1.0, "API: authorizer of the POST (cache off)"),
        name("CreateTransferFunction"): (
            inv.get(name("CreateTransferFunction"), 0) / n,
            "API: POST /v1/transfers",
        ),
        name("ResolveTransferPartiesFunction"): (
            inv.get(name("ResolveTransferPartiesFunction"), 0) / n,
            "sync: invoked by create",
        ),
    }
    for fn, count in saga.items():
        per_transfer[fn] = (count, "saga task (GetExecutionHistory)")
    schedules = {name(logical_id) for logical_id in scheduled_functions()}
    skip = {name("AuthorizerFunction"), name("GetTransferFunction"), *per_transfer, *schedules}
    for fn, count in sorted(inv.items()):
        if fn in skip:
            continue
        per_transfer[fn] = (count / n, "async, amortised: invocations during the run ÷ transfers")
    scheduled_in_run = {fn: count for fn, count in inv.items() if fn in schedules}
    authorizer_extra = inv.get(name("AuthorizerFunction"), 0) - n

    lambda_rows = []
    requests = 0.0
    gb_s = 0.0
    for fn, (count, why) in sorted(per_transfer.items(), key=lambda kv: kv[1][1]):
        measured = reports.get(fn)
        billed = measured["billed_ms"] if measured else math.nan
        memory = measured["memory_mb"] if measured else math.nan
        duration = measured["duration_ms"] if measured else math.nan
        seconds = count * billed / 1000 * memory / 1024 if measured else 0.0
        requests += count
        gb_s += seconds
        lambda_rows.append(
            f"| {cloud.logical_id(fn)} | {why} | {count:.2f} | {duration:.1f} | {billed:.1f} | "
            f"{memory:.0f} | {seconds * 1000:.3f} |"
        )

    wcu = sum(r.base + r.gsi for r in lone["rows"])
    transitions = executions["transitions"]
    log_bytes = executions["log_bytes"]
    logs_row = (
        "CloudWatch Logs (the saga's execution log)",
        f"{log_bytes:,.0f} bytes",
        "$0.50 per GB",
        log_bytes / 1e9 * PRICES["logs_ingest_per_gb"],
    )
    if executions["express"]:
        express_gb_s = executions["billed_s"] * EXPRESS_MEMORY_GB
        review_transitions = args.review_share * REVIEW_TRANSITIONS
        machine_rows = [
            (
                "Step Functions Express requests",
                "1 execution",
                "$1.00 per 1M",
                PRICES["sfn_express_per_request"],
            ),
            (
                "Step Functions Express duration",
                f"{executions['billed_s']:.1f} s at 64 MB = {express_gb_s:.4f} GB-s",
                "$0.00001667 per GB-s",
                express_gb_s * PRICES["sfn_express_per_gb_s"],
            ),
            (
                "Step Functions Standard (reviews)",
                f"{args.review_share:.1%} reviewed, {REVIEW_TRANSITIONS} transitions each",
                "$0.025 per 1,000 transitions",
                review_transitions * PRICES["sfn_per_transition"],
            ),
        ]
    else:
        machine_rows = [
            (
                "Step Functions Standard",
                f"{transitions:.2f} state transitions",
                "$0.025 per 1,000 transitions",
                transitions * PRICES["sfn_per_transition"],
            )
        ]
    costs = [
        *machine_rows,
        logs_row,
        (
            "Lambda requests",
            f"{requests:.2f} invocations",
            "$0.20 per 1M",
            requests * PRICES["lambda_per_request"],
        ),
        (
            "Lambda duration (arm64)",
            f"{gb_s:.4f} GB-s",
            "$0.0000133334 per GB-s",
            gb_s * PRICES["lambda_per_gb_s_arm64"],
        ),
        ("DynamoDB on-demand writes", f"{wcu:g} WRU", "$0.625 per 1M WRU", wcu * PRICES["ddb_per_wru"]),
        ("API Gateway REST", "1 request (the POST)", "$3.50 per 1M", PRICES["apigw_rest_per_request"]),
    ]
    total = sum(c for *_, c in costs)
    step_functions = sum(c for item, *_, c in costs if item.startswith("Step Functions"))
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    lines = [
        "# Transfer saga benchmark (bench/saga_bench.py)",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; commit {commit}"
        f"{' with uncommitted changes in the working tree' if dirty else ''}; {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; load average before/after "
        f"{load[0][0]:.2f}/{load[1][0]:.2f} (other processes on the machine count too).",
        "",
        "Command: `.venv/bin/python bench/saga_bench.py "
        f"--transfers {args.transfers} --threads {args.threads} "
        f"--per-user {args.per_user} --amount {args.amount} --sample {args.sample} --single {args.single} "
        f"--review-share {args.review_share}`",
        "",
        f"One fresh local cloud (project template + bench/fixtures/template.yaml, ready in {startup:.1f} s); "
        f"{len(run['outcomes'])} transfers of {args.amount} paise, {args.threads} at a time (closed loop: a "
        f"thread sends its next transfer when its last one is COMPLETED), at most {args.per_user} per sender "
        f"over the whole run (VELOCITY reviews a 6th in a minute), between customers signed in over HTTP "
        f"with MFA and funded by admin deposits ({setup_s:.0f} s to set up). Lambda workers were warmed "
        f"first with {args.threads * 2} transfers at the same concurrency.",
        "",
        "## Throughput and latency",
        "",
        "| Figure | Value | Baseline in the same run |",
        "|---|---|---|",
        f"| Engine ceiling: SixTaskMachine (6 no-op Lambda tasks), {ceiling['executions']} executions, "
        f"{args.threads} at a time, to SUCCEEDED | {ceiling['per_second']:.2f} executions/s "
        f"({ceiling['succeeded']}/{ceiling['executions']} succeeded; p50 {ceiling['p50']:.2f} s, p99 "
        f"{ceiling['p99']:.2f} s start → SUCCEEDED, DescribeExecution every 50 ms) | — |",
        f"| The saga's own definition (EXPRESS, its choices and retry blocks) with no-op tasks: "
        f"SameDefinitionNoopMachine, {same['executions']} executions, {args.threads} at a time | "
        f"{same['per_second']:.2f} executions/s ({same['succeeded']}/{same['executions']} succeeded; p50 "
        f"{same['p50']:.2f} s, p99 {same['p99']:.2f} s) | {same['per_second'] / ceiling['per_second']:.2f}x "
        "the six-task ceiling |",
        f"| Transfers, HTTP in → saga → event out: {n}/{len(run['outcomes'])} COMPLETED, {run['events']} "
        f"`{COMPLETED_SUBJECT}` events in JetStream | **{run['per_second']:.2f} transfers/s** "
        f"({run['seconds_events']:.1f} s from the first POST to the last event in {STREAM}) | "
        f"**{run['per_second'] / same['per_second']:.2f}x** the same definition with no-op tasks; "
        f"{run['per_second'] / ceiling['per_second']:.2f}x the six-task ceiling |",
        f"| Same, to the last COMPLETED seen over HTTP | {run['per_second_completed']:.2f} transfers/s "
        f"({run['seconds_completed']:.1f} s) | {run['per_second_completed'] / ceiling['per_second']:.2f}x |",
        f"| Time from POST to the completed event in JetStream | p50 {run['p50']:.2f} s, p99 "
        f"{run['p99']:.2f} s | ceiling execution p50 {ceiling['p50']:.2f} s, p99 {ceiling['p99']:.2f} s |",
        f"| The same with one transfer in flight ({single['completed']} in turn) | "
        f"**p50 {single['p50']:.2f} s**, p99 {single['p99']:.2f} s | same definition, no-op tasks: p50 "
        f"{same['p50']:.2f} s |",
        "",
        f"Events out: JetStream's per-subject count of stream {STREAM} (`stream_info(subjects_filter="
        f"'{COMPLETED_SUBJECT}')` with nats-py) before the run and until it had grown by the number of "
        "completed transfers: one cheap call, no consumer, exact (the stream de-duplicates by event id).",
        "Each transfer's end: its completed event's arrival at an ordered JetStream consumer started before "
        f"the run (no API polling; {polled} GETs in all, one per transfer that had no event in time).",
        "",
        "## Per transfer",
        "",
        f"State machine, from GetExecutionHistory of {executions['sample']} completed executions: "
        f"**{transitions:g} state transitions** (`*StateEntered` events; min/max "
        f"{executions['transitions_range'][0]}/{executions['transitions_range'][1]}; states: "
        f"{', '.join(executions['states'])}) and {executions['lambda_tasks']:g} Lambda tasks "
        f"(`LambdaFunctionScheduled`; the happy path has {HAPPY_PATH_TASKS} Task states).",
        "",
        "Lambda invocations per transfer. Counts: the local cloud's per-function invocation counters "
        "(`/_localcloud/status`) over the measured run ÷ completed transfers, except the saga tasks "
        "(history) and the authorizer (1 per POST: its other "
        f"{authorizer_extra} invocations in the run were other requests). Durations: mean of the "
        "functions' REPORT lines in the run's window (local, warm workers, 2 shared cores: an AWS figure "
        "will differ); billed ms includes the init of cold starts, as AWS bills it since 2025-08.",
        "",
        "| Function | Why | Invocations | Mean duration ms | Mean billed ms | Memory MB | GB-ms |",
        "|---|---|---|---|---|---|---|",
        *lambda_rows,
        f"| **Total** | | **{requests:.2f}** | | | | **{gb_s * 1000:.3f}** |",
        "",
        "Scheduled functions invoked during the run, not counted per transfer (a fixed rate, whatever the "
        "load; the fraud consumer folds the completed events into profiles once a minute): "
        + (", ".join(f"{cloud.logical_id(k)} {v}" for k, v in sorted(scheduled_in_run.items())) or "none")
        + f" in {run['seconds_events']:.0f} s.",
        "",
        f"DynamoDB writes of one transfer run alone at the end ({lone['transfer_id']}, a sender with no "
        "other transfer): every DynamoDB Streams record of AccountsTable, TransfersTable and FraudTable from "
        "a LATEST iterator taken just before the POST until the relay had marked its outbox items published "
        f"and the fraud consumer had updated the sender's profile ("
        f"{'seen' if lone['consumer_seen'] else 'NOT seen within 75 s: its writes are missing below'}), "
        "keeping the records that name the transfer, its parties or its events. Tables without a stream "
        "(rate-limit and velocity counters, idempotency records) from a consistent scan before and after.",
        "",
        "Rules applied (AWS): a write's size is the larger of the old and new image; 2 WRU per started KB "
        "for an item written in a TransactWriteItems (every domain write: the stores write only in "
        "transactions), 1 WRU per started KB for a plain UpdateItem (counters, "
        "Powertools idempotency Put + Update); each GSI row written costs 1 WRU per started KB of its "
        "projection (all indexes project ALL; a new or changed item in a sparse index writes a row, one "
        "leaving it deletes one; transactions do not double index writes). Not visible here and not "
        "counted: ConditionCheck items and failed conditional writes (none expected on the happy path), "
        "TTL deletes (free).",
        "",
        "| Table | Write | Writes | WRU table | WRU GSI |",
        "|---|---|---|---|---|",
        *[f"| {r.table} | {r.what} | {r.writes} | {r.base:g} | {r.gsi:g} |" for r in lone["rows"]],
        f"| **Total** | | **{sum(r.writes for r in lone['rows'])}** "
        f"| **{sum(r.base for r in lone['rows']):g}** | **{sum(r.gsi for r in lone['rows']):g}** |",
        "",
        f"Lambda invocations during the lone transfer (local counters): "
        f"{', '.join(f'{cloud.logical_id(k)} {v}' for k, v in sorted(lone['invocations'].items()))}.",
        "",
        "## Cost per million transfers at AWS list prices (us-east-1)",
        "",
        "| Item | Per transfer | Price | Per million transfers |",
        "|---|---|---|---|",
        *[f"| {item} | {what} | {price} | ${cost * 1e6:,.2f} |" for item, what, price, cost in costs],
        f"| **Total** | | | **${total * 1e6:,.2f}** (${total:.6f} per transfer) |",
        "",
        f"Step Functions is {step_functions / total:.0%} of it. Not included: DynamoDB reads, storage, "
        "Streams reads by Lambda (free), PITR; the functions' own CloudWatch Logs and metrics; X-Ray; KMS "
        "and Secrets Manager calls; "
        "the NATS JetStream hosts; data transfer; free tiers. Prices used (first tiers, no free tier; "
        "checked on 2026-11-28 against stored copies of these pages and documents quoting them, not live):",
        "",
        *[f"- {source}" for source in PRICE_SOURCES],
        "",
        "## Caveats",
        "",
        "- One 2-core machine shared with other work (load average above): the local figures (throughput, "
        "latency, Lambda durations) are this emulator's on this machine, not AWS's: the engine ceilings "
        "are moto's (docs/emulators.md; the local cloud keeps one parsed program per definition and one "
        "boto3 client per service), and the ratios say how much of it the real steps (Lambda work, "
        "DynamoDB Local, the API emulator, the relay) use.",
        "- Lambda GB-s come from durations measured here at the run's concurrency; on AWS each function has "
        "its own CPU share (512 MB ≈ 0.29 vCPU), so durations and that line will differ.",
        "- The relay's count is amortised over the run and includes its invocations for the API functions' "
        "log subscriptions (request logs); under load it batches more "
        "records per invocation than for one transfer alone.",
        "- Write units come from one transfer alone; they include the fraud consumer's profile update and "
        "the relay's work (asynchronous, caused by the transfer).",
        "",
    ]
    figures = {
        "transfers": len(run["outcomes"]),
        "completed": n,
        "threads": args.threads,
        "transfers_per_s": run["per_second"],
        "seconds_to_last_event": run["seconds_events"],
        "post_to_completed_p50_s": run["p50"],
        "post_to_completed_p99_s": run["p99"],
        "single_in_flight": {
            "transfers": single["completed"],
            "p50_s": single["p50"],
            "p99_s": single["p99"],
        },
        "ceiling": {
            "machine": "SixTaskMachine (6 no-op Lambda tasks)",
            "executions": ceiling["executions"],
            "succeeded": ceiling["succeeded"],
            "per_s": ceiling["per_second"],
            "p50_s": ceiling["p50"],
            "p99_s": ceiling["p99"],
        },
        "ratio_to_ceiling": run["per_second"] / ceiling["per_second"],
        "same_definition_noop": {
            "machine": "SameDefinitionNoopMachine (transfer.asl.json, no-op tasks)",
            "executions": same["executions"],
            "succeeded": same["succeeded"],
            "per_s": same["per_second"],
            "p50_s": same["p50"],
            "p99_s": same["p99"],
        },
        "ratio_to_same_definition": run["per_second"] / same["per_second"],
        "per_transfer": {
            "state_transitions": transitions,
            "standard_transitions": (
                args.review_share * REVIEW_TRANSITIONS if executions["express"] else transitions
            ),
            "express_billed_s": executions["billed_s"] if executions["express"] else 0.0,
            "execution_log_bytes": log_bytes,
            "lambda_tasks": executions["lambda_tasks"],
            "lambda_invocations": requests,
            "lambda_gb_s": gb_s,
            "dynamodb_wru": wcu,
            "dynamodb_wru_table": sum(r.base for r in lone["rows"]),
            "dynamodb_wru_gsi": sum(r.gsi for r in lone["rows"]),
        },
        "cost_per_million_usd": {
            "items": [
                {"item": item, "per_transfer": what, "usd": cost * 1e6} for item, what, _, cost in costs
            ],
            "total": total * 1e6,
        },
        "prices": PRICES,
    }
    return "\n".join(lines), figures


if __name__ == "__main__":
    main()

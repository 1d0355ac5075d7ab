"""The bank test: many customers send random transfers at once while faults are injected, then the books
must balance. A Jepsen-style check of the saga: `make test` runs a short one, `make soak` a long one.

Workload: customers with funded accounts send transfers to each other through the HTTP API, concurrently;
some are re-sent with the same Idempotency-Key, some exceed the balance, some are large enough for a review
(an admin decides some, the rest time out). Faults come from the local cloud (localcloud.faults): a transient
error on the first attempt of every saga step, a settlement that fails for good for a share of the transfers
(so the compensation path, CompensateReleaseFunds then FAILED, runs under load), a saga Lambda killed after
its write and before its answer, a duplicated stream delivery, NATS stopped for a while, and later the
VAULTPAY stream's leader killed (SIGKILL) and restarted on its store (the tests' NATS is a three-node
cluster).

After everything settles, it checks what a bank must guarantee: every transfer in exactly one terminal state
(and one execution each); total money unchanged; no available balance ever below zero (every statement line);
no hold left; every balance equal to the sum of its postings; one transfer per Idempotency-Key;
`vaultpay ops reconcile` passing. And that the event path lost and duplicated nothing
(tests/support/event_ledger.py): once it has drained, every outbox item is in the stream exactly once and in
the audit log exactly once, and every durable consumer resumed after the NATS outage with nothing pending.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.bank import deposit, idempotency_key, open_account, signed_in_admin, signed_in_customer
from support.event_ledger import EventLedger, EventPath

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"COMPLETED", "DECLINED", "FAILED"}
RUPEE = 100
REVIEW_AMOUNT = 2_00_000 * RUPEE
POST_ATTEMPTS = 3  # a 503 is retried with the same Idempotency-Key, twice at most
SAGA_STEPS = [
    "TransferStatusFunction",
    "ReserveFundsFunction",
    "EvaluateFraudFunction",
    "SettleTransferFunction",
    "ReleaseFundsFunction",
]
# Not a name any ASL Retry treats as final: the settle step's States.ALL retries run out, then its Catch
# compensates (the handler never runs, so no money moved).
SETTLE_FAILS_FOR_GOOD = "SettlementUnavailable"


@dataclass(frozen=True)
class Scale:
    customers: int
    transfers: int
    threads: int
    duplicate_ratio: float
    crash_probability: float
    nats_down_s: float
    # After NATS is back: the VAULTPAY stream's leader is SIGKILLed this long later, and restarted on its
    # store after node_down_s (the other two nodes elect a new leader meanwhile).
    kill_leader_after_s: float
    node_down_s: float
    settle_timeout_s: float
    drain_timeout_s: float  # how long the event path may take to drain once every transfer is terminal
    # The share of transfers whose settlement fails on every attempt: they must end FAILED, holds released.
    settle_failure_ratio: float


SHORT = Scale(
    customers=6,
    transfers=48,
    threads=8,
    duplicate_ratio=0.15,
    crash_probability=0.15,
    nats_down_s=5,
    kill_leader_after_s=3,
    # Longer than JetStream's Raft election timeout (4-9 s): the others elect a new leader before it is back.
    node_down_s=12,
    settle_timeout_s=240,
    drain_timeout_s=60,
    # High enough that some of the ~30 settlements fail for good in every short run (0.8^30: one run in 800
    # would see none), so the compensation path is always part of it.
    settle_failure_ratio=0.2,
)
SOAK = Scale(
    customers=24,
    transfers=1000,
    threads=16,
    duplicate_ratio=0.1,
    crash_probability=0.1,
    nats_down_s=20,
    kill_leader_after_s=30,
    node_down_s=20,
    settle_timeout_s=1800,
    drain_timeout_s=900,
    settle_failure_ratio=0.05,
)


@dataclass
class Customer:
    client: Any
    accounts: list[dict[str, Any]]


@dataclass
class Sent:
    key: str
    source: str
    owner: int
    amount: int
    began: float
    transfer_ids: list[str] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class Outcome:
    figures: dict[str, Any]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


class BankRun:
    def __init__(
        self,
        api: Callable[..., Any],
        admin_credentials: tuple[str, str],
        cloud: Any,
        faults: Any,
        scale: Scale,
        seed: int = 7,
    ) -> None:
        self.api, self.cloud, self.faults, self.scale = api, cloud, faults, scale
        self.admin_credentials = admin_credentials
        self.random = random.Random(seed)
        self.customers: list[Customer] = []
        self.sent: list[Sent] = []
        self.deposited = 0
        self.lock = threading.Lock()
        self.retried_503 = 0
        self.decisions: Counter[str] = Counter()
        self.killed_node: dict[str, Any] = {}

    # ---- set-up -----------------------------------------------------------------------------------------

    def open_bank(self) -> None:
        self.admin = signed_in_admin(self.api, self.admin_credentials)
        for i in range(self.scale.customers):
            client = signed_in_customer(self.api, device_id=f"bank-device-{i}")
            accounts = [open_account(client), open_account(client, "CURRENT")]
            for account in accounts:
                amount = self.random.choice([5_000, 20_000, 3_00_000]) * RUPEE
                reply = deposit(self.admin, account["account_id"], amount)
                assert reply.status == 201, reply.body
                self.deposited += amount
            self.customers.append(Customer(client, accounts))

    # ---- workload ---------------------------------------------------------------------------------------

    def _plan(self) -> list[tuple[int, dict[str, Any], dict[str, Any], int]]:
        plan = []
        for _ in range(self.scale.transfers):
            owner = self.random.randrange(len(self.customers))
            source = self.random.choice(self.customers[owner].accounts)
            payee = self.random.choice(
                [a for c in self.customers for a in c.accounts if a["account_id"] != source["account_id"]]
            )
            roll = self.random.random()
            if roll < 0.1:
                amount = REVIEW_AMOUNT  # held for review: decided by the admin loop or timed out
            elif roll < 0.2:
                amount = 10_00_000 * RUPEE - 1  # more than anyone has: declined for funds (or fraud)
            else:
                amount = self.random.randint(1, 2_000 * RUPEE)
            plan.append((owner, source, payee, amount))
        return plan

    def _send(self, owner: int, source: dict[str, Any], payee: dict[str, Any], amount: int) -> None:
        body = {
            "source_account_id": source["account_id"],
            "destination_account_number": payee["account_number"],
            "amount": amount,
            "currency": "INR",
            "description": "bank test",
        }
        key = idempotency_key()
        sent = Sent(key["Idempotency-Key"], source["account_id"], owner, amount, time.monotonic())
        copies = 2 if self.random.random() < self.scale.duplicate_ratio else 1
        client = self.customers[owner].client

        def post() -> None:
            # As a client should (docs/api.md): a 503 is retried with the same Idempotency-Key, so it can
            # never make a second transfer. Under the injected faults and two busy cores the local Step
            # Functions can miss StartExecution's deadline; the retries are counted in the figures.
            for attempt in range(POST_ATTEMPTS):
                reply = client.post("/v1/transfers", body, headers=key)
                if reply.status != 503 or attempt + 1 == POST_ATTEMPTS:
                    break
                with self.lock:
                    self.retried_503 += 1
                time.sleep(0.5 * (attempt + 1))
            with self.lock:
                if reply.status == 202:
                    sent.transfer_ids.append(reply.body["transfer_id"])
                else:
                    sent.refused.append((reply.status, json.dumps(reply.body)[:200]))

        threads = [threading.Thread(target=post) for _ in range(copies)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with self.lock:
            self.sent.append(sent)

    def _review_loop(self, stop: threading.Event) -> None:
        """The admin on duty: decides about half the transfers waiting for review; the rest time out.

        Only an alert whose review is WAITING can be decided (the decision is written before the saga reaches
        AwaitReview); a 503 under injected faults is retried on the next pass, as an admin would.
        """
        done: set[str] = set()
        while not stop.is_set():
            reply = self.admin.get("/v1/admin/fraud/alerts?decision=REVIEW&limit=100")
            if reply.status == 200:
                for alert in reply.body["items"]:
                    transfer_id = alert["transfer_id"]
                    if transfer_id in done or (alert.get("review") or {}).get("status") != "WAITING":
                        continue
                    choice = self.random.choice(["APPROVE", "DECLINE", "LEAVE"])
                    if choice == "LEAVE":
                        done.add(transfer_id)
                        continue
                    decided = self.admin.post(
                        f"/v1/admin/fraud/reviews/{transfer_id}", {"decision": choice, "note": "bank test"}
                    )
                    self.decisions[f"{choice}:{decided.status}"] += 1
                    if decided.status != 503:
                        done.add(transfer_id)
            stop.wait(1.0)

    def run(self) -> Outcome:
        self.open_bank()
        plan = self._plan()
        self.faults.set_plan(self._fault_plan())
        stop = threading.Event()
        reviewer = threading.Thread(target=self._review_loop, args=(stop,), daemon=True)
        reviewer.start()
        began = time.monotonic()
        nats = threading.Thread(target=self._nats_faults, daemon=True)
        nats.start()
        with ThreadPoolExecutor(self.scale.threads) as pool:
            list(pool.map(lambda p: self._send(*p), plan))
        submitted_s = time.monotonic() - began
        nats.join()
        finals = self._await_terminal()
        settled_s = time.monotonic() - began
        stop.set()
        reviewer.join(timeout=5)
        # Still under the faults (the relay's duplicated deliveries go on): the proof covers them too.
        events = EventLedger(self.cloud).settle(self.scale.drain_timeout_s)
        counters = self.faults.counters()
        self.faults.clear()
        return self._check(finals, submitted_s, settled_s, counters, events)

    def _fault_plan(self) -> dict[str, Any]:
        """localcloud.faults: every saga step fails its first attempt; some settlements fail for good; some
        steps are killed after their write."""
        return {
            "seed": self.random.randrange(2**31),
            "lambda_errors": [
                {
                    "functions": ["SettleTransferFunction"],
                    "error_type": SETTLE_FAILS_FOR_GOOD,
                    "attempts": 100,
                    "probability": self.scale.settle_failure_ratio,
                },
                {"functions": SAGA_STEPS, "error_type": "TransientError", "attempts": 1},
            ],
            "lambda_crashes": [
                {
                    "functions": SAGA_STEPS,
                    "probability": self.scale.crash_probability,
                    "first_attempt_only": False,
                }
            ],
            "stream_duplicates": [{"functions": ["RelayFunction"], "probability": 0.3}],
        }

    def _nats_faults(self) -> None:
        """The whole of NATS stops for a while; later, with NATS back, the stream's leader dies (SIGKILL)."""
        time.sleep(2)
        self.faults.nats_stop()
        time.sleep(self.scale.nats_down_s)
        self.faults.nats_start()
        time.sleep(self.scale.kill_leader_after_s)
        self.killed_node = self.faults.nats_kill_node("leader", restart_after_s=self.scale.node_down_s)

    def _failover(self) -> dict[str, Any]:
        """The node kill as the cluster lived it (localcloud.nats_cluster's last_failover)."""
        status = json.loads(
            urllib.request.urlopen(self.cloud.edge + "/_localcloud/status", timeout=10).read()
        )
        nats = status.get("nats") or {}
        return {
            "nodes": len(nats.get("nodes", [])),
            "nodes up at the end": nats.get("nodes_up"),
            "replicas current at the end": f"{nats.get('replicas_current')}/{nats.get('replicas')}",
            **(nats.get("last_failover") or {}),
        }

    def _await_terminal(self) -> dict[str, dict[str, Any]]:
        pending = {tid: s for s in self.sent for tid in set(s.transfer_ids)}
        finals: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + self.scale.settle_timeout_s
        while pending and time.monotonic() < deadline:
            for transfer_id, sent in list(pending.items()):
                reply = self.customers[sent.owner].client.get(f"/v1/transfers/{transfer_id}")
                if reply.status == 200 and reply.body["status"] in TERMINAL:
                    finals[transfer_id] = {**reply.body, "_latency_s": time.monotonic() - sent.began}
                    del pending[transfer_id]
            time.sleep(0.5)
        for transfer_id, sent in pending.items():
            reply = self.customers[sent.owner].client.get(f"/v1/transfers/{transfer_id}")
            finals[transfer_id] = (
                dict(reply.body) if reply.status == 200 else {"status": f"HTTP {reply.status}"}
            )
        return finals

    # ---- the checks -------------------------------------------------------------------------------------

    def _check(
        self,
        finals: dict[str, dict[str, Any]],
        submitted_s: float,
        settled_s: float,
        counters: dict[str, Any],
        events: EventPath,
    ) -> Outcome:
        problems: list[str] = []
        statuses = Counter(t["status"] for t in finals.values())
        not_terminal = [tid for tid, t in finals.items() if t["status"] not in TERMINAL]
        if not_terminal:
            problems.append(
                f"{len(not_terminal)} transfers never reached a terminal state: {not_terminal[:5]}"
            )
        for sent in self.sent:
            if len(set(sent.transfer_ids)) > 1:
                problems.append(f"one Idempotency-Key made {len(set(sent.transfer_ids))} transfers")
            unexpected = [r for r in sent.refused if r[0] not in (409, 429)]
            if unexpected:
                problems.append(f"a transfer was refused: {unexpected[:2]}")
            if not sent.transfer_ids:
                problems.append(f"a transfer was never accepted: {sent.refused[:2]}")
        failed = [t for t in finals.values() if t["status"] == "FAILED"]
        if not failed:
            problems.append("no transfer ended FAILED: the compensation path never ran under load")
        if any(t.get("failure_reason") != "step_failed" for t in failed):
            problems.append(
                f"a FAILED transfer gives another reason: {[t.get('failure_reason') for t in failed]}"
            )
        problems += self._check_executions(finals)
        problems += self._check_accounts()
        reconcile = self._reconcile()
        if reconcile["exit"] != 0:
            problems.append(f"vaultpay ops reconcile failed: {reconcile['summary']}")
        # The bank's own accounts only (the cloud may be shared with other tests): money moved only among
        # them, so their total is what was deposited, and nothing is left held.
        ledger_total = 0
        for customer in self.customers:
            for account in customer.accounts:
                balance = customer.client.get(f"/v1/accounts/{account['account_id']}").body["balance"]
                ledger_total += balance["ledger"]
                if balance["available"] != balance["ledger"]:
                    problems.append(
                        f"{account['account_id']} still holds {balance['ledger'] - balance['available']}"
                    )
        if ledger_total != self.deposited:
            problems.append(f"money changed: accounts hold {ledger_total}, {self.deposited} was deposited")
        problems += events.problems()
        latencies = [t["_latency_s"] for t in finals.values() if "_latency_s" in t]
        completed = statuses.get("COMPLETED", 0)
        figures = {
            "customers": len(self.customers),
            "accounts": sum(len(c.accounts) for c in self.customers),
            "transfers sent": len(self.sent),
            "duplicate posts": sum(1 for s in self.sent if len(s.transfer_ids) + len(s.refused) > 1),
            "POSTs retried after a 503": self.retried_503,
            "statuses": dict(statuses),
            "failed (settlement failed for good, compensated)": len(failed),
            "reviewed": sum(
                1 for t in finals.values() if any(s.get("status") == "IN_REVIEW" for s in t["steps"])
            ),
            "admin decisions": dict(self.decisions),
            "submit s": round(submitted_s, 1),
            "all terminal after s": round(settled_s, 1),
            "completed per s": round(completed / settled_s, 2) if settled_s else 0,
            "POST to terminal p50 s": round(statistics.median(latencies), 2) if latencies else None,
            "POST to terminal p99 s": round(_percentile(latencies, 99), 2) if latencies else None,
            "faults injected": counters,
            "NATS leader kill": self._failover(),
            "deposited (paise)": self.deposited,
            **events.figures(),
        }
        return Outcome(figures, problems)

    def _check_executions(self, finals: dict[str, dict[str, Any]]) -> list[str]:
        sfn = self.cloud.client("stepfunctions")
        [machine] = [
            m["stateMachineArn"]
            for m in sfn.list_state_machines()["stateMachines"]
            if m["name"].endswith("-transfer")
        ]
        names: Counter[str] = Counter()
        token = None
        while True:
            more = {"nextToken": token} if token else {}
            page = sfn.list_executions(stateMachineArn=machine, maxResults=1000, **more)
            names.update(e["name"] for e in page["executions"])
            token = page.get("nextToken")
            if not token:
                break
        problems = [f"transfer {tid} ran {names[tid]} executions" for tid in finals if names[tid] != 1]
        return problems[:10]

    def _check_accounts(self) -> list[str]:
        """Every statement line of every account: the available balance never went below zero."""
        problems = []
        for customer in self.customers:
            for account in customer.accounts:
                cursor = None
                while True:
                    query = f"?limit=100&cursor={cursor}" if cursor else "?limit=100"
                    page = customer.client.get(f"/v1/accounts/{account['account_id']}/statement{query}")
                    if page.status != 200:
                        problems.append(f"statement of {account['account_id']}: HTTP {page.status}")
                        break
                    for entry in page.body["items"]:
                        if entry["available_after"] < 0 or entry["balance_after"] < 0:
                            problems.append(f"{account['account_id']} went below zero at {entry['entry_id']}")
                    cursor = page.body.get("next_cursor")
                    if not cursor:
                        break
        return problems

    def _reconcile(self) -> dict[str, Any]:
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": self.cloud.edge,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        status = json.loads(
            urllib.request.urlopen(self.cloud.edge + "/_localcloud/status", timeout=10).read()
        )
        table = next(
            stack["outputs"]["AccountsTableName"]
            for stack in status["stacks"]
            if "AccountsTableName" in stack["outputs"]
        )
        done = subprocess.run(
            [sys.executable, "-m", "vaultpay_cli.main", "ops", "reconcile", "--table", table, "--json"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            report = json.loads(done.stdout)
        except ValueError:
            report = {}
        return {"exit": done.returncode, "report": report, "summary": (done.stdout + done.stderr)[-1500:]}


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def figures_json(outcome: Outcome, scale_name: str) -> dict[str, Any]:
    """The run's headline for bench/results.json's `soak` (bench/bank-results.json): what ended how, and the
    invariant violations (the problems)."""
    statuses = outcome.figures.get("statuses", {})
    return {
        "scale": scale_name,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip(),
        "transfers": sum(statuses.values()),
        "completed": statuses.get("COMPLETED", 0),
        "declined": statuses.get("DECLINED", 0),
        "failed": statuses.get("FAILED", 0),
        "reviewed": outcome.figures.get("reviewed", 0),
        "violations": len(outcome.problems),
    }


def report(outcome: Outcome, scale_name: str) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"# Bank test ({scale_name})",
        "",
        f"{when}, commit {commit}, {os.cpu_count()} cores. `make soak` (long) or"
        " `pytest -s tests/e2e/test_bank.py` (short); faults from localcloud.faults.",
        "",
    ]
    lines += [f"- {name}: {value}" for name, value in outcome.figures.items()]
    lines += ["", "Result: " + ("all invariants held" if outcome.ok else "VIOLATIONS")]
    lines += [f"- {problem}" for problem in outcome.problems]
    return "\n".join(lines) + "\n"

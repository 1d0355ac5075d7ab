"""Audit appends/s against the number of chains N (1, 2, 4, 8), with concurrent appenders, on DynamoDB Local.

Every chain is serial by nature (each hash covers the one before), so writers that append to one chain
race for its head and all but one lose each round. With N chains an event's record goes to chain
`sha256(event id) mod N` and the writers mostly miss each other. Each N gets a fresh table and the same
load in the same run: `--writers` threads, each with its own store and client (as separate Lambda
containers would have), appending `--events` events between them `--batch` at a time. Afterwards the
whole log is verified and every event must have exactly one record.

DynamoDB Local has no per-partition throughput limit, so what this shows is the contention that sharding
removes, on this machine. On AWS the binding limit of one chain is its partition (about 500 appends/s,
docs/capacity.md), which N chains multiply by N; the last column states that ceiling beside the figure.

    .venv/bin/python bench/audit_shard_bench.py            # writes bench/audit-shard-results.md and .json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its siblings are modules
from audit_bench import CountingSleep, client
from runinfo import ROOT, heading, publish

from localcloud import services
from vaultpay.audit.model import AuditEntry
from vaultpay.audit.service import AuditService
from vaultpay.audit.store import DynamoDBAuditStore, table_definition

# One chain's ceiling on AWS: 1,000 WCU per partition key, 2 WCU per transactional put of an item up to
# 1 KB (docs/capacity.md gives the sources).
AWS_APPENDS_PER_CHAIN = 500


def entry(tag: str, n: int) -> AuditEntry:
    return AuditEntry(
        audit_id=f"evt-{tag}-{n:07d}",
        occurred_at=f"2026-12-07T10:{n // 60 % 60:02d}:{n % 60:02d}.{n % 1000:03d}Z",
        type="vaultpay.api.request",
        actor=f"usr_{n % 50:02d}",
        correlation_id=f"corr-{n}",
        subject=f"trf_{n}",
        data={"method": "POST", "path": "/v1/transfers", "status": 202},
    )


def run(endpoint: str, chains: int, writers: int, events: int, batch: int) -> dict[str, Any]:
    """One N: a fresh table, `writers` concurrent appenders, then a full verify of the log."""
    table = f"bench-{uuid.uuid4().hex[:8]}-AuditTable"
    client(endpoint).create_table(**table_definition(table))
    sleep = CountingSleep()
    stores = [DynamoDBAuditStore(client(endpoint), table, chains=chains, sleep=sleep) for _ in range(writers)]
    tag = uuid.uuid4().hex[:6]
    barrier = threading.Barrier(writers + 1)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            mine = list(range(index, events, writers))
            barrier.wait()
            for start in range(0, len(mine), batch):
                stores[index].append([entry(tag, n) for n in mine[start : start + batch]])
        except BaseException as exc:  # re-raised in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise errors[0]
    verified = AuditService(DynamoDBAuditStore(client(endpoint), table, chains=chains)).verify()
    assert verified.ok, verified.first_bad_record
    assert verified.records_checked == events, (verified.records_checked, events)
    per_chain = [c.records_checked for c in verified.chains]
    return {
        "chains": chains,
        "appends_per_s": round(events / elapsed, 1),
        "elapsed_s": round(elapsed, 2),
        "lost_races": sleep.calls,
        "records_per_chain": per_chain,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chains", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--writers", type=int, default=8, help="concurrent appenders (threads)")
    parser.add_argument("--events", type=int, default=1000, help="events per N")
    parser.add_argument("--batch", type=int, default=1, help="events per append call")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "audit-shard-results.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = services.free_port()
        dynamodb = services.dynamodb_local(port, Path(tmp))
        dynamodb.start()
        try:
            dynamodb.wait_ready()
            endpoint = f"http://127.0.0.1:{port}"
            # A warm-up table, so that the first N does not pay the emulator's JIT.
            run(endpoint, 1, 2, 200, args.batch)
            rows = []
            for chains in args.chains:
                row = run(endpoint, chains, args.writers, args.events, args.batch)
                print(row, flush=True)
                rows.append(row)
        finally:
            dynamodb.stop()
    base = rows[0]["appends_per_s"]
    load = os.getloadavg()[0]
    lines = [
        *heading("Audit appends/s against the number of chains", "make bench (bench/audit_shard_bench.py)"),
        f"DynamoDB Local (in memory) on loopback; {args.writers} concurrent appenders, each with its "
        f"own store and boto3 client; {args.events:,} events per N, {args.batch} per append call (one "
        "transaction per chain touched); each log verified in full afterwards (every chain ok, one record "
        f"per event). Load average (1 min) at the end: {load:.1f}.",
        "",
        "| chains (N) | appends/s | vs N=1 | lost races | records per chain | AWS ceiling (N x 500/s) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['chains']} | {row['appends_per_s']:,.0f} | {row['appends_per_s'] / base:.2f} | "
            f"{row['lost_races']:,} | {', '.join(map(str, row['records_per_chain']))} | "
            f"{row['chains'] * AWS_APPENDS_PER_CHAIN:,}/s |"
        )
    lines += [
        "",
        "Lost races are rounds a writer lost to another on the same chain head (it re-reads the head and "
        "retries after a jittered back-off); they fall as N grows. DynamoDB Local emulates no partition "
        "limit, so past the point where the writers stop colliding the figure is this machine's (the Python "
        "clients and the emulator share 2 cores), not DynamoDB's; on AWS each chain is one partition of "
        "about 500 appends/s (docs/capacity.md).",
        "",
    ]
    figures = {
        "audit_appends_per_s_by_chains": {str(row["chains"]): row["appends_per_s"] for row in rows},
        "audit_lost_races_by_chains": {str(row["chains"]): row["lost_races"] for row in rows},
        "writers": args.writers,
        "events": args.events,
        "load_1min": round(load, 2),
        "batch": args.batch,
    }
    publish(args.out, "audit-shard", figures, lines)


if __name__ == "__main__":
    main()

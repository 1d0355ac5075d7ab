"""Audit figures: chain append throughput (one and concurrent writers), verify time, consumer drain rate."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from localcloud import services
from vaultpay.audit.consumer import DURABLE, STREAM, consume
from vaultpay.audit.model import AuditEntry, build_chain, verify_chain
from vaultpay.audit.service import AuditService
from vaultpay.audit.store import DynamoDBAuditStore, table_definition
from vaultpay.events.jetstream import NatsConnection, run_blocking
from vaultpay.shared.events import DomainEvent


def client(endpoint: str) -> Any:
    from botocore.config import Config

    from vaultpay_cli.target import local_client

    return local_client("dynamodb", endpoint, config=Config())


def new_table(endpoint: str) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}-AuditTable"
    client(endpoint).create_table(**table_definition(name))
    return name


def entry(tag: str, n: int) -> AuditEntry:
    return AuditEntry(
        audit_id=f"{tag}-{n:07d}",
        occurred_at=f"2026-11-28T10:{n // 60 % 60:02d}:{n % 60:02d}.{n % 1000:03d}Z",
        type="vaultpay.transaction.completed",
        actor=f"usr_{n % 50:02d}",
        correlation_id=f"corr-{n // 4}",
        subject=f"trf_{n}",
        data={"amount": 1000 + n, "currency": "INR", "source_account_id": f"acc_{n % 97}"},
    )


class CountingSleep:
    """The store's back-off hook: each call is one lost race (or a transaction conflict)."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.calls += 1
        time.sleep(seconds)


def appenders(endpoint: str, table: str, writers: int, total: int, batch: int) -> tuple[float, int]:
    """`writers` threads, each with its own store, append `total` events between them in `batch`es."""
    sleep = CountingSleep()
    stores = [DynamoDBAuditStore(client(endpoint), table, sleep=sleep) for _ in range(writers)]
    tag = uuid.uuid4().hex[:6]
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            mine = list(range(index, total, writers))
            for start in range(0, len(mine), batch):
                stores[index].append([entry(tag, n) for n in mine[start : start + batch]])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise errors[0]
    return total / elapsed, sleep.calls


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = work()
    return time.perf_counter() - began, result


async def drain(nats_url: str, endpoint: str, events: int) -> tuple[float, float, Any]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=STREAM, subjects=["vaultpay.>"]))
    await js.add_consumer(
        STREAM,
        ConsumerConfig(durable_name=DURABLE, ack_policy=AckPolicy.EXPLICIT, ack_wait=30, max_deliver=5),
    )
    began = time.perf_counter()
    for n in range(events):
        envelope = DomainEvent(
            type="vaultpay.transaction.completed",
            source="/vaultpay/transfers",
            subject=f"trf_{n}",
            data={"amount": 1000 + n, "currency": "INR"},
            correlation_id=f"corr-{n}",
            actor="usr_01",
        ).cloudevent()
        await js.publish_async(
            envelope["type"], json.dumps(envelope).encode(), headers={"Nats-Msg-Id": envelope["id"]}
        )
    await js.publish_async_completed()
    published_s = time.perf_counter() - began
    await nc.close()
    service = AuditService(DynamoDBAuditStore(client(endpoint), new_table(endpoint)))

    def run_consumer() -> tuple[float, Any]:
        connection = NatsConnection([nats_url], name="bench")

        async def work() -> Any:
            source = await connection.pull_source(STREAM, DURABLE)
            return await consume(source, service, remaining_ms=lambda: 600_000)

        try:
            return timed(lambda: run_blocking(work()))
        finally:
            run_blocking(connection.close())

    consumed_s, report = await asyncio.to_thread(run_consumer)
    return events / published_s, events / consumed_s, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="Also write the figures as Markdown here")
    parser.add_argument("--verify-records", type=int, default=10_000)
    args = parser.parse_args()
    lines = [
        "# Audit figures",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        "DynamoDB Local (in memory) and nats-server on loopback. Command: "
        "`.venv/bin/python bench/audit_bench.py`.",
        "",
    ]

    def report(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    with tempfile.TemporaryDirectory() as tmp:
        ddb_port, nats_port, monitor_port = services.free_port(), services.free_port(), services.free_port()
        dynamodb = services.dynamodb_local(ddb_port, Path(tmp))
        jetstream = services.nats_server(nats_port, monitor_port, Path(tmp))
        dynamodb.start()
        jetstream.start()
        try:
            dynamodb.wait_ready()
            jetstream.wait_ready()
            endpoint = f"http://127.0.0.1:{ddb_port}"
            report("| appenders | events per transaction | events | events/s | lost races |")
            report("|---|---|---|---|---|")
            for writers, batch, total in (
                (1, 1, 500),
                (1, 25, 5000),
                (2, 1, 500),
                (2, 25, 5000),
                (4, 25, 5000),
            ):
                rate, races = appenders(endpoint, new_table(endpoint), writers, total, batch)
                report(f"| {writers} | {batch} | {total} | {rate:,.0f} | {races} |")
            report("")

            count = args.verify_records
            table = new_table(endpoint)
            store = DynamoDBAuditStore(client(endpoint), table)
            filled_s, _ = timed(
                lambda: [
                    store.append([entry("v", n) for n in range(s, min(s + 25, count))])
                    for s in range(0, count, 25)
                ]
            )
            verify_s, result = timed(
                lambda: AuditService(DynamoDBAuditStore(client(endpoint), table)).verify()
            )
            assert result.ok and result.records_checked == count
            chain = build_chain(entry("m", n) for n in range(count))
            pure_s, pure = timed(lambda: verify_chain(chain))
            assert pure.ok
            fill_rate = count / filled_s
            report(
                f"Filling {count:,} records: {filled_s:.1f} s ({fill_rate:,.0f} records/s, batches of 25)."
            )
            report(
                f"Verify of {count:,} records through DynamoDB (strongly consistent Query pages + hashing): "
                f"{verify_s:.2f} s; the hashing alone (verify_chain in memory): {pure_s * 1000:.0f} ms."
            )
            report("")

            published, consumed, summary = asyncio.run(drain(f"nats://127.0.0.1:{nats_port}", endpoint, 5000))
            report(
                f"Consumer: 5,000 events published with publish_async at {published:,.0f}/s; drained from "
                f"`audit-workers` into the chain at {consumed:,.0f} events/s "
                f"(fetch 25, one transaction, acks, flush; {summary.batches} batches, "
                f"{summary.appended} appended)."
            )
        finally:
            jetstream.stop()
            dynamodb.stop()
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

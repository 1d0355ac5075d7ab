"""The consume function against nats-server (JetStream) and DynamoDB Local: acks, crash recovery, poison."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

import nats
import pytest
from support.handlers import load_handler

from vaultpay.audit.consumer import DURABLE, STREAM
from vaultpay.audit.model import AppendOutcome, AuditEntry, AuditRecord
from vaultpay.shared.errors import ConfigurationError
from vaultpay.shared.events import DomainEvent

from .conftest import (
    ACK_WAIT_S,
    ADVISORY,
    DLQ_STREAM,
    LAMBDA_CONTEXT,
    MAX_DELIVER,
    AuditTable,
    Nats,
    publish,
    reset_audit_caches,
    setup_stream,
)

pytestmark = pytest.mark.component


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def _consumer_state(url: str) -> tuple[int, int]:
    nc = await nats.connect(url)
    info = await nc.jetstream().consumer_info(STREAM, DURABLE)
    await nc.close()
    return info.num_pending or 0, info.num_ack_pending or 0


def event(n: int) -> dict[str, Any]:
    return DomainEvent(
        type="vaultpay.transaction.completed",
        source="/vaultpay/transfers",
        subject=f"trf_{n}",
        data={"amount": 1000 + n, "currency": "INR"},
        correlation_id=f"corr-{n}",
        actor="usr_01",
    ).cloudevent()


def publish_events(url: str, events: Sequence[dict[str, Any]]) -> list[int]:
    return run(publish(url, [(e["type"], json.dumps(e).encode(), e["id"]) for e in events]))


@pytest.fixture
def consume_app(
    nats_endpoint: Nats, audit_table: AuditTable, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModuleType]:
    """The ConsumeAuditEventsFunction handler with its environment, over a fresh stream and table."""
    run(setup_stream(nats_endpoint.url))
    for name, value in {
        "AUDIT_TABLE": audit_table.name,
        "NATS_URL": nats_endpoint.url,
        "STAGE": "local",
        "AWS_ENDPOINT_URL": audit_table.endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "POWERTOOLS_METRICS_NAMESPACE": "VaultPayTest",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    reset_audit_caches()
    try:
        yield load_handler("audit/consume")
    finally:
        reset_audit_caches()


def records(table: AuditTable) -> list[AuditRecord]:
    return [r for r in table.store().records() if isinstance(r, AuditRecord)]


def test_consume_appends_every_event_and_acks_it(
    consume_app: ModuleType, nats_endpoint: Nats, audit_table: AuditTable, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 60 events in the stream
    events = [event(n) for n in range(60)]
    publish_events(nats_endpoint.url, events)

    # When the scheduled function runs
    report = consume_app.handler({"source": "aws.events"}, LAMBDA_CONTEXT)

    # Then it reports the consumer's backlog after the run as metrics the lag alarm watches
    assert report["lag"] == {"pending": 0, "ack_pending": 0, "redelivered": 0}
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    pending = [m for m in emitted if "ConsumerPending" in m]
    assert pending and pending[0]["consumer"] == "audit-workers" and pending[0]["ConsumerPending"] == [0.0]

    # Then each has one record, in stream order, the chain verifies, and nothing is left to deliver
    assert report["appended"] == 60
    assert report["stopped"] == "drained"
    assert [r.audit_id for r in records(audit_table)] == [e["id"] for e in events]
    assert run(_consumer_state(nats_endpoint.url)) == (0, 0)
    from vaultpay.bootstrap.audit import audit_service

    assert audit_service().verify().ok


def test_a_crash_between_the_write_and_the_ack_yields_one_record_after_redelivery(
    consume_app: ModuleType, nats_endpoint: Nats, audit_table: AuditTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vaultpay.bootstrap.audit import audit_service

    # Given a run that dies right after its records are durable and before any ack
    events = [event(n) for n in range(5)]
    publish_events(nats_endpoint.url, events)
    service = audit_service()
    write = service.append_entries

    def write_then_crash(entries: Sequence[AuditEntry]) -> list[AppendOutcome]:
        write(entries)
        raise RuntimeError("the container died between the write and the ack")

    monkeypatch.setattr(service, "append_entries", write_then_crash)
    with pytest.raises(RuntimeError):
        consume_app.handler({}, LAMBDA_CONTEXT)
    assert len(records(audit_table)) == 5
    assert run(_consumer_state(nats_endpoint.url))[1] == 5  # delivered, unacked

    # When the next run gets the same messages again after ack_wait
    monkeypatch.setattr(service, "append_entries", write)
    time.sleep(ACK_WAIT_S + 0.5)
    report = consume_app.handler({}, LAMBDA_CONTEXT)

    # Then they are recognised as recorded, acked, and each event still has exactly one record
    assert (report["appended"], report["duplicates"]) == (0, 5)
    assert [r.audit_id for r in records(audit_table)] == [e["id"] for e in events]
    assert run(_consumer_state(nats_endpoint.url)) == (0, 0)


async def _watch_advisories(url: str, seconds: float, ready: asyncio.Event) -> list[dict[str, Any]]:
    nc = await nats.connect(url)
    seen: list[dict[str, Any]] = []
    sub = await nc.subscribe(ADVISORY)
    await nc.flush()
    ready.set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not seen:
        try:
            message = await sub.next_msg(timeout=0.2)
        except nats.errors.TimeoutError:
            continue
        seen.append(json.loads(message.data))
    await nc.close()
    return seen


def test_a_poison_message_ends_in_the_dead_letter_stream_after_max_deliver(
    consume_app: ModuleType, nats_endpoint: Nats, audit_table: AuditTable
) -> None:
    # Given a valid event and, between two of them, a message that is not a CloudEvent
    first, second = event(1), event(2)

    async def scenario() -> tuple[list[dict[str, Any]], list[int], dict[str, Any]]:
        ready = asyncio.Event()
        watcher = asyncio.create_task(_watch_advisories(nats_endpoint.url, 10.0, ready))
        await ready.wait()
        sequences = await publish(
            nats_endpoint.url,
            [
                (first["type"], json.dumps(first).encode(), first["id"]),
                ("vaultpay.account.created", b"{not json", "poison-1"),
                (second["type"], json.dumps(second).encode(), second["id"]),
            ],
        )
        # When the function runs (in a thread: it drives its own event loop)
        report = await asyncio.to_thread(consume_app.handler, {}, LAMBDA_CONTEXT)
        return await watcher, sequences, report

    advisories, sequences, report = run(scenario())

    # Then the good events are recorded once, and the poison one was nak'd until max_deliver...
    assert [r.audit_id for r in records(audit_table)] == [first["id"], second["id"]]
    assert report["rejected"] == MAX_DELIVER
    # ...which raised the MAX_DELIVERIES advisory for its stream sequence
    assert len(advisories) == 1
    assert advisories[0]["stream_seq"] == sequences[1]
    assert advisories[0]["deliveries"] == MAX_DELIVER

    async def dead_letters() -> int:
        nc = await nats.connect(nats_endpoint.url)
        info = await nc.jetstream().stream_info(DLQ_STREAM)
        await nc.close()
        return info.state.messages

    # ...and the dead-letter stream kept it; the poison message is no longer delivered
    assert run(dead_letters()) == 1
    assert run(_consumer_state(nats_endpoint.url)) == (0, 0)


def test_one_nats_connection_serves_every_warm_invocation(
    consume_app: ModuleType, nats_endpoint: Nats, audit_table: AuditTable
) -> None:
    from vaultpay.bootstrap.audit import jetstream

    for n in range(3):
        publish_events(nats_endpoint.url, [event(n)])
        consume_app.handler({}, LAMBDA_CONTEXT)
        assert jetstream()._client is not None

    with urllib.request.urlopen(f"{nats_endpoint.monitor}/connz", timeout=5) as response:
        connections = json.loads(response.read())["connections"]
    assert [c.get("name") for c in connections].count("vaultpay-audit-consumer") == 1
    assert len(records(audit_table)) == 3


def test_an_unreachable_table_spends_no_delivery(
    consume_app: ModuleType, nats_endpoint: Nats, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given events waiting, and a table that cannot be used
    publish_events(nats_endpoint.url, [event(1), event(2)])
    monkeypatch.setenv("AUDIT_TABLE", "missing-AuditTable")
    reset_audit_caches()

    # When the function runs, it fails...
    with pytest.raises(ConfigurationError):
        consume_app.handler({}, LAMBDA_CONTEXT)

    # ...before fetching: both messages are still pending, none delivered
    assert run(_consumer_state(nats_endpoint.url)) == (2, 0)


def test_a_missing_jetstream_consumer_is_a_configuration_error(
    consume_app: ModuleType, nats_endpoint: Nats
) -> None:
    async def drop_consumer() -> None:
        nc = await nats.connect(nats_endpoint.url)
        await nc.jetstream().delete_consumer(STREAM, DURABLE)
        await nc.close()

    run(drop_consumer())

    with pytest.raises(ConfigurationError, match=DURABLE):
        consume_app.handler({}, LAMBDA_CONTEXT)

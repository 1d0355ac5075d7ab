"""The pull-consumer loop the audit and fraud consumers share (vaultpay.events.jetstream.pull) and the one
way every NATS connection is opened: ack, nak (never term), the time budget, flushes, failures part-way, the
lag metrics; fakes only, no I/O."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from vaultpay.audit.consumer import consume as consume_audit
from vaultpay.audit.memory import InMemoryAuditStore
from vaultpay.audit.model import AppendOutcome, AuditEntry
from vaultpay.audit.service import AuditService
from vaultpay.events.jetstream import (
    Ack,
    ConsumerLag,
    Delivery,
    NatsConnection,
    PullReport,
    Reject,
    Verdict,
    consume_durable,
    pull,
)
from vaultpay.fraud.consumer import consume as consume_fraud
from vaultpay.fraud.memory import MemoryFraudStore
from vaultpay.fraud.service import ProfileService
from vaultpay.shared.errors import TransientError
from vaultpay.shared.events import DomainEvent

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]
PAYLOAD = b"card 4111 1111 1111 1111"  # what a rejected message holds must never reach the log


@dataclass
class Message:
    data: bytes
    seq: int = 0
    settled: list[str] = field(default_factory=list)
    fail_ack: bool = False

    @property
    def metadata(self) -> Any:
        return SimpleNamespace(sequence=SimpleNamespace(stream=self.seq), num_delivered=2)

    async def ack(self) -> None:
        if self.fail_ack:
            raise TransientError("the connection went away")
        self.settled.append("ack")

    async def nak(self, delay: float | None = None) -> None:
        self.settled.append("nak")

    async def term(self) -> None:
        self.settled.append("term")


@dataclass
class Source:
    batches: list[list[Message]]
    fetches: list[tuple[int, float]] = field(default_factory=list)
    flushes: int = 0

    async def fetch(self, batch: int, wait_s: float) -> list[Any]:
        self.fetches.append((batch, wait_s))
        return self.batches.pop(0) if self.batches else []

    async def flush(self) -> None:
        self.flushes += 1


class RecordingLog:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, Any]]] = []

    def warning(self, msg: str, *, extra: dict[str, Any]) -> None:
        self.warnings.append((msg, extra))


def by_content(messages: Sequence[Delivery]) -> AsyncGenerator[Verdict, None]:
    """A handler that acks b"ok" and rejects anything else."""

    async def verdicts() -> AsyncGenerator[Verdict, None]:
        for message in messages:
            yield Ack(message) if message.data == b"ok" else Reject(message, "not a CloudEvent")

    return verdicts()


def run(source: Source, handle: Any = by_content, **options: Any) -> PullReport:
    options = {"name": "test", "remaining_ms": lambda: 60_000, "batch": 10, **options}
    return asyncio.run(pull(source, handle, PullReport(), **options))


def test_handled_messages_are_acked_and_poison_is_nakd_never_termed() -> None:
    # Given two batches with a poison message among good ones
    good, poison, later = Message(b"ok", 1), Message(PAYLOAD, 2), Message(b"ok", 3)
    source = Source([[good, poison], [later]])
    log = RecordingLog()
    # When the loop runs
    report = run(source, log=log, batch=2, fetch_timeout_s=0.5)
    # Then the good ones are acked once; the poison is nak'd (towards max_deliver and the dead-letter stream's
    # MAX_DELIVERIES advisory), never termed, whose advisory no dead-letter stream would see
    assert (good.settled, poison.settled, later.settled) == (["ack"], ["nak"], ["ack"])
    assert (report.batches, report.fetched, report.rejected, report.stopped) == (2, 3, 1, "drained")
    # And each batch's acks were flushed before the next fetch, which asked for the batch size and wait given
    assert source.flushes == 2
    assert source.fetches == [(2, 0.5), (2, 0.5), (2, 0.5)]
    # And the rejection is logged with its reason and stream position, never the payload
    assert log.warnings == [
        ("test message rejected", {"reason": "not a CloudEvent", "stream_seq": 2, "deliveries": 2})
    ]
    assert PAYLOAD.decode() not in json.dumps(log.warnings)


def test_a_message_without_metadata_is_still_rejected_and_logged_without_a_position() -> None:
    poison = Message(PAYLOAD)
    poison_without_metadata = SimpleNamespace(data=PAYLOAD, metadata=None, ack=poison.ack, nak=poison.nak)
    log = RecordingLog()
    report = run(Source([[poison_without_metadata]]), log=log)
    assert poison.settled == ["nak"] and report.rejected == 1
    assert log.warnings == [("test message rejected", {"reason": "not a CloudEvent"})]


def test_no_fetch_when_the_invocation_is_near_its_end() -> None:
    # Given less time left than the reserve a batch needs
    source = Source([[Message(b"ok")]])
    report = run(source, remaining_ms=lambda: 4_999, reserve_ms=5_000)
    # Then nothing is fetched (nothing is delivered only to wait out ack_wait)
    assert (report.stopped, report.fetched, source.fetches, source.flushes) == ("time", 0, [], 0)


def test_the_run_stops_between_batches_when_time_runs_low() -> None:
    left = iter([60_000, 1_000])
    source = Source([[Message(b"ok")], [Message(b"ok")]])
    report = run(source, remaining_ms=lambda: next(left))
    assert (report.stopped, report.batches, len(source.batches)) == ("time", 1, 1)


def test_a_handler_failure_part_way_settles_what_was_decided_flushes_and_raises() -> None:
    # Given a handler that decides the first message, then its store fails
    first, second = Message(b"ok"), Message(b"ok")
    closed: list[bool] = []

    async def fails_on_the_second(messages: Sequence[Delivery]) -> AsyncGenerator[Verdict, None]:
        try:
            yield Ack(messages[0])
            raise RuntimeError("DynamoDB down")
        finally:
            closed.append(True)

    source = Source([[first, second], [Message(b"ok")]])
    # When the loop runs, the failure is raised as it is
    with pytest.raises(RuntimeError, match="DynamoDB down"):
        run(source, handle=fails_on_the_second)
    # Then the first stays acked (its ack flushed), the second is left for redelivery after ack_wait, and no
    # further batch was fetched
    assert (first.settled, second.settled) == (["ack"], [])
    assert (source.flushes, len(source.fetches)) == (1, 1)
    assert closed == [True]


def test_an_ack_that_fails_stops_the_run_and_closes_the_handler() -> None:
    # Given a connection that breaks on the first ack
    broken, untouched = Message(b"ok", fail_ack=True), Message(b"ok")
    closed: list[bool] = []

    async def acks_all(messages: Sequence[Delivery]) -> AsyncGenerator[Verdict, None]:
        try:
            for message in messages:
                yield Ack(message)
        finally:
            closed.append(True)

    source = Source([[broken, untouched]])
    with pytest.raises(TransientError):
        run(source, handle=acks_all)
    # Then the rest is not settled (it comes back), and the handler was closed, not left suspended
    assert (broken.settled, untouched.settled, closed, source.flushes) == ([], [], [True], 1)


# ---- what each consumer decides, through the shared loop -------------------------------------------------


def cloudevent(event_type: str) -> bytes:
    fields = {
        "source": "/vaultpay/test",
        "subject": "x",
        "data": {},
        "correlation_id": "c",
        "actor": "usr_01",
    }
    return json.dumps(DomainEvent(type=event_type, **fields).cloudevent()).encode()


def test_the_audit_consumer_naks_unparseable_messages_before_its_batch_write_and_acks_only_after_it() -> None:
    # Given a batch whose transaction fails after the write (the container dies before the acks)
    class CrashAfterWrite(AuditService):
        def append_entries(self, entries: Sequence[AuditEntry]) -> list[AppendOutcome]:
            super().append_entries(entries)
            raise RuntimeError("crash between the write and the ack")

    poison, valid = Message(b"not json"), Message(cloudevent("vaultpay.transaction.completed"))
    source = Source([[poison, valid]])
    with pytest.raises(RuntimeError):
        asyncio.run(consume_audit(source, CrashAfterWrite(InMemoryAuditStore()), remaining_ms=lambda: 60_000))
    # Then the poison was rejected before the write, the valid one is neither acked nor nak'd (redelivered,
    # and its marker makes that harmless), and what was settled was flushed
    assert (poison.settled, valid.settled, source.flushes) == (["nak"], [], 1)


def test_the_fraud_consumer_acks_each_message_after_its_own_write_so_a_failure_keeps_the_earlier_acks() -> (
    None
):
    # Given a profile store that fails on the second event of a batch
    class FailsOnTheSecond(ProfileService):
        calls = 0

        def apply(self, event: Any) -> bool:
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("DynamoDB down")
            return super().apply(event)

    login = json.dumps(
        {
            "specversion": "1.0", "id": "ev-1", "source": "/vaultpay/auth", "subject": "x",
            "time": "2026-11-28T12:00:00.000Z", "type": "vaultpay.auth.login.succeeded",
            "datacontenttype": "application/json", "correlationid": "c",
            "data": {"user_id": "usr_alice", "device_id": "device-1"},
        }
    ).encode()  # fmt: skip
    ignored, applied, failing = (
        Message(cloudevent("vaultpay.account.created")),
        Message(login),
        Message(login),
    )
    source = Source([[ignored, applied, failing]])
    with pytest.raises(RuntimeError):
        asyncio.run(consume_fraud(source, FailsOnTheSecond(MemoryFraudStore()), remaining_ms=lambda: 60_000))
    # Then the event the profile does not learn from and the one applied stay acked; the failed one comes back
    assert (ignored.settled, applied.settled, failing.settled, source.flushes) == (["ack"], ["ack"], [], 1)


# ---- one scheduled run of a durable consumer -------------------------------------------------------------


class LaggingSource(Source):
    async def lag(self) -> ConsumerLag:
        return ConsumerLag(pending=4, ack_pending=1, redelivered=2)


class FakeConnection:
    def __init__(self, source: LaggingSource) -> None:
        self.source = source
        self.bound: list[tuple[str, str]] = []

    async def pull_source(self, stream: str, durable: str) -> LaggingSource:
        self.bound.append((stream, durable))
        return self.source


def test_a_durable_run_reports_its_backlog_and_publishes_it_as_the_lag_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    published: list[tuple[str, dict[str, int]]] = []
    monkeypatch.setattr(
        "vaultpay.shared.observability.publish_lag",
        lambda consumer, **lag: published.append((consumer, lag)),
    )
    connection = FakeConnection(LaggingSource([[Message(b"ok")]]))

    async def consume(source: Any) -> PullReport:
        return await pull(source, by_content, PullReport(), name="test", remaining_ms=lambda: 60_000, batch=5)

    report = consume_durable(connection, "VAULTPAY", "audit-workers", consume)

    assert connection.bound == [("VAULTPAY", "audit-workers")]
    assert report.lag == ConsumerLag(4, 1, 2) and report.stopped == "drained"
    assert report.as_dict()["lag"] == {"pending": 4, "ack_pending": 1, "redelivered": 2}
    assert published == [("audit-workers", {"pending": 4, "ack_pending": 1, "redelivered": 2})]


# ---- one way to open a connection ------------------------------------------------------------------------

POLICY = {"allow_reconnect": False, "max_reconnect_attempts": 1, "reconnect_time_wait": 0}


@pytest.fixture
def refused_connects(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """nats.connect, recording what it was asked and refusing (no server anywhere)."""
    calls: list[dict[str, Any]] = []

    async def connect(servers: list[str], **options: Any) -> Any:
        calls.append({"servers": servers, **options})
        raise ConnectionRefusedError("nothing listens there")

    monkeypatch.setattr("nats.connect", connect)
    return calls


def test_the_kept_connection_the_health_check_and_the_configuration_open_theirs_alike(
    refused_connects: list[dict[str, Any]],
) -> None:
    from vaultpay.events.jetstream import run_blocking
    from vaultpay.events.jetstream_config import apply_jetstream_config
    from vaultpay.ops.checks import NatsCheck

    config = ROOT / "infra" / "nats" / "jetstream.json"
    kept = NatsConnection(["tls://a:4222", "tls://b:4222"], name="vaultpay-relay-x", tls={"tls": "context"})
    with pytest.raises(TransientError, match=r"NATS is unreachable \(ConnectionRefusedError\)"):
        run_blocking(kept.client())
    with pytest.raises(ConnectionRefusedError):
        asyncio.run(
            NatsCheck("tls://a:4222", timeout_s=1.0, connect_options=lambda: {"user": "health"}).run()
        )
    with pytest.raises(ConnectionRefusedError):
        asyncio.run(apply_jetstream_config("tls://a:4222,tls://b:4222", config, connect_timeout_s=5.0))

    names = [call["name"] for call in refused_connects]
    assert names == ["vaultpay-relay-x", "vaultpay-health", "vaultpay-jetstream-config"]
    # One attempt per server at most twice, no reconnecting in the background, whole-second connect timeouts
    assert all({key: call[key] for key in POLICY} == POLICY for call in refused_connects)
    assert [call["connect_timeout"] for call in refused_connects] == [2, 1, 5]
    assert [call["servers"] for call in refused_connects] == [
        ["tls://a:4222", "tls://b:4222"],
        ["tls://a:4222"],
        ["tls://a:4222", "tls://b:4222"],
    ]
    assert refused_connects[0]["tls"] == "context" and refused_connects[1]["user"] == "health"

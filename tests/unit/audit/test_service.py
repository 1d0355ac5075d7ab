"""Audit use cases with the in-memory store: idempotent appends, query validation, cursors, the consumer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest

from vaultpay.audit.consumer import consume
from vaultpay.audit.errors import AuditWriteRejected
from vaultpay.audit.memory import InMemoryAuditStore
from vaultpay.audit.model import (
    APPENDED,
    DUPLICATE,
    REJECTED,
    AppendOutcome,
    AuditEntry,
    AuditRecord,
    entry_from_cloudevent,
)
from vaultpay.audit.service import (
    AuditQueryRequest,
    AuditService,
    InvalidAuditEvent,
    require_admin,
)
from vaultpay.shared.errors import Forbidden, ValidationFailed
from vaultpay.shared.events import DomainEvent

pytestmark = pytest.mark.unit


def event(n: int, *, actor: str = "usr_01", correlation_id: str = "c-1", minute: int = 0) -> dict[str, Any]:
    return DomainEvent(
        type="vaultpay.account.deposited",
        source="/vaultpay/accounts",
        subject=f"acc_{n}",
        data={"amount": n},
        correlation_id=correlation_id,
        actor=actor,
        id=f"evt-{n:04d}",
        time=f"2026-11-28T10:{minute:02d}:{n % 60:02d}.000Z",
    ).cloudevent()


@pytest.fixture
def store() -> InMemoryAuditStore:
    return InMemoryAuditStore()


@pytest.fixture
def service(store: InMemoryAuditStore) -> AuditService:
    return AuditService(store)


# ---- append ------------------------------------------------------------------------------------------


def test_the_same_event_twice_makes_one_record(service: AuditService, store: InMemoryAuditStore) -> None:
    first = service.append(event(1))
    again = service.append(event(1))

    assert first.status == APPENDED
    assert again.status == DUPLICATE
    assert len(store.chain) == 1
    assert service.verify().ok


def test_an_event_that_is_not_a_cloudevent_is_a_422(service: AuditService) -> None:
    with pytest.raises(InvalidAuditEvent) as caught:
        service.append({**event(1), "specversion": "0.3"})

    assert caught.value.status == 422


class RefusingStore(InMemoryAuditStore):
    """Refuses, as DynamoDB's ValidationException would, any batch holding the entry `bad`."""

    def __init__(self, bad: str) -> None:
        super().__init__()
        self.bad = bad

    def append(self, entries: Sequence[AuditEntry]) -> list[AppendOutcome]:
        if any(entry.audit_id == self.bad for entry in entries):
            raise AuditWriteRejected("refused")
        return super().append(entries)


def test_an_entry_the_store_refuses_is_rejected_alone_and_the_others_are_appended() -> None:
    store = RefusingStore("evt-0002")
    service = AuditService(store)

    outcomes = service.append_entries([entry_from_cloudevent(event(n)) for n in (1, 2, 3)])

    assert [o.status for o in outcomes] == [APPENDED, REJECTED, APPENDED]
    assert [r.audit_id for r in store.chain if isinstance(r, AuditRecord)] == ["evt-0001", "evt-0003"]


# ---- query -------------------------------------------------------------------------------------------


def test_the_admin_role_is_required() -> None:
    require_admin("admin")
    with pytest.raises(Forbidden):
        require_admin("customer")


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (AuditQueryRequest(occurred_from="yesterday"), "from"),
        (AuditQueryRequest(occurred_to="2026-11-28T10:00:00"), "to"),
        (AuditQueryRequest(occurred_from="2026-11-28T11:00:00Z", occurred_to="2026-11-28T10:00:00Z"), "from"),
        (AuditQueryRequest(limit=0), "limit"),
        (AuditQueryRequest(limit=101), "limit"),
        (AuditQueryRequest(actor=""), "actor"),
        (AuditQueryRequest(cursor="!!!"), "cursor"),
    ],
)
def test_a_bad_filter_is_a_422_naming_the_parameter(
    service: AuditService, request_: AuditQueryRequest, field: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        service.query(request_)

    assert caught.value.status == 422
    assert [error.field for error in caught.value.errors] == [field]


def test_pages_follow_each_other_newest_first_without_overlap(service: AuditService) -> None:
    for n in range(1, 8):
        service.append(event(n))

    first = service.query(AuditQueryRequest(limit=3))
    second = service.query(AuditQueryRequest(limit=3, cursor=first.next_cursor))
    third = service.query(AuditQueryRequest(limit=3, cursor=second.next_cursor))

    seqs = [r.seq for page in (first, second, third) for r in page.items]
    assert seqs == [7, 6, 5, 4, 3, 2, 1]
    assert third.next_cursor is None
    assert first.next_cursor is not None
    assert set(first.next_cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_a_cursor_cannot_be_reused_under_other_filters(service: AuditService) -> None:
    for n in range(1, 4):
        service.append(event(n))
    page = service.query(AuditQueryRequest(limit=1))

    with pytest.raises(ValidationFailed) as caught:
        service.query(AuditQueryRequest(limit=1, actor="usr_02", cursor=page.next_cursor))

    assert caught.value.errors[0].field == "cursor"


# ---- the consumer loop, with a fake pull source -------------------------------------------------------


class FakeMessage:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.metadata = None
        self.acked = 0
        self.nakked = 0

    async def ack(self) -> None:
        self.acked += 1

    async def nak(self, delay: float | None = None) -> None:
        self.nakked += 1


class FakeSource:
    def __init__(self, messages: list[FakeMessage]) -> None:
        self.waiting = list(messages)
        self.flushes = 0

    async def fetch(self, batch: int, wait_s: float) -> list[Any]:
        taken, self.waiting = self.waiting[:batch], self.waiting[batch:]
        return taken

    async def flush(self) -> None:
        self.flushes += 1


def test_the_consumer_acks_records_and_duplicates_and_naks_poison(service: AuditService) -> None:
    # Given an event already recorded, a new one, and a poison message
    service.append(event(1))
    messages = [
        FakeMessage(json.dumps(event(1)).encode()),
        FakeMessage(json.dumps(event(2)).encode()),
        FakeMessage(b"not json"),
    ]
    source = FakeSource(messages)

    # When the consumer runs
    report = asyncio.run(consume(source, service, remaining_ms=lambda: 60_000, batch=2))

    # Then both events are acked once, the poison is nak'd (towards max_deliver and the DLQ), acks flushed
    assert [(m.acked, m.nakked) for m in messages] == [(1, 0), (1, 0), (0, 1)]
    assert (report.appended, report.duplicates, report.rejected, report.stopped) == (1, 1, 1, "drained")
    assert source.flushes == report.batches == 2


def test_the_consumer_acks_nothing_when_the_write_fails(store: InMemoryAuditStore) -> None:
    class CrashAfterWrite(AuditService):
        def append_entries(self, entries: Sequence[AuditEntry]) -> list[AppendOutcome]:
            super().append_entries(entries)
            raise RuntimeError("crash between the write and the ack")

    message = FakeMessage(json.dumps(event(1)).encode())

    with pytest.raises(RuntimeError):
        asyncio.run(consume(FakeSource([message]), CrashAfterWrite(store), remaining_ms=lambda: 60_000))

    assert (message.acked, message.nakked) == (0, 0)


def test_the_consumer_fetches_nothing_when_time_is_short(service: AuditService) -> None:
    message = FakeMessage(json.dumps(event(1)).encode())

    report = asyncio.run(consume(FakeSource([message]), service, remaining_ms=lambda: 1_000))

    assert report.stopped == "time"
    assert report.fetched == 0

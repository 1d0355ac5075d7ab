"""The outbox sweeper: re-publishes the outbox items a long outage left behind, found through the sparse
OutboxPending index, and marks them published.

An item is pending only when the relay's stream mapping gave up on it (an outage longer than its retries):
the rescue (vaultpay.events.rescue) reads such batches back from the stream and marks what it could not
publish itself. The relay marks nothing: what it publishes was never pending.

Re-publishing is safe: the event keeps its id, so JetStream de-duplicates it within its window
(`Nats-Msg-Id`), and every consumer is idempotent on the event id beyond it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from vaultpay.events.relay import PoisonRecord, Published, Publisher, outbox_event, to_message
from vaultpay.shared import kernel
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.kernel import rfc3339

# Items younger than this are left to the rescue that marked them (it may still be publishing). With the
# schedule (every two minutes, template.yaml), an item re-published after a sweep that published it but
# failed to mark it goes out again at most four minutes later: inside JetStream's five-minute
# de-duplication window (infra/nats/jetstream.json), so the stream still holds it once
# (tests/unit/events/test_outbox_sweeper.py keeps the three in step).
DEFAULT_OLDER_THAN_S = 120.0
DEFAULT_MAX_ITEMS = 500  # per table and run: a run stays well inside its timeout; the next one goes on
PUBLISH_CHUNK = 100


# ---- the ports ---------------------------------------------------------------------------------------


class Marker(Protocol):
    """Marks outbox items published (the item with `published` true and no `pending`), so the next sweep
    leaves them alone. `items` are the outbox items as published, DynamoDB attribute maps (the sweeper's
    query). Best effort: returns how many could not be marked (an item past its expiry is not a failure);
    may also raise, which the caller counts as every item not marked."""

    async def mark_published(self, table: str, items: Sequence[Mapping[str, Any]]) -> int: ...


async def mark_published(
    marker: Marker | None, table: str, items: Sequence[Mapping[str, Any]], log: Any
) -> int:
    """Marks what was published, never raising: the events are out already, and an item left unmarked
    is only re-published by the next sweep (JetStream de-duplicates it, consumers are idempotent).
    Returns how many items were not marked."""
    if marker is None or not items:
        return 0
    try:
        failed = await marker.mark_published(table, items)
    except Exception as exc:
        log.warning(
            "outbox items not marked published; the next sweep re-publishes them",
            extra={"table": table, "events": len(items), "error": type(exc).__name__},
        )
        return len(items)
    if failed:
        log.warning(
            "outbox items not marked published; the next sweep re-publishes them",
            extra={"table": table, "events": len(items), "failed": failed},
        )
    return failed


class PendingStore(Protocol):
    """Reads the OutboxPending index: items with pending = "1" and `time` before `before` (RFC 3339),
    oldest first, at most `limit`, as DynamoDB attribute maps ({"S": ...})."""

    async def pending(self, table: str, *, before: str, limit: int) -> Sequence[Mapping[str, Any]]: ...


@dataclass
class SweepOutcome:
    found: int = 0
    published: int = 0
    duplicates: int = 0
    failed: int = 0
    poison: int = 0
    marked: int = 0
    mark_failed: int = 0


def item_event(item: Mapping[str, Any]) -> DomainEvent | None:
    """The event an outbox item holds, validated exactly as the relay validates a stream record."""
    return outbox_event({"eventName": "INSERT", "dynamodb": {"NewImage": item}})


class Sweeper:
    def __init__(
        self,
        store: PendingStore,
        publisher: Publisher,
        marker: Marker | None,
        clock: Callable[[], float] = kernel.now,
        *,
        log: Any = None,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._marker = marker
        self._clock = clock
        self._log = log

    async def sweep(
        self,
        tables: Sequence[str],
        *,
        older_than_s: float = DEFAULT_OLDER_THAN_S,
        max_items: int = DEFAULT_MAX_ITEMS,
    ) -> SweepOutcome:
        outcome = SweepOutcome()
        before = rfc3339(self._clock() - older_than_s)
        for table in tables:
            items = await self._store.pending(table, before=before, limit=max_items)
            outcome.found += len(items)
            events: list[tuple[DomainEvent, Mapping[str, Any]]] = []
            for item in items:
                try:
                    event = item_event(item)
                except PoisonRecord as exc:
                    outcome.poison += 1
                    self._warn(
                        "poison outbox item: not re-published",
                        table=table,
                        event_id=exc.event_id,
                        field=exc.field,
                    )
                    continue
                if event is not None:
                    events.append((event, item))
            for start in range(0, len(events), PUBLISH_CHUNK):
                await self._publish(table, events[start : start + PUBLISH_CHUNK], outcome)
        if self._log is not None:
            self._log.info("outbox swept", extra={"tables": len(tables), **vars(outcome)})
        return outcome

    async def _publish(
        self, table: str, events: Sequence[tuple[DomainEvent, Mapping[str, Any]]], outcome: SweepOutcome
    ) -> None:
        results = await self._publisher.publish([to_message(event) for event, _ in events])
        published: list[Mapping[str, Any]] = []
        for (event, item), result in zip(events, results, strict=True):
            if isinstance(result, Published):
                if result.duplicate:
                    outcome.duplicates += 1
                else:
                    outcome.published += 1
                published.append(item)
            else:
                outcome.failed += 1
                self._warn(
                    "event not re-published; the next sweep tries again", table=table, event_id=event.id
                )
        failed = await mark_published(self._marker, table, published, self._log or _NoLog())
        outcome.mark_failed += failed
        outcome.marked += len(published) - failed if self._marker is not None else 0

    def _warn(self, message: str, **extra: Any) -> None:
        if self._log is not None:
            self._log.warning(message, extra=extra)


class _NoLog:
    def warning(self, *args: Any, **kwargs: Any) -> None:
        pass

"""The rescue of given-up relay batches: what the stream mapping could not publish, found without marks.

The relay marks nothing it publishes (a write per event was most of its cost). What it could not publish, it
leaves to its stream mapping, which retries a batch until MaximumRetryAttempts or MaximumRecordAgeInSeconds
and then sends the batch's *place* to its on-failure destination (an SQS queue): the stream, the shard and the
first and last sequence numbers, never the records. The stream keeps records for 24 hours, longer than the
mapping's record age (template.yaml), so the rescue can still read them back: it publishes each outbox event
it finds there (the event keeps its id, so JetStream de-duplicates what did go out) and marks the items it
still could not publish `pending`, which puts them in the sparse OutboxPending index the sweeper re-publishes
from. A queue message is deleted only once every event of its batch is published or marked, so a crash or an
outage in between leaves it for the next run. The sweeper's schedule runs the rescue first.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from vaultpay.events.relay import PoisonRecord, Published, Publisher, outbox_event, table_name, to_message
from vaultpay.shared.errors import TransientError, VaultPayError
from vaultpay.shared.events import DomainEvent

# Queue messages read per run: ten per ReceiveMessage (SQS's most), a run stays well inside its timeout.
DEFAULT_MAX_BATCHES = 50


class RecordsGone(VaultPayError):
    """The stream no longer holds the batch (trimmed after 24 hours, or the stream was replaced)."""


class IncompleteRead(TransientError):
    """The stream did not return the whole batch this time; the next run reads it again."""


@dataclass(frozen=True, slots=True)
class FailedBatch:
    """Where a given-up batch sits: Lambda's on-failure record for a DynamoDB stream (DDBStreamBatchInfo)."""

    stream_arn: str
    shard_id: str
    start: str  # the first record's sequence number
    end: str  # the last record's sequence number


def failed_batch(body: str) -> FailedBatch | None:
    """The batch an on-failure message names, or None when the message is not one."""
    try:
        info = json.loads(body).get("DDBStreamBatchInfo")
    except (ValueError, AttributeError):
        return None
    if not isinstance(info, Mapping):
        return None
    fields = [info.get(name) for name in ("streamArn", "shardId", "startSequenceNumber", "endSequenceNumber")]
    if not all(isinstance(value, str) and value for value in fields):
        return None
    stream_arn, shard_id, start, end = (str(value) for value in fields)
    if not (start.isdigit() and end.isdigit()) or int(start) > int(end):
        return None
    return FailedBatch(stream_arn, shard_id, start, end)


# ---- the ports ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueMessage:
    receipt: str  # what deletes it
    message_id: str  # what a log line names (never the body)
    body: str


class FailureQueue(Protocol):
    """The relay mappings' on-failure queue."""

    async def receive(self, max_messages: int) -> Sequence[QueueMessage]: ...

    async def delete(self, message: QueueMessage) -> None: ...


class StreamReader(Protocol):
    """Reads a batch's records back from its stream, the first to the last sequence number inclusive.
    Raises RecordsGone when the stream no longer holds them, IncompleteRead when it could not read them
    all this time."""

    async def records(self, batch: FailedBatch) -> Sequence[Mapping[str, Any]]: ...


class PendingMarker(Protocol):
    """Marks outbox items pending (the sweeper's sparse index). `items` are the outbox items' images;
    returns how many could not be marked. An item already gone (past its expiry) is not a failure."""

    async def mark_pending(self, table: str, items: Sequence[Mapping[str, Any]]) -> int: ...


# ---- the service -------------------------------------------------------------------------------------


@dataclass
class RescueOutcome:
    batches: int = 0  # queue messages read
    rescued: int = 0  # batches fully handled (their message deleted)
    events: int = 0  # outbox events found in those batches
    published: int = 0
    duplicates: int = 0  # already in the stream (published before the mapping gave up)
    marked_pending: int = 0  # not published now: left to the sweeper
    poison: int = 0
    gone: int = 0  # batches the stream no longer held: an alarm, the events cannot be recovered here
    unreadable: int = 0  # messages that name no stream batch, or a table this relay does not own
    retried: int = 0  # batches left in the queue for the next run


class Rescuer:
    def __init__(
        self,
        queue: FailureQueue,
        reader: StreamReader,
        publisher: Publisher,
        marker: PendingMarker,
        *,
        tables: Collection[str],
        log: Any,
    ) -> None:
        self._queue = queue
        self._reader = reader
        self._publisher = publisher
        self._marker = marker
        self._tables = frozenset(tables)
        self._log = log

    async def rescue(self, *, max_batches: int = DEFAULT_MAX_BATCHES) -> RescueOutcome:
        outcome = RescueOutcome()
        while outcome.batches < max_batches:
            messages = await self._queue.receive(min(10, max_batches - outcome.batches))
            if not messages:
                break
            for message in messages:
                outcome.batches += 1
                if await self._rescue_one(message, outcome):
                    await self._queue.delete(message)
        if outcome.batches:
            self._log.info("given-up relay batches rescued", extra=vars(outcome))
        return outcome

    async def _rescue_one(self, message: QueueMessage, outcome: RescueOutcome) -> bool:
        """Handles one message; True when it may be deleted."""
        batch = failed_batch(message.body)
        table = table_name(batch.stream_arn) if batch is not None else None
        if batch is None or table is None or table not in self._tables:
            # Not a batch of an outbox this relay owns: left in the queue (its depth alarms) for a person.
            outcome.unreadable += 1
            self._log.error(
                "relay failure message names no outbox stream batch: left in the queue",
                extra={"message_id": message.message_id, "table": table},
            )
            return False
        try:
            records = await self._reader.records(batch)
        except RecordsGone:
            outcome.gone += 1
            self._log.error(
                "given-up relay batch no longer in the stream: its events cannot be rescued",
                extra=_where(batch, table, message),
            )
            return True
        except Exception as exc:  # throttling, timeouts, an incomplete read: the next run reads it again
            outcome.retried += 1
            self._log.warning(
                "given-up relay batch not read; the next run tries again",
                extra={**_where(batch, table, message), "error": type(exc).__name__},
            )
            return False
        events = self._events(records, table, outcome)
        outcome.events += len(events)
        unpublished = await self._publish(events, outcome)
        if unpublished:
            try:
                failed = await self._marker.mark_pending(table, [image for _, image in unpublished])
            except Exception as exc:
                failed = len(unpublished)
                self._log.warning("outbox items not marked pending", extra={"error": type(exc).__name__})
            outcome.marked_pending += len(unpublished) - failed
            if failed:
                outcome.retried += 1
                self._log.warning(
                    "given-up relay batch not fully rescued; the next run tries again",
                    extra={**_where(batch, table, message), "unmarked": failed},
                )
                return False
        outcome.rescued += 1
        return True

    def _events(
        self, records: Sequence[Mapping[str, Any]], table: str, outcome: RescueOutcome
    ) -> list[tuple[DomainEvent, Mapping[str, Any]]]:
        events: list[tuple[DomainEvent, Mapping[str, Any]]] = []
        for record in records:
            try:
                event = outbox_event(record)
            except PoisonRecord as exc:
                # The relay logged it when it gave up; this says it was seen again and left for a person.
                outcome.poison += 1
                self._log.error(
                    "poison outbox record in a given-up batch: not rescued",
                    extra={"table": table, "event_id": exc.event_id, "field": exc.field},
                )
                continue
            if event is not None:
                events.append((event, record["dynamodb"]["NewImage"]))
        return events

    async def _publish(
        self, events: Sequence[tuple[DomainEvent, Mapping[str, Any]]], outcome: RescueOutcome
    ) -> list[tuple[DomainEvent, Mapping[str, Any]]]:
        """Publishes the events; returns those that were not acknowledged."""
        if not events:
            return []
        try:
            results: Sequence[Any] = await self._publisher.publish([to_message(event) for event, _ in events])
        except Exception as exc:  # NATS unreachable: every event is left to the sweeper
            self._log.warning("rescued events not published", extra={"error": type(exc).__name__})
            return list(events)
        unpublished = []
        for pair, result in zip(events, results, strict=True):
            if isinstance(result, Published):
                if result.duplicate:
                    outcome.duplicates += 1
                else:
                    outcome.published += 1
            else:
                unpublished.append(pair)
        return unpublished


def _where(batch: FailedBatch, table: str, message: QueueMessage) -> dict[str, str]:
    """What finds a batch again (never its records' data)."""
    return {
        "table": table,
        "shard_id": batch.shard_id,
        "start_sequence_number": batch.start,
        "end_sequence_number": batch.end,
        "message_id": message.message_id,
    }

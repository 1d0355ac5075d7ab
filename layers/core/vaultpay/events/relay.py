"""The outbox relay's core: a DynamoDB stream record of an outbox INSERT becomes a CloudEvent on JetStream."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from vaultpay.shared.errors import TransientError, VaultPayError
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.kernel import parse_timestamp

# Equal to vaultpay.shared.outbox.OUTBOX_KIND (a unit test keeps them equal). Not imported from there: that
# module loads PynamoDB and botocore, ~180 ms of cold start that the relay never uses.
OUTBOX_KIND = "outbox"
MSG_ID_HEADER = "Nats-Msg-Id"
# The CloudEvents NATS binding's structured mode: the whole envelope is the payload.
CONTENT_TYPE = "application/cloudevents+json"
# The type becomes the NATS subject: lower-case tokens only, so no wildcard, space or empty token can
# reach the server (a bad subject would be refused after the connection was already used).
_EVENT_TYPE = re.compile(r"^vaultpay(\.[a-z0-9_-]+)+$")
_REQUIRED = ("event_id", "type", "source", "subject", "time", "correlation_id", "data")
# "arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>": the outbox item's own table.
_STREAM_ARN = re.compile(r"^arn:[^:]+:dynamodb:[^:]*:[^:]*:table/([^/]+)/stream/")


class PoisonRecord(VaultPayError):
    """An outbox record that can never be published: retries cannot help, so after them it lands in the
    mapping's on-failure queue. Its message names the field at fault, never a value."""

    code = "poison_record"

    def __init__(self, message: str, *, field: str | None = None, event_id: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.event_id = event_id


def outbox_event(record: Mapping[str, Any]) -> DomainEvent | None:
    """The event an outbox INSERT record carries; None for any other record (the mapping's filter should
    have dropped it: this is defence in depth). Raises PoisonRecord for a malformed outbox item."""
    if record.get("eventName") != "INSERT":
        return None
    change = record.get("dynamodb")
    image = change.get("NewImage") if isinstance(change, Mapping) else None
    if not isinstance(image, Mapping) or _string(image, "kind") != OUTBOX_KIND:
        return None
    event_id = _string(image, "event_id")
    values: dict[str, str] = {}
    for name in _REQUIRED:
        value = _string(image, name)
        if value is None or not value.strip():
            raise PoisonRecord(f"outbox item has no string attribute {name!r}", field=name, event_id=event_id)
        values[name] = value
    actor = _optional_string(image, "actor", event_id)
    if not _EVENT_TYPE.match(values["type"]):
        raise PoisonRecord("outbox item has an invalid event type", field="type", event_id=event_id)
    try:
        parse_timestamp(values["time"])
    except ValueError:
        raise PoisonRecord("outbox item time is not RFC 3339", field="time", event_id=event_id) from None
    try:
        data = json.loads(values["data"])
    except ValueError:
        # `from None`: the decoder's message quotes the document, and the document may hold anything.
        raise PoisonRecord("outbox item data is not JSON", field="data", event_id=event_id) from None
    if not isinstance(data, dict):
        raise PoisonRecord("outbox item data is not a JSON object", field="data", event_id=event_id)
    try:
        return DomainEvent(
            id=values["event_id"],
            type=values["type"],
            source=values["source"],
            subject=values["subject"],
            time=values["time"],
            correlation_id=values["correlation_id"],
            actor=actor,
            data=data,
        )
    except ValueError as exc:
        # DomainEvent refuses secrets, PII keys and floats; its message names the path, not the value.
        raise PoisonRecord(f"outbox item refused: {exc}", field="data", event_id=event_id) from exc


def _string(image: Mapping[str, Any], name: str) -> str | None:
    attribute = image.get(name)
    if isinstance(attribute, Mapping):
        value = attribute.get("S")
        if isinstance(value, str):
            return value
    return None


def _optional_string(image: Mapping[str, Any], name: str, event_id: str | None) -> str | None:
    attribute = image.get(name)
    if attribute is None or (isinstance(attribute, Mapping) and attribute.get("NULL") is True):
        return None
    value = _string(image, name)
    if value is None:
        raise PoisonRecord(f"outbox item attribute {name!r} is not a string", field=name, event_id=event_id)
    return value


# ---- the publisher port ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One JetStream message: subject = event type, payload = CloudEvent JSON, Nats-Msg-Id = event id."""

    subject: str
    payload: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Published:
    """JetStream's PubAck: stored at `seq`, or recognised as a duplicate of the message already there."""

    stream: str
    seq: int
    duplicate: bool


PublishResult = Published | Exception


class Publisher(Protocol):
    """Publishes a batch and waits for every acknowledgement; one result per message, in order. A message
    that was not acknowledged gets an exception, never a silent gap."""

    async def publish(self, messages: Sequence[OutboundMessage]) -> Sequence[PublishResult]: ...


def to_message(event: DomainEvent) -> OutboundMessage:
    payload = json.dumps(event.cloudevent(), separators=(",", ":"), ensure_ascii=False).encode()
    return OutboundMessage(
        subject=event.type,
        payload=payload,
        headers={MSG_ID_HEADER: event.id, "Content-Type": CONTENT_TYPE},
    )


def table_name(event_source_arn: object) -> str | None:
    """The table a stream record (or a stream batch) came from, parsed from its stream ARN; None if it
    is not one."""
    if not isinstance(event_source_arn, str):
        return None
    match = _STREAM_ARN.match(event_source_arn)
    return match.group(1) if match else None


# ---- the service -------------------------------------------------------------------------------------


class NotPublished(TransientError):
    """The record's event was not acknowledged by JetStream; the stream mapping retries it."""


@dataclass
class BatchOutcome:
    """What happened to each record of one stream batch, keyed by the record's sequence number."""

    failures: dict[str, Exception] = field(default_factory=dict)
    published: int = 0
    duplicates: int = 0  # already in the stream: a retry or a re-delivered batch, de-duplicated by JetStream
    ignored: int = 0  # not an outbox INSERT
    poison: int = 0
    failed: int = 0

    def batch_item_failures(self) -> list[dict[str, str]]:
        """Lambda's partial batch response: the failed records' sequence numbers, lowest first (the
        mapping retries from the lowest; every record after it comes again, published or not)."""
        ordered = sorted(self.failures, key=lambda key: int(key) if key.isdigit() else -1)
        return [{"itemIdentifier": key} for key in ordered]


def sequence_number(record: Any) -> str:
    """A stream record's sequence number (Lambda's name for it in batchItemFailures), from the raw dict or
    from a Powertools record that wraps it."""
    raw = getattr(record, "raw_event", record)
    change = raw.get("dynamodb") if isinstance(raw, Mapping) else None
    value = change.get("SequenceNumber") if isinstance(change, Mapping) else None
    return str(value) if value is not None else ""


async def publish_events(publisher: Publisher, events: Sequence[DomainEvent]) -> tuple[int, int]:
    """Publishes events that did not come from a stream batch (gateway request logs): (published, failed)."""
    if not events:
        return 0, 0
    results = await publisher.publish([to_message(event) for event in events])
    published = sum(1 for r in results if isinstance(r, Published))
    return published, len(results) - published


class Relay:
    """Publishes the outbox events of a stream batch, all at once, and says which records failed."""

    def __init__(self, publisher: Publisher, *, log: Any) -> None:
        self._publisher = publisher
        self._log = log

    async def relay(self, records: Sequence[Mapping[str, Any]]) -> BatchOutcome:
        outcome = BatchOutcome()
        batch: list[tuple[str, DomainEvent]] = []
        for record in records:
            key = sequence_number(record)
            try:
                event = outbox_event(record)
            except PoisonRecord as exc:
                outcome.poison += 1
                outcome.failures[key] = exc
                # Enough to find the item (table from the source ARN, event id, field); never its data.
                self._log.error(
                    "poison outbox record: not published",
                    extra={
                        "sequence_number": key,
                        "event_id": exc.event_id,
                        "field": exc.field,
                        "reason": exc.message,
                        "event_source_arn": record.get("eventSourceARN"),
                    },
                )
                continue
            if event is None:
                outcome.ignored += 1
                continue
            batch.append((key, event))
        if batch:
            # Every record after a failed one is retried by Lambda anyway, but publishing the whole batch
            # means the good records around a poison one are out now, not only after its retries end.
            results = await self._publisher.publish([to_message(event) for _, event in batch])
            for (key, event), result in zip(batch, results, strict=True):
                if isinstance(result, Published):
                    if result.duplicate:
                        outcome.duplicates += 1
                    else:
                        outcome.published += 1
                    continue
                outcome.failed += 1
                outcome.failures[key] = NotPublished(f"event {event.id} was not published: {result}")
                self._log.warning(
                    "event not published; the stream will deliver it again",
                    extra={
                        "sequence_number": key,
                        "event_id": event.id,
                        "event_type": event.type,
                        "correlation_id": event.correlation_id,
                        "error": type(result).__name__,
                    },
                )
        self._log.info(
            "outbox batch relayed",
            extra={
                "records": len(records),
                "published": outcome.published,
                "duplicates": outcome.duplicates,
                "ignored": outcome.ignored,
                "poison": outcome.poison,
                "failed": outcome.failed,
            },
        )
        return outcome

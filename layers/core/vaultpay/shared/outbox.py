"""The transactional outbox: an event is an item in its own domain table, written in the change's transaction.

Every domain table has string keys `pk` and `sk` and a stream; the relay's event filter passes only items
whose `kind` is "outbox" (INSERTs), so nothing else in the table reaches JetStream.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from vaultpay.shared.events import DomainEvent

OUTBOX_KIND = "outbox"
# Kept long enough for the relay's sweeper to re-publish anything a long outage left behind; the relay
# marks items published, and TTL removes them afterwards.
OUTBOX_RETENTION_S = 7 * 24 * 3600
# The Lambda event filter the relay's stream mapping uses (template.yaml), kept here beside the item shape.
STREAM_FILTER_PATTERN = {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": [OUTBOX_KIND]}}}}
# The sparse "not yet published" marker: `pending` = "1" is present only until the relay (or the sweeper)
# marks the item published, which removes it. The sparse GSI below holds exactly the unpublished items,
# sorted by event time, so the sweeper finds what a long outage left behind without scanning the table.
PENDING = "1"
PENDING_INDEX = "OutboxPending"  # partition key `pending` (S), sort key `time` (S); template.yaml


class OutboxItem(Model):
    """An outbox row. Bind it to a table with `outbox_model(table_name)`."""

    class Meta:
        abstract = True

    pk = UnicodeAttribute(hash_key=True)  # "OUTBOX#<event id>"
    sk = UnicodeAttribute(range_key=True)  # "OUTBOX"
    kind = UnicodeAttribute(default=OUTBOX_KIND)
    event_id = UnicodeAttribute()
    type = UnicodeAttribute()
    source = UnicodeAttribute()
    subject = UnicodeAttribute()
    time = UnicodeAttribute()
    correlation_id = UnicodeAttribute()
    actor = UnicodeAttribute(null=True)
    data = UnicodeAttribute()  # JSON text: DynamoDB numbers would come back as Decimals or floats
    published = BooleanAttribute(default=False)
    # PENDING until the relay marks the item published (which removes it): the OutboxPending index's key.
    pending = UnicodeAttribute(null=True)
    expires_at = NumberAttribute()  # the table's TTL attribute

    def to_event(self) -> DomainEvent:
        return DomainEvent(
            id=self.event_id,
            type=self.type,
            source=self.source,
            subject=self.subject,
            time=self.time,
            correlation_id=self.correlation_id,
            actor=self.actor,
            data=json.loads(self.data),
        )


@functools.cache
def outbox_model(table_name: str) -> type[OutboxItem]:
    """The outbox model bound to one domain table (resolved at first use, never at import)."""
    meta = type("Meta", (), {"table_name": table_name})
    return type(f"OutboxItem_{abs(hash(table_name))}", (OutboxItem,), {"Meta": meta})


def outbox_item(table_name: str, event: DomainEvent, *, now: float | None = None) -> OutboxItem:
    """The item to save in the same TransactWrite as the change that caused `event`."""
    model = outbox_model(table_name)
    return model(
        pk=f"OUTBOX#{event.id}",
        sk="OUTBOX",
        event_id=event.id,
        type=event.type,
        source=event.source,
        subject=event.subject,
        time=event.time,
        correlation_id=event.correlation_id,
        actor=event.actor,
        data=event.data_json(),
        published=False,
        pending=PENDING,
        expires_at=int((now if now is not None else time.time()) + OUTBOX_RETENTION_S),
    )


def outbox_attributes(event: DomainEvent, *, now: float | None = None) -> dict[str, Any]:
    """The same item as a plain attribute map, for writers that use the low-level client."""
    return {
        "pk": f"OUTBOX#{event.id}",
        "sk": "OUTBOX",
        "kind": OUTBOX_KIND,
        "event_id": event.id,
        "type": event.type,
        "source": event.source,
        "subject": event.subject,
        "time": event.time,
        "correlation_id": event.correlation_id,
        **({"actor": event.actor} if event.actor is not None else {}),
        "data": event.data_json(),
        "published": False,
        "pending": PENDING,  # present only until the relay marks the item published
        "expires_at": int((now if now is not None else time.time()) + OUTBOX_RETENTION_S),
    }

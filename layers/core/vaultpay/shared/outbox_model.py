"""The outbox item as a PynamoDB model, for the stores that write through PynamoDB (the auth table).

The item's shape is vaultpay.shared.outbox's `outbox_attributes`; this module only binds it to a model, so a
store on the low-level client never imports PynamoDB for its outbox (docs/persistence.md).
"""

from __future__ import annotations

import functools
import json

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from vaultpay.shared.events import DomainEvent
from vaultpay.shared.outbox import OUTBOX_KIND, outbox_attributes


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
    # Set by the sweeper on an item it re-published (and on items written before the relay stopped marking).
    published = BooleanAttribute(null=True)
    # PENDING while a rescued item waits for the sweeper (vaultpay.events.rescue): OutboxPending's key.
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
    return outbox_model(table_name)(**outbox_attributes(event, now=now))

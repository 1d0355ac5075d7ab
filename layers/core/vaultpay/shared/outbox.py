"""The transactional outbox: an event is an item in its own domain table, written in the change's transaction.

Every domain table has string keys `pk` and `sk` and a stream; the relay's event filter passes only items
whose `kind` is "outbox" (INSERTs), so nothing else in the table reaches JetStream. The item's one shape is
`outbox_attributes`; the low-level writers take it as attribute values (vaultpay.shared.dynamo.outbox_item),
the PynamoDB ones as a model (vaultpay.shared.outbox_model), so neither pays for the other's imports.
"""

from __future__ import annotations

from typing import Any

from vaultpay.shared import kernel
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


def outbox_attributes(event: DomainEvent, *, now: float | None = None) -> dict[str, Any]:
    """The outbox item of `event` as a plain attribute map (actor left out when there is none)."""
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
        "expires_at": int((now if now is not None else kernel.now()) + OUTBOX_RETENTION_S),
    }

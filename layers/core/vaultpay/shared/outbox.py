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
# Kept long enough for the sweeper to re-publish anything a long outage left behind; TTL removes them
# afterwards. Nothing marks an item the relay published: it is written once and never changed.
OUTBOX_RETENTION_S = 7 * 24 * 3600
# The Lambda event filter the relay's stream mapping uses (template.yaml), kept here beside the item shape.
STREAM_FILTER_PATTERN = {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": [OUTBOX_KIND]}}}}
# The sparse "not yet published" marker: an item is written without it; the rescue of a given-up relay
# batch (vaultpay.events.rescue) sets `pending` = "1" on what it could not publish, and the sweeper removes
# it once published. The sparse GSI below holds exactly those items, sorted by event time, so the sweeper
# finds what a long outage left behind without scanning the table, and an ordinary write costs the index
# nothing.
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
        "expires_at": int((now if now is not None else kernel.now()) + OUTBOX_RETENTION_S),
    }

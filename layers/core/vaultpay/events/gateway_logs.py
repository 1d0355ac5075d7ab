"""Gateway request logs: CloudWatch Logs subscription deliveries → `vaultpay.gateway.request.logged` events.

Every API request writes one structured "request logged" line (vaultpay.shared.http.log_request) into its
function's own log group; a subscription filter on each API function's group delivers those lines here, so
request logging costs no DynamoDB write per request. The event id is derived from the group and CloudWatch's
log-event id, so a redelivered batch publishes nothing twice (JetStream de-duplicates on it).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from vaultpay.shared.events import DomainEvent

EVENT_TYPE = "vaultpay.gateway.request.logged"
SOURCE = "/vaultpay/gateway"
# Only these fields of a log line become event data: a log line may grow, an event contract may not.
FIELDS = ("http_method", "route", "status", "latency_us", "user_id", "source_ip", "correlation_id")


def is_log_delivery(event: Mapping[str, Any]) -> bool:
    return isinstance(event.get("awslogs"), Mapping) and "data" in event["awslogs"]


def decode_delivery(event: Mapping[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))
    return document


def request_events(document: Mapping[str, Any]) -> list[DomainEvent]:
    """One event per "request logged" line; other lines (and CONTROL_MESSAGE probes) yield nothing."""
    if document.get("messageType") != "DATA_MESSAGE":
        return []
    events = []
    for log_event in document.get("logEvents", []):
        try:
            line = json.loads(log_event["message"])
        except (ValueError, KeyError, TypeError):
            continue
        if not isinstance(line, dict) or line.get("message") != "request logged":
            continue
        data = {key: line.get(key) for key in FIELDS}
        if not isinstance(data["latency_us"], int):
            data["latency_us"] = None
        correlation_id = str(data["correlation_id"] or "unknown")
        stable = hashlib.sha256(f"{document.get('logGroup')}:{log_event.get('id')}".encode()).digest()[:16]
        events.append(
            DomainEvent(
                id=str(uuid.UUID(bytes=stable)),
                type=EVENT_TYPE,
                source=SOURCE,
                subject=str(data["route"] or "unknown"),
                data=data,
                correlation_id=correlation_id,
                actor=str(data["user_id"]) if data["user_id"] else None,
            )
        )
    return events

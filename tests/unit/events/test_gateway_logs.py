"""Gateway request logs become `vaultpay.gateway.request.logged` events with stable ids and no extra data."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from vaultpay.events.gateway_logs import EVENT_TYPE, decode_delivery, is_log_delivery, request_events

pytestmark = pytest.mark.unit


def _delivery(*lines: dict[str, object], message_type: str = "DATA_MESSAGE") -> dict[str, object]:
    document = {
        "messageType": message_type,
        "logGroup": "/vaultpay/local/api/RegisterFunction",
        "logStream": "s",
        "logEvents": [
            {"id": f"id-{i}", "timestamp": 1, "message": json.dumps(line)} for i, line in enumerate(lines)
        ]
        + [{"id": "plain", "timestamp": 1, "message": "START RequestId: x Version: $LATEST"}],
    }
    return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(document).encode())).decode()}}


REQUEST = {
    "message": "request logged",
    "http_method": "GET",
    "route": "/v1/me",
    "status": 200,
    "latency_us": 1234,
    "user_id": "usr_1",
    "source_ip": "203.0.113.9",
    "correlation_id": "corr-1",
    "cold_start": True,
    "function_request_id": "abc",
}


def test_each_request_line_becomes_one_event_with_only_the_contract_fields() -> None:
    delivery = _delivery(REQUEST, {"message": "something else"})
    assert is_log_delivery(delivery)
    events = request_events(decode_delivery(delivery))
    assert len(events) == 1
    event = events[0]
    assert event.type == EVENT_TYPE
    assert event.correlation_id == "corr-1"
    assert event.actor == "usr_1"
    assert event.subject == "/v1/me"
    assert set(event.data) == {
        "http_method", "route", "status", "latency_us", "user_id", "source_ip", "correlation_id",
    }  # fmt: skip


def test_a_redelivered_batch_yields_the_same_event_ids() -> None:
    delivery = _delivery(REQUEST, REQUEST)
    first = [e.id for e in request_events(decode_delivery(delivery))]
    again = [e.id for e in request_events(decode_delivery(delivery))]
    assert first == again
    assert len(set(first)) == 2


def test_control_messages_yield_nothing() -> None:
    assert request_events(decode_delivery(_delivery(REQUEST, message_type="CONTROL_MESSAGE"))) == []

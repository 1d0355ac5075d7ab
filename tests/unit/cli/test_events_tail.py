"""`vaultpay ops events tail`: one line, or with --json one JSON object, per event; never the event's data."""

from __future__ import annotations

import json

import pytest

from vaultpay_cli.ops_events import format_event_json, format_event_line

pytestmark = pytest.mark.unit

EVENT = {
    "id": "evt_1",
    "time": "2026-12-07T10:00:00Z",
    "type": "vaultpay.auth.user.registered",
    "subject": "usr_1",
    "correlationid": "req-1",
    "data": {"email": "asha@example.com"},
}


def test_json_lines_carry_the_envelope_and_never_the_data() -> None:
    line = format_event_json(json.dumps(EVENT).encode(), "vaultpay.auth.user.registered")

    assert json.loads(line) == {
        "stream_subject": "vaultpay.auth.user.registered",
        **{key: EVENT[key] for key in ("id", "time", "type", "subject", "correlationid")},
    }
    assert "asha" not in line and "asha" not in format_event_line(json.dumps(EVENT).encode(), "s")


def test_a_message_that_is_not_a_cloudevent_says_so_in_both_forms() -> None:
    assert json.loads(format_event_json(b"not json", "vaultpay.x")) == {
        "stream_subject": "vaultpay.x",
        "cloudevent": False,
    }
    assert format_event_line(b"[1, 2]", "vaultpay.x").endswith("(not a CloudEvent)")

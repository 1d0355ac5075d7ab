"""Domain events: CloudEvents envelope, stable ids, and no secret or PII ever in event data."""

from __future__ import annotations

import json

import pytest

from vaultpay.shared.events import DomainEvent, new_event_id
from vaultpay.shared.outbox import OUTBOX_KIND, STREAM_FILTER_PATTERN, outbox_attributes
from vaultpay.shared.outbox_model import outbox_item

pytestmark = pytest.mark.unit


def _event(**data: object) -> DomainEvent:
    return DomainEvent(
        type="vaultpay.auth.user.created",
        source="/vaultpay/auth",
        subject="u-1",
        data=data or {"user_id": "u-1"},
        correlation_id="c-1",
        actor="u-1",
    )


def test_the_envelope_is_a_cloudevent_with_the_correlation_id() -> None:
    envelope = _event().cloudevent()
    assert envelope["specversion"] == "1.0"
    assert envelope["type"] == "vaultpay.auth.user.created"
    assert envelope["correlationid"] == "c-1"
    assert envelope["datacontenttype"] == "application/json"
    assert envelope["time"].endswith("Z")
    assert envelope["data"] == {"user_id": "u-1"}


def test_event_ids_are_unique_and_time_ordered() -> None:
    ids = [new_event_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert ids[0][:8] <= ids[-1][:8]  # the leading 48 bits are milliseconds


@pytest.mark.parametrize("key", ["password", "refresh_token", "phone", "account_number", "totp_secret"])
def test_an_event_carrying_a_secret_or_pii_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match=key):
        _event(**{"nested": {key: "x"}})


def test_floats_are_refused_in_event_data() -> None:
    with pytest.raises(ValueError, match="float"):
        _event(amount=12.5)


def test_an_unprefixed_type_is_refused() -> None:
    with pytest.raises(ValueError, match=r"vaultpay\."):
        DomainEvent(type="user.created", source="/x", subject="s", data={}, correlation_id="c")


def test_the_outbox_item_matches_the_relays_stream_filter() -> None:
    event = _event()
    attributes = outbox_attributes(event, now=1000)
    assert attributes["kind"] == OUTBOX_KIND == STREAM_FILTER_PATTERN["dynamodb"]["NewImage"]["kind"]["S"][0]
    assert attributes["expires_at"] > 1000
    assert json.loads(attributes["data"]) == {"user_id": "u-1"}
    item = outbox_item("AuthTable", event, now=1000)
    assert item.to_event() == event
    assert item.pk == f"OUTBOX#{event.id}"

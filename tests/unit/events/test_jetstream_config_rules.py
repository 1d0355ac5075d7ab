"""JetStream as code: the checked-in file is valid; each rule refuses a bad file before any server call."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from vaultpay.events.jetstream_config import (
    DEAD_LETTER_STREAM,
    EVENTS_STREAM,
    JetStreamConfigError,
    load_jetstream_config,
    parse_jetstream_config,
)

pytestmark = pytest.mark.unit
CONFIG = Path(__file__).resolve().parents[3] / "infra" / "nats" / "jetstream.json"


@pytest.fixture
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(CONFIG.read_text())
    return copy.deepcopy(loaded)


def _stream(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in document["streams"] if s["name"] == name)


def _consumer(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in document["consumers"] if c["durable_name"] == name)


def test_the_checked_in_configuration_declares_the_streams_and_consumers_of_the_design() -> None:
    spec = load_jetstream_config(CONFIG)
    streams = {s.name: s.fields for s in spec.streams}
    assert set(streams) == {EVENTS_STREAM, DEAD_LETTER_STREAM}
    assert streams[EVENTS_STREAM]["subjects"] == ["vaultpay.>"]
    assert streams[EVENTS_STREAM]["duplicate_window"] >= 120
    assert streams[EVENTS_STREAM]["storage"] == "file"
    assert streams[DEAD_LETTER_STREAM]["subjects"] == [
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.VAULTPAY.*",
        "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.VAULTPAY.*",
    ]
    # A dead letter points into VAULTPAY: it is useless once the message has aged out, so it lives no longer.
    assert streams[DEAD_LETTER_STREAM]["max_age"] == streams[EVENTS_STREAM]["max_age"]
    consumers = {(c.stream, c.name): c.fields for c in spec.consumers}
    assert set(consumers) == {
        (EVENTS_STREAM, "audit-workers"),
        (EVENTS_STREAM, "fraud-workers"),
        (EVENTS_STREAM, "webhook-workers"),
    }
    for fields in consumers.values():
        assert fields["ack_policy"] == "explicit"
        assert len(fields["backoff"]) < fields["max_deliver"]


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        (lambda d: _stream(d, EVENTS_STREAM).update(duplicate_window=60), "duplicate_window"),
        (lambda d: _stream(d, EVENTS_STREAM).pop("duplicate_window"), "duplicate_window"),
        (lambda d: _stream(d, EVENTS_STREAM).update(storage="memory"), "storage"),
        (lambda d: _stream(d, EVENTS_STREAM).update(subjects=[]), "subjects"),
        (lambda d: _stream(d, EVENTS_STREAM).update(max_age="30d"), "max_age"),
        (lambda d: _stream(d, EVENTS_STREAM).update(retention_days=3), "unknown fields retention_days"),
        (lambda d: _stream(d, EVENTS_STREAM).update(name="VAULT PAY"), "name"),
        (lambda d: d["streams"].append(copy.deepcopy(d["streams"][0])), "declared twice"),
        (lambda d: _consumer(d, "audit-workers").update(ack_policy="none"), "ack_policy"),
        (lambda d: _consumer(d, "audit-workers").pop("max_deliver"), "max_deliver"),
        (lambda d: _consumer(d, "audit-workers").update(max_deliver=4), "fewer values than `max_deliver`"),
        (lambda d: _consumer(d, "audit-workers").update(ack_wait=10), "first `backoff` value"),
        (lambda d: _consumer(d, "audit-workers").update(backoff=[]), "backoff"),
        (lambda d: _consumer(d, "audit-workers").update(stream="ELSEWHERE"), "declared in this file"),
        (lambda d: _consumer(d, "audit-workers").update(name="other"), "unknown fields name"),
        (lambda d: d.update(extra=1), "unknown top-level keys"),
    ],
    ids=[
        "short-dedup-window",
        "no-dedup-window",
        "memory-storage",
        "no-subjects",
        "duration-as-text",
        "unknown-stream-field",
        "bad-stream-name",
        "stream-twice",
        "no-explicit-ack",
        "no-max-deliver",
        "backoff-too-long",
        "ack-wait-not-first-backoff",
        "empty-backoff",
        "unknown-stream",
        "second-consumer-name",
        "unknown-top-level",
    ],
)
def test_a_bad_configuration_is_refused_with_the_reason(
    document: dict[str, Any], edit: Any, complaint: str
) -> None:
    edit(document)
    with pytest.raises(JetStreamConfigError, match=complaint.replace("`", ".")):
        parse_jetstream_config(document)


def test_every_problem_is_reported_at_once(document: dict[str, Any]) -> None:
    _stream(document, EVENTS_STREAM)["duplicate_window"] = 1
    _consumer(document, "fraud-workers")["ack_policy"] = "all"
    with pytest.raises(JetStreamConfigError) as caught:
        parse_jetstream_config(document)
    assert "duplicate_window" in str(caught.value) and "ack_policy" in str(caught.value)


def test_an_unreadable_file_is_a_configuration_error(tmp_path: Path) -> None:
    broken = tmp_path / "jetstream.json"
    broken.write_text("{")
    with pytest.raises(JetStreamConfigError, match="cannot read"):
        load_jetstream_config(broken)

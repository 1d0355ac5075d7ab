"""The bank test's event ledger (tests/support/event_ledger.py): outbox ids against the stream's Nats-Msg-Ids
and the audit chain's event ids, by hand, so that a lost or duplicated event can never pass as a clean run."""

from __future__ import annotations

import pytest
from support.event_ledger import Comparison, EventPath, compare

from vaultpay.events.jetstream import ConsumerLag

pytestmark = pytest.mark.unit


def _path(comparison: Comparison, **lags: ConsumerLag) -> EventPath:
    return EventPath(
        comparison=comparison,
        consumers=lags or {"audit-workers": ConsumerLag(0, 0, 0)},
        dead_letters=[],
        unmarked=0,
        without_msg_id=0,
        waited_s=1.0,
    )


def test_every_outbox_event_once_in_the_stream_and_the_audit_log_is_a_clean_run() -> None:
    # Other tests' events and gateway request logs are in the stream and the chain too, without an outbox
    result = compare(["e1", "e2"], ["e1", "gw1", "e2", "other"], ["gw1", "e2", "e1", "other"])

    assert (result.outbox, result.stream_messages, result.audit_records) == (2, 4, 4)
    assert (result.in_stream, result.in_audit) == (2, 2)
    assert (result.lost, result.duplicated, result.dead_lettered) == ((), (), ())
    assert _path(result).problems() == []


def test_an_event_missing_from_the_stream_or_from_the_audit_log_is_lost() -> None:
    result = compare(["e1", "e2", "e3"], ["e1", "e2"], ["e1"])

    assert result.missing_from_stream == ("e3",)
    assert result.missing_from_audit == ("e2",)  # e3 is not counted twice: it never reached the stream
    assert result.lost == ("e2", "e3")
    assert (result.in_stream, result.in_audit) == (2, 1)
    [problem] = _path(result).problems()
    assert problem.startswith("2 outbox events lost (1 not in VAULTPAY, 1 not in the audit log)")


def test_an_id_twice_in_the_stream_or_in_the_audit_log_is_duplicated_whoever_wrote_it() -> None:
    result = compare(["e1", "e2"], ["e1", "e1", "e2", "gw1", "gw1"], ["e1", "e2", "e2"])

    assert result.twice_in_stream == {"e1": 2, "gw1": 2}
    assert result.twice_in_audit == {"e2": 2}
    assert result.duplicated == ("e1", "e2", "gw1")
    assert result.lost == ()
    [problem] = _path(result).problems()
    assert problem.startswith("3 event ids stored more than once")


def test_an_event_the_audit_consumer_gave_up_on_is_accounted_for_not_lost() -> None:
    result = compare(["e1", "e2"], ["e1", "e2"], ["e1"], dead_lettered=["e2"])

    assert result.lost == ()
    assert result.dead_lettered == ("e2",)
    # A dead letter only accounts for an event the stream holds
    assert compare(["e3"], [], [], dead_lettered=["e3"]).lost == ("e3",)


def test_a_consumer_left_with_a_backlog_did_not_resume() -> None:
    clean = compare(["e1"], ["e1"], ["e1"])
    path = _path(clean, **{"audit-workers": ConsumerLag(0, 0, 3), "fraud-workers": ConsumerLag(4, 1, 0)})

    assert path.problems() == ["consumer fraud-workers did not resume: 4 pending, 1 unacknowledged after 1 s"]
    assert path.figures()["consumers at the end"]["audit-workers"] == {
        "pending": 0,
        "ack_pending": 0,
        "redelivered": 3,
    }

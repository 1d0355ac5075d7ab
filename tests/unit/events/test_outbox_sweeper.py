"""The outbox sweeper, with fakes: nothing pending is lost, nothing published comes back; and the relay
writes nothing back to the outbox (an ordinary item is never pending)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer
from support.jetstream_fake import FakeJetStream

from vaultpay.events.relay import (
    Relay,
    table_name,
)
from vaultpay.events.sweeper import Sweeper
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.kernel import rfc3339
from vaultpay.shared.outbox import PENDING, outbox_attributes
from vaultpay.shared.outbox_model import outbox_item

pytestmark = pytest.mark.unit
NOW = 1_795_860_930.0
ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/vaultpay-auth/stream/2026-11-28T00:00:00.000"


def _event(n: int, at: float) -> DomainEvent:
    return DomainEvent(
        type="vaultpay.auth.user.created",
        source="/vaultpay/auth",
        subject=f"usr_{n}",
        data={"user_id": f"usr_{n}"},
        correlation_id=f"corr-{n}",
        time=rfc3339(at),
    )


def _image(event: DomainEvent) -> dict[str, Any]:
    serializer = TypeSerializer()
    return {k: serializer.serialize(v) for k, v in outbox_attributes(event, now=NOW).items()}


class FakeTable:
    """One table's outbox items, with the sparse OutboxPending index's query semantics."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.marked_calls: list[tuple[str, list[str]]] = []

    def put(self, event: DomainEvent, *, pending: bool = True) -> None:
        """An outbox item; pending as the rescue of a given-up relay batch leaves it."""
        self.items[event.id] = _image(event)
        if pending:
            self.items[event.id]["pending"] = {"S": PENDING}

    async def pending(self, table: str, *, before: str, limit: int) -> Sequence[Mapping[str, Any]]:
        hits = [
            item
            for item in self.items.values()
            if item.get("pending") == {"S": PENDING} and item["time"]["S"] < before
        ]
        return sorted(hits, key=lambda item: item["time"]["S"])[:limit]

    async def mark_published(self, table: str, items: Sequence[Mapping[str, Any]]) -> int:
        event_ids = [item["event_id"]["S"] for item in items]
        self.marked_calls.append((table, event_ids))
        for event_id in event_ids:
            item = self.items.get(event_id)
            if item is not None:
                item.pop("pending", None)
                item["published"] = {"BOOL": True}
        return 0


class Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def info(self, message: str, *, extra: Any = None) -> None:
        pass

    def warning(self, message: str, *, extra: Any = None) -> None:
        self.warnings.append(message)

    def error(self, message: str, *, extra: Any = None) -> None:
        pass


@pytest.fixture
def table() -> FakeTable:
    return FakeTable()


def test_an_outbox_item_is_written_without_the_pending_marker_in_both_shapes() -> None:
    # Only the rescue marks an item pending: an ordinary write costs the sparse index nothing
    event = _event(1, NOW)
    assert "pending" not in outbox_attributes(event) and "published" not in outbox_attributes(event)
    item = outbox_item("AuthTable", event)
    assert item.pending is None and item.published is None
    assert "pending" not in item.serialize()


def test_old_pending_items_are_republished_and_marked_and_fresh_ones_are_left(table: FakeTable) -> None:
    # Given an item left behind ten minutes ago and one marked pending a minute ago
    old, fresh = _event(1, NOW - 600), _event(2, NOW - 60)
    table.put(old)
    table.put(fresh)
    publisher = FakeJetStream()
    sweeper = Sweeper(table, publisher, table, lambda: NOW, log=Log())
    # When the sweeper runs with its five-minute cutoff
    outcome = asyncio.run(sweeper.sweep(["vaultpay-auth"]))
    # Then only the old one was published, under its own id, and it is marked
    assert publisher.stored == [old.id]
    assert (outcome.found, outcome.published, outcome.marked, outcome.failed) == (1, 1, 1, 0)
    assert table.marked_calls == [("vaultpay-auth", [old.id])]
    assert "pending" not in table.items[old.id] and table.items[old.id]["published"] == {"BOOL": True}
    assert table.items[fresh.id]["pending"] == {"S": PENDING}


def test_published_items_never_come_back(table: FakeTable) -> None:
    event = _event(1, NOW - 600)
    table.put(event)
    publisher = FakeJetStream()
    sweeper = Sweeper(table, publisher, table, lambda: NOW)
    asyncio.run(sweeper.sweep(["t"]))
    # When it runs again, later
    again = asyncio.run(Sweeper(table, publisher, table, lambda: NOW + 3600).sweep(["t"]))
    # Then nothing was found and nothing published twice
    assert (again.found, again.published, again.duplicates) == (0, 0, 0)
    assert publisher.stored == [event.id]


def test_what_could_not_be_published_stays_pending_for_the_next_sweep(table: FakeTable) -> None:
    event = _event(1, NOW - 600)
    table.put(event)
    publisher = FakeJetStream()
    publisher.down = True
    outcome = asyncio.run(Sweeper(table, publisher, table, lambda: NOW).sweep(["t"]))
    assert (outcome.failed, outcome.marked) == (1, 0)
    assert table.marked_calls == []
    assert table.items[event.id]["pending"] == {"S": PENDING}
    publisher.down = False
    outcome = asyncio.run(Sweeper(table, publisher, table, lambda: NOW).sweep(["t"]))
    assert (outcome.published, outcome.marked) == (1, 1)


def test_an_event_already_published_is_deduplicated_and_marked(table: FakeTable) -> None:
    # A sweep published it, but its mark failed: the next sweep's publish is a JetStream duplicate
    event = _event(1, NOW - 600)
    table.put(event)
    publisher = FakeJetStream()
    publisher.stored.append(event.id)
    outcome = asyncio.run(Sweeper(table, publisher, table, lambda: NOW).sweep(["t"]))
    assert (outcome.published, outcome.duplicates, outcome.marked) == (0, 1, 1)
    assert publisher.stored == [event.id]


# ---- the relay writes nothing back --------------------------------------------------------------------


def _record(event: DomainEvent, seq: int) -> dict[str, Any]:
    image = _image(event)
    return {
        "eventName": "INSERT",
        "eventSourceARN": ARN,
        "dynamodb": {
            "Keys": {"pk": image["pk"], "sk": image["sk"]},
            "NewImage": image,
            "SequenceNumber": str(seq),
        },
    }


def test_the_table_name_comes_from_the_stream_arn() -> None:
    assert table_name(ARN) == "vaultpay-auth"
    assert table_name("arn:aws:sqs:us-east-1:1:queue") is None
    assert table_name(None) is None


def test_the_relay_publishes_a_batch_and_reports_only_what_failed() -> None:
    first, second = _event(1, NOW), _event(2, NOW)
    publisher = FakeJetStream()
    publisher.stored.append(second.id)  # already out: a re-delivered batch
    outcome = asyncio.run(Relay(publisher, log=Log()).relay([_record(first, 1), _record(second, 2)]))
    assert (outcome.published, outcome.duplicates, outcome.failures) == (1, 1, {})
    assert publisher.stored == [second.id, first.id]
    publisher.down = True
    outcome = asyncio.run(Relay(publisher, log=Log()).relay([_record(_event(3, NOW), 3)]))
    assert outcome.failed == 1 and list(outcome.failures) == ["3"]


def test_a_published_but_unmarked_item_is_swept_again_inside_the_duplicate_window() -> None:
    """A sweep that published an item but failed to mark it re-publishes it on the next run, at most
    (older-than + its schedule's period) later; JetStream drops the copy only inside its de-duplication
    window, so that sum must stay below it, or the stream would hold the event twice."""
    import json
    import re
    from pathlib import Path

    from localcloud.template import load_template
    from vaultpay.events.sweeper import DEFAULT_OLDER_THAN_S

    root = Path(__file__).resolve().parents[3]
    template = load_template(root / "template.yaml")
    [schedule] = [
        event["Properties"]["Schedule"]
        for event in template["Resources"]["OutboxSweeperFunction"]["Properties"]["Events"].values()
        if event["Type"] == "Schedule"
    ]
    count, unit = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours)\)", schedule).groups()  # type: ignore[union-attr]
    period_s = int(count) * (60 if unit.startswith("minute") else 3600)
    streams = json.loads((root / "infra" / "nats" / "jetstream.json").read_text())["streams"]
    [window] = [s["duplicate_window"] for s in streams if s["name"] == "VAULTPAY"]
    assert DEFAULT_OLDER_THAN_S + period_s < window

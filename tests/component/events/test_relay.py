"""The relay handler on a real nats-server: happy path, duplicates, NATS outage, poison, dead letters."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from types import ModuleType
from typing import Any

import pytest
from typer.testing import CliRunner

from vaultpay.events.jetstream_config import DEAD_LETTER_STREAM, EVENTS_STREAM, apply_jetstream_config
from vaultpay.events.relay import CONTENT_TYPE, MSG_ID_HEADER
from vaultpay_cli.ops_events import ops_events_app, tail_events

pytestmark = pytest.mark.component

# A consumer of the test's own subjects that gives up fast: the real ones wait minutes between deliveries.
PROBE = "probe-workers"
PROBE_SUBJECT = "vaultpay.test.poison.happened"
PROBE_CONSUMER = {
    "stream": EVENTS_STREAM,
    "durable_name": PROBE,
    "filter_subject": "vaultpay.test.poison.>",
    "ack_policy": "explicit",
    "ack_wait": 0.3,
    "backoff": [0.3, 0.3],
    "max_deliver": 3,
}


@pytest.fixture(scope="module", autouse=True)
def applied(kit: Any, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The checked-in configuration plus the probe consumer, applied as the local cloud would."""
    document = json.loads(kit.config.read_text())
    document["consumers"].append(PROBE_CONSUMER)
    path = tmp_path_factory.mktemp("config") / "jetstream.json"
    path.write_text(json.dumps(document))
    return asyncio.run(apply_jetstream_config(kit.server.url, path))


def _invoke(relay_app: ModuleType, kit: Any, records: list[dict[str, Any]]) -> list[str]:
    """Calls the handler as the stream mapping does; returns the sequence numbers it reported failed."""
    response = relay_app.handler({"Records": copy.deepcopy(records)}, kit.context())
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def _sequence(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


def _last_message(kit: Any, subject: str) -> Any:
    return kit.js(lambda js: js.get_last_msg(EVENTS_STREAM, subject))


# ---- happy path and duplicates ---------------------------------------------------------------------------


def test_each_outbox_insert_is_published_with_its_subject_headers_and_envelope(
    relay_app: ModuleType, kit: Any
) -> None:
    # Given a stream batch of three outbox inserts of different types and one unrelated change
    events = [kit.event(f"vaultpay.test.happy.e{n}", n) for n in range(3)]
    records = [kit.record(event, n + 1) for n, event in enumerate(events)]
    unrelated = copy.deepcopy(records[0])
    unrelated["eventName"] = "MODIFY"
    unrelated["dynamodb"]["SequenceNumber"] = "999"
    # When the relay handles it
    failed = _invoke(relay_app, kit, [*records, unrelated])
    # Then nothing failed, and each event is in VAULTPAY under its type, with its id as Nats-Msg-Id
    assert failed == []
    for event in events:
        assert kit.count(event.type) == 1
        message = _last_message(kit, event.type)
        assert message.headers[MSG_ID_HEADER] == event.id
        assert message.headers["Content-Type"] == CONTENT_TYPE
        assert json.loads(message.data) == event.cloudevent()


def test_a_batch_delivered_twice_is_stored_once(relay_app: ModuleType, kit: Any) -> None:
    events = [kit.event("vaultpay.test.dup.happened", n) for n in range(4)]
    records = [kit.record(event, 100 + n) for n, event in enumerate(events)]
    assert _invoke(relay_app, kit, records) == []
    # The stream mapping delivers the same records again (a retry after a timeout, a bisected batch...)
    assert _invoke(relay_app, kit, records) == []
    assert kit.count("vaultpay.test.dup.happened") == 4


def test_the_warm_function_keeps_one_connection(relay_app: ModuleType, kit: Any) -> None:
    from vaultpay.bootstrap.events import nats_connection

    before = nats_connection().connects
    for n in range(3):
        assert (
            _invoke(relay_app, kit, [kit.record(kit.event("vaultpay.test.warm.happened", n), 200 + n)]) == []
        )
    assert nats_connection().connects == max(before, 1)


# ---- NATS down, then up ----------------------------------------------------------------------------------


def test_while_nats_is_down_every_record_fails_and_once_it_is_back_each_is_published_once(
    relay_app: ModuleType, kit: Any
) -> None:
    subject = "vaultpay.test.outage.happened"
    # Given a warm relay (its connection is open)
    assert _invoke(relay_app, kit, [kit.record(kit.event("vaultpay.test.outage.before", 0), 300)]) == []
    records = [kit.record(kit.event(subject, n), 301 + n) for n in range(5)]
    kit.server.stop()
    try:
        # When NATS goes away: the kept connection is found dead, then new connections are refused
        began = time.monotonic()
        first = _invoke(relay_app, kit, records)
        second = _invoke(relay_app, kit, records)
        elapsed = time.monotonic() - began
    finally:
        kit.server.start()  # same port, same store
    # Then every record was reported failed, so the stream mapping keeps them and retries, and quickly
    assert first == second == [_sequence(r) for r in records]
    assert elapsed < 5
    # When the mapping delivers them again now that NATS is back, twice even
    assert _invoke(relay_app, kit, records) == []
    assert _invoke(relay_app, kit, records) == []
    # Then each event is in the stream exactly once: nothing lost, nothing doubled
    assert kit.count(subject) == 5


# ---- poison ----------------------------------------------------------------------------------------------


def test_a_poison_record_is_reported_while_the_good_records_around_it_are_published(
    relay_app: ModuleType, kit: Any
) -> None:
    subject = "vaultpay.test.mixed.happened"
    records = [kit.record(kit.event(subject, n), 400 + n) for n in range(3)]
    poison = records[1]
    poison["dynamodb"]["NewImage"]["data"] = {"S": json.dumps({"password": "hunter2hunter2"})}
    failed = _invoke(relay_app, kit, records)
    assert failed == [_sequence(poison)]
    assert kit.count(subject) == 2
    # A retry of the rest of the batch (Lambda resumes at the failed record) publishes nothing twice.
    assert _invoke(relay_app, kit, records[1:]) == [_sequence(poison)]
    assert kit.count(subject) == 2


# ---- max deliver → dead letter → replay ------------------------------------------------------------------


def _dlq(*args: str, url: str) -> Any:
    return CliRunner().invoke(ops_events_app, ["dlq", *args, "--nats-url", url], env={"COLUMNS": "160"})


def _wait_for_dead_letters(kit: Any, count: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        info = kit.js(lambda js: js.stream_info(DEAD_LETTER_STREAM))
        if info.state.messages >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{DEAD_LETTER_STREAM} never held {count} dead letter(s)")


def test_a_message_never_acked_reaches_the_dead_letter_stream_and_replay_delivers_it_again(
    relay_app: ModuleType, kit: Any
) -> None:
    # Given an event in the stream
    event = kit.event(PROBE_SUBJECT, 7)
    assert _invoke(relay_app, kit, [kit.record(event, 500)]) == []

    # When a worker pulls it and never acks, max_deliver times
    async def pull_without_ack(js: Any) -> list[int]:
        sub = await js.pull_subscribe_bind(PROBE, EVENTS_STREAM)
        deliveries: list[int] = []
        try:
            for _ in range(6):
                try:
                    [msg] = await sub.fetch(1, timeout=1)
                except TimeoutError:
                    break
                deliveries.append(msg.metadata.num_delivered)
        finally:
            await sub.unsubscribe()
        return deliveries

    assert kit.js(pull_without_ack) == [1, 2, 3]
    _wait_for_dead_letters(kit, 1)

    # Then `dlq list` shows it: which consumer gave up, on which message, after how many deliveries
    listed = _dlq("list", "--json", url=kit.server.url)
    assert listed.exit_code == 0, listed.output
    [letter] = json.loads(listed.output)
    assert letter["consumer"] == PROBE and letter["reason"] == "max_deliveries"
    assert letter["deliveries"] == 3
    assert letter["event_type"] == PROBE_SUBJECT and letter["event_id"] == event.id
    table = _dlq("list", url=kit.server.url)
    assert table.exit_code == 0 and PROBE in table.output and str(letter["dlq_seq"]) in table.output

    # When the operator replays it
    replayed = _dlq("replay", str(letter["dlq_seq"]), url=kit.server.url)
    assert replayed.exit_code == 0, replayed.output
    assert event.id in replayed.output

    # Then the consumer receives it again: a copy with a new Nats-Msg-Id and the same CloudEvent id
    async def pull_and_ack(js: Any) -> Any:
        sub = await js.pull_subscribe_bind(PROBE, EVENTS_STREAM)
        try:
            [msg] = await sub.fetch(1, timeout=2)
            await msg.ack()
            return msg
        finally:
            await sub.unsubscribe()

    copy_msg = kit.js(pull_and_ack)
    assert copy_msg.subject == PROBE_SUBJECT
    assert copy_msg.headers[MSG_ID_HEADER] == f"{event.id}:replay:{letter['dlq_seq']}"
    assert json.loads(copy_msg.data) == event.cloudevent()
    # And the dead letter is gone; replaying it again says so
    assert json.loads(_dlq("list", "--json", url=kit.server.url).output) == []
    again = _dlq("replay", str(letter["dlq_seq"]), url=kit.server.url)
    assert again.exit_code == 1 and "no dead letter" in again.output
    # The original is still in the stream beside its copy (kept under the stream's limits)
    assert kit.count(PROBE_SUBJECT) == 2


# ---- events tail -----------------------------------------------------------------------------------------


def test_tail_prints_one_line_per_event_with_time_type_subject_and_correlation_id(
    relay_app: ModuleType, kit: Any
) -> None:
    events = [kit.event("vaultpay.test.tail.happened", n) for n in range(2)]
    assert _invoke(relay_app, kit, [kit.record(e, 600 + n) for n, e in enumerate(events)]) == []
    lines: list[str] = []
    printed = asyncio.run(
        tail_events(
            kit.server.url, subject="vaultpay.test.tail.>", from_start=True, limit=2, emit=lines.append
        )
    )
    assert printed == 2
    for line, event in zip(lines, events, strict=True):
        assert line.split() == [event.time, event.type, event.subject, event.correlation_id]
    # No event data on the operator's terminal
    assert "amount" not in "".join(lines)


def test_the_tail_command_stops_after_its_limit(relay_app: ModuleType, kit: Any) -> None:
    result = CliRunner().invoke(
        ops_events_app,
        ["events", "tail", "--type", "vaultpay.test.tail.>", "--from-start", "--limit", "2"],
        env={"NATS_URL": kit.server.url},
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("vaultpay.test.tail.happened") == 2

"""The rescue of given-up relay batches, with fakes: every outbox event of a batch ends published or
pending, a message leaves the queue only then, and what cannot be rescued says so."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer
from support.jetstream_fake import FakeJetStream

from vaultpay.events.rescue import (
    FailedBatch,
    QueueMessage,
    RecordsGone,
    Rescuer,
    failed_batch,
)
from vaultpay.shared.errors import TransientError
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.kernel import rfc3339
from vaultpay.shared.outbox import outbox_attributes

pytestmark = pytest.mark.unit
NOW = 1_795_860_930.0
TABLE = "vaultpay-auth"
STREAM = f"arn:aws:dynamodb:ap-south-1:123456789012:table/{TABLE}/stream/2026-11-28T00:00:00.000"


def _event(n: int) -> DomainEvent:
    return DomainEvent(
        type="vaultpay.auth.user.created",
        source="/vaultpay/auth",
        subject=f"usr_{n}",
        data={"user_id": f"usr_{n}"},
        correlation_id=f"corr-{n}",
        time=rfc3339(NOW - 7200),
    )


def _record(event: DomainEvent, seq: int) -> dict[str, Any]:
    serializer = TypeSerializer()
    image = {k: serializer.serialize(v) for k, v in outbox_attributes(event, now=NOW).items()}
    return {
        "eventName": "INSERT",
        "dynamodb": {
            "Keys": {"pk": image["pk"], "sk": image["sk"]},
            "NewImage": image,
            "SequenceNumber": str(seq),
        },
    }


def _body(start: int, end: int, stream: str = STREAM) -> str:
    """Lambda's on-failure record for a DynamoDB stream batch (the shape the local cloud also sends)."""
    return json.dumps(
        {
            "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 21},
            "DDBStreamBatchInfo": {
                "shardId": "shardId-0001",
                "startSequenceNumber": str(start),
                "endSequenceNumber": str(end),
                "batchSize": end - start + 1,
                "streamArn": stream,
            },
        }
    )


class Queue:
    def __init__(self, *bodies: str) -> None:
        self.messages = [QueueMessage(f"r{i}", f"m{i}", body) for i, body in enumerate(bodies)]
        self.deleted: list[str] = []

    async def receive(self, max_messages: int) -> Sequence[QueueMessage]:
        # Like SQS's visibility timeout: a message handed out is not handed out again in the same run
        taken, self.messages = self.messages[:max_messages], self.messages[max_messages:]
        return taken

    async def delete(self, message: QueueMessage) -> None:
        self.deleted.append(message.message_id)


class Stream:
    def __init__(self, records: Sequence[dict[str, Any]], *, gone: bool = False, flaky: bool = False) -> None:
        self.held = list(records)
        self.gone = gone
        self.flaky = flaky

    async def records(self, batch: FailedBatch) -> Sequence[Mapping[str, Any]]:
        if self.gone:
            raise RecordsGone("trimmed")
        if self.flaky:
            raise TransientError("throttled")
        return [
            r for r in self.held if int(batch.start) <= int(r["dynamodb"]["SequenceNumber"]) <= int(batch.end)
        ]


class Marker:
    def __init__(self, *, failing: bool = False) -> None:
        self.pending: list[str] = []
        self.failing = failing

    async def mark_pending(self, table: str, items: Sequence[Mapping[str, Any]]) -> int:
        if self.failing:
            return len(items)
        assert table == TABLE
        self.pending.extend(item["event_id"]["S"] for item in items)
        return 0


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, message: str, *, extra: Any = None) -> None:
        self.lines.append(("info", message, extra or {}))

    def warning(self, message: str, *, extra: Any = None) -> None:
        self.lines.append(("warning", message, extra or {}))

    def error(self, message: str, *, extra: Any = None) -> None:
        self.lines.append(("error", message, extra or {}))


def _rescuer(queue: Queue, stream: Stream, publisher: FakeJetStream, marker: Marker, log: Log) -> Rescuer:
    return Rescuer(queue, stream, publisher, marker, tables=[TABLE, "vaultpay-accounts"], log=log)


EVENTS = [_event(n) for n in range(5)]
RECORDS = [_record(event, 100 + n) for n, event in enumerate(EVENTS)]


def test_a_given_up_batch_is_published_from_the_stream_and_its_message_deleted() -> None:
    # Given the mapping gave up on records 101-103 while NATS was down; 101 had gone out before
    queue, publisher, marker = Queue(_body(101, 103)), FakeJetStream(stored=[EVENTS[1].id]), Marker()
    outcome = asyncio.run(_rescuer(queue, Stream(RECORDS), publisher, marker, Log()).rescue())
    # Then exactly the batch's events are in the stream, once each, and the message is gone
    assert publisher.stored == [EVENTS[1].id, EVENTS[2].id, EVENTS[3].id]
    assert (outcome.events, outcome.published, outcome.duplicates, outcome.rescued) == (3, 2, 1, 1)
    assert marker.pending == [] and queue.deleted == ["m0"]


def test_what_cannot_be_published_now_is_left_pending_for_the_sweeper() -> None:
    queue, marker = Queue(_body(100, 104)), Marker()
    outcome = asyncio.run(_rescuer(queue, Stream(RECORDS), FakeJetStream(down=True), marker, Log()).rescue())
    assert marker.pending == [event.id for event in EVENTS]
    assert (outcome.marked_pending, outcome.rescued) == (5, 1) and queue.deleted == ["m0"]


def test_a_batch_neither_published_nor_marked_stays_in_the_queue() -> None:
    queue = Queue(_body(100, 104))
    log = Log()
    outcome = asyncio.run(
        _rescuer(queue, Stream(RECORDS), FakeJetStream(down=True), Marker(failing=True), log).rescue()
    )
    assert queue.deleted == [] and (outcome.retried, outcome.rescued) == (1, 0)
    assert any(level == "warning" and "next run" in message for level, message, _ in log.lines)


def test_a_stream_that_cannot_be_read_now_leaves_the_message_for_the_next_run() -> None:
    queue = Queue(_body(100, 104))
    outcome = asyncio.run(
        _rescuer(queue, Stream(RECORDS, flaky=True), FakeJetStream(), Marker(), Log()).rescue()
    )
    assert queue.deleted == [] and outcome.retried == 1


def test_a_batch_the_stream_no_longer_holds_is_an_error_and_is_not_retried_forever() -> None:
    queue, log = Queue(_body(100, 104)), Log()
    outcome = asyncio.run(
        _rescuer(queue, Stream(RECORDS, gone=True), FakeJetStream(), Marker(), log).rescue()
    )
    assert outcome.gone == 1 and queue.deleted == ["m0"]
    [(_, message, extra)] = [line for line in log.lines if line[0] == "error"]
    assert "no longer in the stream" in message
    # The log names where the batch was, so the loss can be traced; never any event data
    assert extra["start_sequence_number"] == "100" and extra["table"] == TABLE
    assert "usr_" not in json.dumps(log.lines)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        json.dumps({"DDBStreamBatchInfo": "nope"}),
        json.dumps({"KinesisBatchInfo": {}}),
        _body(104, 100),  # an empty range
        _body(100, 104, stream="arn:aws:dynamodb:ap-south-1:1:table/someone-elses/stream/x"),
    ],
)
def test_a_message_that_names_no_batch_of_an_owned_outbox_is_left_for_a_person(body: str) -> None:
    queue, log = Queue(body), Log()
    outcome = asyncio.run(_rescuer(queue, Stream(RECORDS), FakeJetStream(), Marker(), log).rescue())
    assert outcome.unreadable == 1 and queue.deleted == []
    assert [level for level, _, _ in log.lines if level == "error"] == ["error"]


def test_a_poison_record_in_the_batch_is_not_published_and_the_rest_are() -> None:
    poison = _record(_event(9), 105)
    poison["dynamodb"]["NewImage"]["data"] = {"S": json.dumps({"password": "hunter2hunter2"})}
    queue, publisher, log = Queue(_body(104, 105)), FakeJetStream(), Log()
    outcome = asyncio.run(_rescuer(queue, Stream([*RECORDS, poison]), publisher, Marker(), log).rescue())
    assert publisher.stored == [EVENTS[4].id] and outcome.poison == 1 and queue.deleted == ["m0"]
    assert "hunter2" not in json.dumps(log.lines)


def test_a_run_reads_at_most_its_share_of_the_queue() -> None:
    queue = Queue(*[_body(100 + n, 100 + n) for n in range(5)])
    outcome = asyncio.run(
        _rescuer(queue, Stream(RECORDS), FakeJetStream(), Marker(), Log()).rescue(max_batches=3)
    )
    assert outcome.batches == 3 and len(queue.messages) == 2


def test_the_on_failure_record_is_parsed_strictly() -> None:
    assert failed_batch(_body(7, 9)) == FailedBatch(STREAM, "shardId-0001", "7", "9")
    assert failed_batch(json.dumps({"DDBStreamBatchInfo": {"streamArn": STREAM}})) is None
    assert failed_batch(_body(7, 9).replace('"7"', '"-7"')) is None

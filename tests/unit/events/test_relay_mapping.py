"""The relay's core with a fake publisher: stream record → CloudEvent, what is ignored, what is poison."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer

from localcloud.filtering import record_passes
from vaultpay.events import relay as relay_module
from vaultpay.events.relay import (
    CONTENT_TYPE,
    MSG_ID_HEADER,
    BatchOutcome,
    OutboundMessage,
    PoisonRecord,
    Published,
    PublishResult,
    Relay,
    outbox_event,
    sequence_number,
)
from vaultpay.shared.errors import TransientError
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.outbox import OUTBOX_KIND, STREAM_FILTER_PATTERN, outbox_attributes

pytestmark = pytest.mark.unit
SAMPLE = Path(__file__).resolve().parents[3] / "events" / "events" / "relay_outbox_batch.json"


def _event(**overrides: Any) -> DomainEvent:
    fields: dict[str, Any] = {
        "type": "vaultpay.account.deposited",
        "source": "/vaultpay/accounts",
        "subject": "acc_7",
        "data": {"account_id": "acc_7", "amount": 125050, "currency": "INR"},
        "correlation_id": "corr-1",
        "actor": "usr_admin",
    }
    return DomainEvent(**{**fields, **overrides})


def _record(attributes: dict[str, Any], seq: str = "100", event_name: str = "INSERT") -> dict[str, Any]:
    """A stream record as Lambda delivers it, the image serialised as DynamoDB does."""
    serializer = TypeSerializer()
    image = {name: serializer.serialize(value) for name, value in attributes.items()}
    return {
        "eventID": f"id-{seq}",
        "eventName": event_name,
        "eventSource": "aws:dynamodb",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026",
        "dynamodb": {
            "Keys": {"pk": image["pk"], "sk": image["sk"]},
            "NewImage": image,
            "SequenceNumber": seq,
        },
    }


def _outbox_record(event: DomainEvent, seq: str = "100") -> dict[str, Any]:
    return _record(outbox_attributes(event, now=1_795_860_930), seq)


class RecordingLog:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def _add(self, level: str, message: str, extra: Any = None) -> None:
        self.lines.append((level, message, dict(extra or {})))

    def info(self, message: str, *, extra: Any = None) -> None:
        self._add("info", message, extra)

    def warning(self, message: str, *, extra: Any = None) -> None:
        self._add("warning", message, extra)

    def error(self, message: str, *, extra: Any = None) -> None:
        self._add("error", message, extra)


class FakePublisher:
    """Acks everything, except subjects it is told to refuse; remembers ids as JetStream de-duplicates."""

    def __init__(self, refuse: Sequence[str] = ()) -> None:
        self.refuse = set(refuse)
        self.messages: list[OutboundMessage] = []
        self.seen: dict[str, int] = {}

    async def publish(self, messages: Sequence[OutboundMessage]) -> Sequence[PublishResult]:
        results: list[PublishResult] = []
        for message in messages:
            if message.subject in self.refuse:
                results.append(TransientError("nats down"))
                continue
            msg_id = message.headers[MSG_ID_HEADER]
            if msg_id in self.seen:
                results.append(Published("VAULTPAY", self.seen[msg_id], duplicate=True))
                continue
            self.messages.append(message)
            self.seen[msg_id] = len(self.messages)
            results.append(Published("VAULTPAY", len(self.messages), duplicate=False))
        return results


def _relay(records: list[dict[str, Any]], publisher: FakePublisher, log: RecordingLog) -> BatchOutcome:
    return asyncio.run(Relay(publisher, log=log).relay(records))


# ---- record → event -----------------------------------------------------------------------------------


def test_an_outbox_insert_becomes_the_events_cloudevent() -> None:
    # Given an outbox item written by a domain, as its stream record
    event = _event()
    # When the relay reads it
    found = outbox_event(_outbox_record(event))
    # Then it is the same event, whose envelope is the CloudEvent the contract describes
    assert found == event
    assert found is not None
    envelope = found.cloudevent()
    assert envelope == {
        "specversion": "1.0",
        "id": event.id,
        "source": "/vaultpay/accounts",
        "type": "vaultpay.account.deposited",
        "time": event.time,
        "subject": "acc_7",
        "datacontenttype": "application/json",
        "correlationid": "corr-1",
        "data": {"account_id": "acc_7", "amount": 125050, "currency": "INR"},
        "actor": "usr_admin",
    }
    # Money stays an integer all the way (the data travels as JSON text, never as a DynamoDB number).
    assert isinstance(envelope["data"]["amount"], int)


def test_the_message_has_subject_type_and_the_event_id_as_nats_msg_id() -> None:
    publisher, log = FakePublisher(), RecordingLog()
    event = _event()
    outcome = _relay([_outbox_record(event)], publisher, log)
    assert outcome.published == 1 and outcome.failures == {}
    [message] = publisher.messages
    assert message.subject == "vaultpay.account.deposited"
    assert message.headers == {MSG_ID_HEADER: event.id, "Content-Type": CONTENT_TYPE}
    assert json.loads(message.payload) == event.cloudevent()


def test_an_event_without_actor_has_no_actor_in_its_envelope() -> None:
    event = _event(actor=None)
    found = outbox_event(_outbox_record(event))
    assert found is not None and "actor" not in found.cloudevent()


def test_the_sample_event_has_one_outbox_insert_and_one_other_record() -> None:
    sample = json.loads(SAMPLE.read_text())
    found = [outbox_event(record) for record in sample["Records"]]
    assert found[0] is not None and found[0].type == "vaultpay.auth.user.created"
    assert found[1] is None


# ---- what is ignored ----------------------------------------------------------------------------------


@pytest.mark.parametrize("event_name", ["MODIFY", "REMOVE"])
def test_an_outbox_record_that_is_not_an_insert_is_ignored(event_name: str) -> None:
    # The relay marking an item published, or TTL deleting it, must not publish the event again.
    record = _outbox_record(_event())
    record["eventName"] = event_name
    assert outbox_event(record) is None


def test_an_insert_of_any_other_kind_of_item_is_ignored() -> None:
    attributes = {"pk": "USER#u1", "sk": "PROFILE", "kind": "user", "email_hash": "x"}
    assert outbox_event(_record(attributes)) is None


@pytest.mark.parametrize(
    "record",
    [
        {},
        {"eventName": "INSERT"},
        {"eventName": "INSERT", "dynamodb": {}},
        {"eventName": "INSERT", "dynamodb": 3},
    ],
    ids=["empty", "no-change", "no-image", "odd-change"],
)
def test_a_record_without_an_outbox_image_is_ignored(record: dict[str, Any]) -> None:
    assert outbox_event(record) is None


def test_ignored_records_count_as_processed() -> None:
    publisher, log = FakePublisher(), RecordingLog()
    other = _record({"pk": "USER#u1", "sk": "PROFILE", "kind": "user"}, seq="1")
    outcome = _relay([other], publisher, log)
    assert outcome.ignored == 1 and outcome.failures == {} and publisher.messages == []


# ---- poison ------------------------------------------------------------------------------------------


def _poisoned(change: dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    record = _outbox_record(_event())
    image = record["dynamodb"]["NewImage"]
    for name in drop:
        del image[name]
    image.update(change)
    return record


@pytest.mark.parametrize(
    ("change", "drop", "field"),
    [
        ({}, ("type",), "type"),
        ({}, ("event_id",), "event_id"),
        ({}, ("data",), "data"),
        ({"correlation_id": {"S": "  "}}, (), "correlation_id"),
        ({"source": {"N": "7"}}, (), "source"),
        ({"actor": {"N": "7"}}, (), "actor"),
        ({"type": {"S": "vaultpay.auth.>"}}, (), "type"),
        ({"type": {"S": "vaultpay.auth user"}}, (), "type"),
        ({"type": {"S": "audit.user.created"}}, (), "type"),
        ({"time": {"S": "yesterday"}}, (), "time"),
        ({"data": {"S": "{not json"}}, (), "data"),
        ({"data": {"S": "[1, 2]"}}, (), "data"),
        ({"data": {"S": '{"amount": 12.5}'}}, (), "data"),
    ],
    ids=[
        "no-type",
        "no-event-id",
        "no-data",
        "blank-correlation",
        "number-source",
        "number-actor",
        "wildcard-type",
        "space-in-type",
        "foreign-type",
        "bad-time",
        "data-not-json",
        "data-not-object",
        "float-in-data",
    ],
)
def test_a_malformed_outbox_item_is_poison_naming_the_field(
    change: dict[str, Any], drop: tuple[str, ...], field: str
) -> None:
    with pytest.raises(PoisonRecord) as caught:
        outbox_event(_poisoned(change, drop))
    assert caught.value.field == field


@pytest.mark.parametrize(
    "key", ["password", "refresh_token", "totp_secret", "phone", "account_number", "otp"]
)
def test_an_outbox_item_carrying_a_secret_or_pii_key_is_poison_and_never_published(key: str) -> None:
    # Given an item whose data somehow holds a forbidden key (written around DomainEvent's own check)
    secret_value = "s3cr3t-VALUE-9876543210"
    record = _poisoned({"data": {"S": json.dumps({"user_id": "u1", "nested": {key: secret_value}})}})
    publisher, log = FakePublisher(), RecordingLog()
    # When the relay handles it
    outcome = _relay([record], publisher, log)
    # Then nothing is published, the record is reported failed, and the log names the key, never the value
    assert publisher.messages == []
    assert outcome.poison == 1 and isinstance(outcome.failures["100"], PoisonRecord)
    assert key in str(outcome.failures["100"])
    assert secret_value not in json.dumps(log.lines) and secret_value not in str(outcome.failures["100"])


def test_the_poison_log_line_identifies_the_item_without_its_data() -> None:
    record = _poisoned({"data": {"S": '{"note": "private words", "x": [1.5]}'}})
    log = RecordingLog()
    _relay([record], FakePublisher(), log)
    [(_, message, extra)] = [line for line in log.lines if line[0] == "error"]
    assert message == "poison outbox record: not published"
    assert extra["sequence_number"] == "100" and extra["field"] == "data"
    assert extra["event_id"] == record["dynamodb"]["NewImage"]["event_id"]["S"]
    assert "private words" not in json.dumps(log.lines)


# ---- a batch -----------------------------------------------------------------------------------------


def test_a_poison_record_fails_alone_while_the_records_around_it_are_published() -> None:
    publisher, log = FakePublisher(), RecordingLog()
    first, last = _event(subject="a1"), _event(subject="a3")
    records = [_outbox_record(first, "1"), _poisoned({"time": {"S": "later"}}), _outbox_record(last, "3")]
    records[1]["dynamodb"]["SequenceNumber"] = "2"
    outcome = _relay(records, publisher, log)
    assert [m.headers[MSG_ID_HEADER] for m in publisher.messages] == [first.id, last.id]
    assert set(outcome.failures) == {"2"}
    assert (outcome.published, outcome.poison, outcome.failed) == (2, 1, 0)


def test_a_publish_failure_is_reported_for_its_record_only() -> None:
    publisher, log = FakePublisher(refuse=["vaultpay.transaction.completed"]), RecordingLog()
    ok, refused = _event(), _event(type="vaultpay.transaction.completed")
    outcome = _relay([_outbox_record(ok, "1"), _outbox_record(refused, "2")], publisher, log)
    assert set(outcome.failures) == {"2"} and outcome.failed == 1 and outcome.published == 1
    warning = next(extra for level, _, extra in log.lines if level == "warning")
    assert warning["event_id"] == refused.id and warning["correlation_id"] == "corr-1"
    assert warning["error"] == "TransientError"


def test_the_same_batch_twice_is_published_once_and_counted_as_duplicates() -> None:
    publisher, log = FakePublisher(), RecordingLog()
    records = [_outbox_record(_event(subject=f"a{i}"), str(i)) for i in range(3)]
    _relay(records, publisher, log)
    again = _relay(copy.deepcopy(records), publisher, log)
    assert len(publisher.messages) == 3
    assert again.duplicates == 3 and again.published == 0 and again.failures == {}


def test_the_partial_batch_response_names_exactly_the_failed_records_lowest_first() -> None:
    publisher, log = FakePublisher(refuse=["vaultpay.transaction.completed"]), RecordingLog()
    records = [
        _outbox_record(_event(), "7"),
        _outbox_record(_event(type="vaultpay.transaction.completed"), "12"),
        _outbox_record(_event(), "13"),
        _outbox_record(_event(type="vaultpay.transaction.completed"), "9"),
    ]
    outcome = _relay(records, publisher, log)
    assert outcome.batch_item_failures() == [{"itemIdentifier": "9"}, {"itemIdentifier": "12"}]
    assert _relay([_outbox_record(_event(), "1")], publisher, log).batch_item_failures() == []


def test_sequence_numbers_are_read_from_raw_records_and_powertools_records() -> None:
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

    record = _outbox_record(_event(), "4242")
    assert sequence_number(record) == "4242"
    assert sequence_number(DynamoDBRecord(record)) == "4242"
    assert sequence_number({}) == ""


# ---- consistency with the outbox module ---------------------------------------------------------------


def test_the_relay_and_the_outbox_agree_on_the_outbox_kind() -> None:
    assert relay_module.OUTBOX_KIND == OUTBOX_KIND


def test_the_mapping_filter_passes_exactly_the_records_the_relay_publishes() -> None:
    outbox = _outbox_record(_event())
    modified = copy.deepcopy(outbox)
    modified["eventName"] = "MODIFY"
    user = _record({"pk": "USER#u1", "sk": "PROFILE", "kind": "user"})
    for record in (outbox, modified, user):
        assert record_passes([STREAM_FILTER_PATTERN], record) == (outbox_event(record) is not None)

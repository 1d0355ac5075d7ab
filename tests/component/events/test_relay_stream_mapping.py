"""The whole outbox path: DynamoDB Local stream → the local cloud mapping → the relay → JetStream or SQS."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from types import ModuleType
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeSerializer
from support.tables import create_table

from localcloud.spec import InvokeResult, StreamMappingSpec
from localcloud.streams import StreamPoller
from vaultpay.events.jetstream_config import apply_jetstream_config
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.outbox import STREAM_FILTER_PATTERN, outbox_attributes

pytestmark = pytest.mark.component


def _client(service: str, endpoint: str) -> Any:
    make: Callable[..., Any] = boto3.client
    return make(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


@pytest.fixture(scope="module", autouse=True)
def applied(kit: Any) -> list[str]:
    return asyncio.run(apply_jetstream_config(kit.server.url, kit.config))


class DomainTable:
    """A domain table with an outbox: template.yaml's AuthTable (NEW_AND_OLD_IMAGES stream, OutboxPending)."""

    def __init__(self, endpoint: str) -> None:
        self.client = _client("dynamodb", endpoint)
        self.name = create_table(self.client, "AuthTable", f"vaultpay-test-{uuid.uuid4().hex[:8]}")

    async def write_outbox(self, event: DomainEvent, **override: Any) -> None:
        attributes = {**outbox_attributes(event), **override}
        serializer = TypeSerializer()
        item = {name: serializer.serialize(value) for name, value in attributes.items()}
        await asyncio.to_thread(self.client.put_item, TableName=self.name, Item=item)

    async def write_other(self, pk: str) -> None:
        item = {"pk": {"S": pk}, "sk": {"S": "PROFILE"}, "kind": {"S": "user"}}
        await asyncio.to_thread(self.client.put_item, TableName=self.name, Item=item)


class InProcessRelay:
    """An Invoker that runs the relay handler in this process, on one thread (Lambda runs one invocation
    per environment at a time, and the relay's event loop must never run twice at once)."""

    def __init__(self, app: ModuleType, context: Any) -> None:
        self.app = app
        self.context = context
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay")
        self.invocations = 0

    async def invoke(
        self,
        function: str,
        payload: bytes,
        *,
        invocation_type: str = "RequestResponse",
        log_type: str = "None",
    ) -> InvokeResult:
        self.invocations += 1
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._call, payload)

    def _call(self, payload: bytes) -> InvokeResult:
        try:
            result = self.app.handler(json.loads(payload), self.context)
        except Exception as exc:  # what the Lambda runtime turns into a function error
            body = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
            return InvokeResult(status=200, payload=json.dumps(body).encode(), function_error="Unhandled")
        return InvokeResult(status=200, payload=json.dumps(result).encode())


# The settings the template's relay mapping should have (see the report), with fast retries for the test.
RELAY_MAPPING = StreamMappingSpec(
    logical_id="OutboxRelayMapping",
    function_name="RelayFunction",
    table_name="",
    batch_size=100,
    starting_position="TRIM_HORIZON",
    filter_patterns=(STREAM_FILTER_PATTERN,),
    report_batch_item_failures=True,
    maximum_retry_attempts=5,
    bisect_on_error=True,
)


@pytest.fixture
async def pipeline(
    relay_app: ModuleType, kit: Any, dynamodb_endpoint: str, moto_endpoint: str
) -> AsyncIterator[tuple[DomainTable, StreamPoller, InProcessRelay, Any, str]]:
    table = DomainTable(dynamodb_endpoint)
    sqs = _client("sqs", moto_endpoint)
    queue_url = sqs.create_queue(QueueName=f"relay-failures-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    spec = replace(RELAY_MAPPING, table_name=table.name, on_failure_queue_arn=queue_arn)
    function = InProcessRelay(relay_app, kit.context())
    poller = StreamPoller(
        spec,
        function,
        dynamodb_endpoint=dynamodb_endpoint,
        sqs_endpoint=moto_endpoint,
        retry_base_delay_s=0.2,
        retry_max_delay_s=1.0,
    )
    await poller.start()
    try:
        yield table, poller, function, sqs, queue_url
    finally:
        await poller.stop()
        function.executor.shutdown(wait=True)


async def _eventually(probe: Callable[[], Any], within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while not await asyncio.to_thread(probe):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within_s} s")
        await asyncio.sleep(0.05)


async def test_a_poison_outbox_item_ends_in_the_on_failure_queue_and_its_neighbours_are_published(
    pipeline: tuple[DomainTable, StreamPoller, InProcessRelay, Any, str], kit: Any
) -> None:
    table, poller, _, sqs, queue_url = pipeline
    subject = "vaultpay.test.pipeline.poison"
    # Given a good event, an outbox item carrying a password, another good event, and a non-outbox write
    await table.write_outbox(kit.event(subject, 1))
    await table.write_outbox(kit.event(subject, 2), data=json.dumps({"password": "hunter2hunter2"}))
    await table.write_outbox(kit.event(subject, 3))
    await table.write_other("USER#u1")
    # Then the good ones are in JetStream once, and the poison one, after its retries, is in the queue
    await _eventually(lambda: kit.count(subject) == 2)
    await _eventually(lambda: poller.stats()["dlq_messages"] == 1)
    received = await asyncio.to_thread(sqs.receive_message, QueueUrl=queue_url, WaitTimeSeconds=1)
    [message] = received["Messages"]
    record = json.loads(message["Body"])
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    info = record["DDBStreamBatchInfo"]
    assert info["streamArn"] == poller.stream_arn
    # The queue names where the poison record sits; an operator reads it from the table by its sequence.
    assert int(info["startSequenceNumber"]) > 0
    assert "hunter2" not in message["Body"]
    # The user item is read only after the poison record's retries: wait for that read, then check the drop
    await _eventually(lambda: poller.stats()["records_filtered_out"] >= 1)
    stats = poller.stats()
    assert stats["records_filtered_out"] == 1  # the user item never reached the relay
    assert await asyncio.to_thread(kit.count, subject) == 2


async def test_events_written_while_nats_is_down_are_published_once_when_it_returns(
    pipeline: tuple[DomainTable, StreamPoller, InProcessRelay, Any, str], kit: Any
) -> None:
    table, poller, function, _, _ = pipeline
    subject = "vaultpay.test.pipeline.outage"
    await asyncio.to_thread(kit.server.stop)
    try:
        # Given NATS is down while domains commit changes and their outbox events
        for n in range(10):
            await table.write_outbox(kit.event(subject, n))
        # When the mapping has delivered them and seen them fail at least once
        await _eventually(lambda: poller.stats()["retries"] >= 1)
    finally:
        await asyncio.to_thread(kit.server.start)
    # Then once NATS is back, the retries publish every event exactly once, and nothing is given up
    await _eventually(lambda: kit.count(subject) == 10)
    await _eventually(lambda: poller.stats()["records_delivered"] == 10)
    stats = poller.stats()
    assert stats["records_given_up"] == 0 and stats["dlq_messages"] == 0
    assert function.invocations >= 2
    assert await asyncio.to_thread(kit.count, subject) == 10


async def test_a_batch_given_up_in_a_long_outage_is_rescued_from_the_stream_and_published_once(
    pipeline: tuple[DomainTable, StreamPoller, InProcessRelay, Any, str],
    kit: Any,
    dynamodb_endpoint: str,
    moto_endpoint: str,
) -> None:
    """Nothing marks what the relay published; what its mapping gave up on is found through the on-failure
    queue and the stream, and ends in JetStream once, pending in between while NATS is still down."""
    from vaultpay.bootstrap import events
    from vaultpay.events.adapters import (
        DynamoDbPendingMarker,
        DynamoDbPendingStore,
        DynamoDbStreamReader,
        SqsFailureQueue,
    )
    from vaultpay.events.jetstream import run_blocking
    from vaultpay.events.nats_publisher import JetStreamPublisher
    from vaultpay.events.rescue import Rescuer
    from vaultpay.events.sweeper import Sweeper

    table, poller, _, sqs, queue_url = pipeline
    subject = "vaultpay.test.pipeline.rescue"
    log = logging.getLogger("rescue-test")
    publisher = JetStreamPublisher(events.nats_connection())
    dynamodb = _client("dynamodb", dynamodb_endpoint)
    rescuer = Rescuer(
        SqsFailureQueue(queue_url, sqs),
        DynamoDbStreamReader(_client("dynamodbstreams", dynamodb_endpoint)),
        publisher,
        DynamoDbPendingMarker(dynamodb),
        tables=[table.name],
        log=log,
    )
    written = [kit.event(subject, n) for n in range(6)]
    await asyncio.to_thread(kit.server.stop)
    try:
        # Given NATS stays down longer than the mapping's retries, which give the batch up
        for event in written:
            await table.write_outbox(event)
        await _eventually(lambda: poller.stats()["records_given_up"] == 6)
        # An ordinary outbox item is never pending: no write marked anything
        items = await asyncio.to_thread(_outbox_items, dynamodb, table.name)
        assert len(items) == 6 and not any("pending" in item or "published" in item for item in items)
        # When the rescue runs while NATS is still down, it leaves every event of the batch pending
        down = await asyncio.to_thread(run_blocking, rescuer.rescue())
        # (the writes may reach the mapping in more than one batch, each given up on its own)
        assert (down.events, down.published, down.marked_pending) == (6, 0, 6)
        assert down.rescued == down.batches >= 1
    finally:
        await asyncio.to_thread(kit.server.start)
    pending = await asyncio.to_thread(_outbox_items, dynamodb, table.name)
    assert sorted(item["event_id"]["S"] for item in pending if "pending" in item) == sorted(
        e.id for e in written
    )
    # And once NATS is back, the sweep publishes each exactly once and clears the marks
    sweeper = Sweeper(DynamoDbPendingStore(dynamodb), publisher, None, lambda: time.time() + 600, log=log)
    swept = await asyncio.to_thread(run_blocking, sweeper.sweep([table.name]))
    assert (swept.found, swept.published) == (6, 6)
    assert await asyncio.to_thread(kit.count, subject) == 6
    # The queue is empty: the rescue deleted the message it had handled
    left = await asyncio.to_thread(sqs.receive_message, QueueUrl=queue_url, WaitTimeSeconds=0)
    assert left.get("Messages", []) == []


async def test_a_given_up_batch_is_published_by_the_rescue_itself_when_nats_is_back(
    pipeline: tuple[DomainTable, StreamPoller, InProcessRelay, Any, str],
    kit: Any,
    dynamodb_endpoint: str,
) -> None:
    from vaultpay.bootstrap import events
    from vaultpay.events.adapters import DynamoDbPendingMarker, DynamoDbStreamReader, SqsFailureQueue
    from vaultpay.events.jetstream import run_blocking
    from vaultpay.events.nats_publisher import JetStreamPublisher
    from vaultpay.events.rescue import Rescuer

    table, poller, _, sqs, queue_url = pipeline
    subject = "vaultpay.test.pipeline.rescued"
    dynamodb = _client("dynamodb", dynamodb_endpoint)
    await asyncio.to_thread(kit.server.stop)
    try:
        for n in range(4):
            await table.write_outbox(kit.event(subject, n))
        await _eventually(lambda: poller.stats()["records_given_up"] == 4)
    finally:
        await asyncio.to_thread(kit.server.start)
    rescuer = Rescuer(
        SqsFailureQueue(queue_url, sqs),
        DynamoDbStreamReader(_client("dynamodbstreams", dynamodb_endpoint)),
        JetStreamPublisher(events.nats_connection()),
        DynamoDbPendingMarker(dynamodb),
        tables=[table.name],
        log=logging.getLogger("rescue-test"),
    )
    outcome = await asyncio.to_thread(run_blocking, rescuer.rescue())
    assert (outcome.events, outcome.published, outcome.marked_pending) == (4, 4, 0)
    assert outcome.rescued == outcome.batches >= 1
    assert await asyncio.to_thread(kit.count, subject) == 4
    # Rescuing again finds nothing: the message is gone
    again = await asyncio.to_thread(run_blocking, rescuer.rescue())
    assert again.batches == 0
    items = await asyncio.to_thread(_outbox_items, dynamodb, table.name)
    assert not any("pending" in item for item in items)


def _outbox_items(client: Any, table: str) -> list[dict[str, Any]]:
    items = client.scan(TableName=table, ConsistentRead=True)["Items"]
    return [item for item in items if item.get("kind") == {"S": "outbox"}]

"""DynamoDB Streams event source mappings against a real DynamoDB Local (and moto's SQS for on-failure)."""

from __future__ import annotations

import asyncio
import json
import random
import re
import statistics
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from localcloud.services import LocalCloudError
from localcloud.spec import InvokeResult, StreamMappingSpec, function_arn
from localcloud.streams import StreamClients, StreamPoller

pytestmark = pytest.mark.component

OUTBOX = {"dynamodb": {"NewImage": {"kind": {"S": ["outbox"]}}}, "eventName": ["INSERT"]}
OK = InvokeResult(status=200, payload=b"null", request_id="req-ok")
FUNCTION_ERROR = InvokeResult(
    status=200,
    payload=b'{"errorType": "RuntimeError", "errorMessage": "boom"}',
    function_error="Unhandled",
    request_id="req-error",
)

Respond = Callable[[list[dict[str, Any]]], InvokeResult | Exception]


def item_failures(*identifiers: Any) -> InvokeResult:
    body = {"batchItemFailures": [{"itemIdentifier": identifier} for identifier in identifiers]}
    return InvokeResult(status=200, payload=json.dumps(body).encode())


def key(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["Keys"]["pk"]["S"])


def sequence(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


class FakeFunction:
    """A fake Invoker: records each batch it is given and answers with `respond` (success by default)."""

    def __init__(self, respond: Respond | None = None, *, delay_s: float = 0.0) -> None:
        self.respond: Respond = respond or (lambda records: OK)
        self.delay_s = delay_s
        self.batches: list[list[dict[str, Any]]] = []
        self.received: dict[str, float] = {}  # key -> perf_counter() when it first arrived
        self.in_flight = 0
        self.max_in_flight = 0

    async def invoke(
        self,
        function: str,
        payload: bytes,
        *,
        invocation_type: str = "RequestResponse",
        log_type: str = "None",
    ) -> InvokeResult:
        assert invocation_type == "RequestResponse"  # stream mappings invoke synchronously
        records: list[dict[str, Any]] = json.loads(payload)["Records"]
        now = time.perf_counter()
        self.batches.append(records)
        for record in records:
            self.received.setdefault(key(record), now)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            outcome = self.respond(records)
        finally:
            self.in_flight -= 1
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    @property
    def keys(self) -> list[str]:
        return [key(record) for batch in self.batches for record in batch]

    def batch_keys(self) -> list[list[str]]:
        return [[key(record) for record in batch] for batch in self.batches]


async def eventually(probe: Callable[[], Any], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within_s} s")
        await asyncio.sleep(0.01)


def client(service: str, endpoint: str) -> Any:
    make: Callable[..., Any] = boto3.client  # typed per service in the stubs; any service here
    return make(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


class Table:
    """A fresh table with a NEW_AND_OLD_IMAGES stream; writes run in a thread so the pollers keep running."""

    def __init__(self, endpoint: str, *, stream: bool = True) -> None:
        self.client = client("dynamodb", endpoint)
        self.name = f"t-{uuid.uuid4().hex[:12]}"
        extra: dict[str, Any] = {}
        if stream:
            extra["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
        self.client.create_table(
            TableName=self.name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            **extra,
        )

    async def put(self, pk: str, **attributes: str) -> None:
        item = {"pk": {"S": pk}, **{name: {"S": value} for name, value in attributes.items()}}
        await asyncio.to_thread(self.client.put_item, TableName=self.name, Item=item)

    async def put_many(self, keys: list[str]) -> None:
        def write() -> None:
            for start in range(0, len(keys), 25):
                chunk = keys[start : start + 25]
                requests = [{"PutRequest": {"Item": {"pk": {"S": pk}}}} for pk in chunk]
                self.client.batch_write_item(RequestItems={self.name: requests})

        await asyncio.to_thread(write)


@pytest.fixture
def table(dynamodb_endpoint: str) -> Table:
    return Table(dynamodb_endpoint)


def mapping(table_name: str, **overrides: Any) -> StreamMappingSpec:
    return StreamMappingSpec(
        logical_id="RelayMapping", function_name="relay", table_name=table_name, **overrides
    )


StartPoller = Callable[..., Awaitable[StreamPoller]]


@pytest.fixture
async def start_poller(dynamodb_endpoint: str) -> AsyncIterator[StartPoller]:
    started: list[StreamPoller] = []

    async def start(spec: StreamMappingSpec, function: FakeFunction, **options: Any) -> StreamPoller:
        options.setdefault("retry_base_delay_s", 0.01)
        options.setdefault("retry_max_delay_s", 0.05)
        poller = StreamPoller(spec, function, dynamodb_endpoint=dynamodb_endpoint, **options)
        await poller.start()
        started.append(poller)
        return poller

    yield start
    for poller in started:
        await poller.stop()


# ---- filtering and the record shape ---------------------------------------------------------------------
async def test_a_record_matching_the_filter_reaches_the_function_and_a_non_matching_one_does_not(
    table: Table, start_poller: StartPoller
) -> None:
    # Given a mapping that passes only inserted outbox items
    function = FakeFunction()
    poller = await start_poller(mapping(table.name, filter_patterns=(OUTBOX,)), function)
    # When a domain item and then an outbox item are written
    await table.put("account-1", kind="account")
    await table.put("event-1", kind="outbox", type="transaction.initiated")
    # Then only the outbox item reaches the function (the other was read first, and dropped)
    await eventually(lambda: function.keys == ["event-1"])
    stats = poller.stats()
    assert (stats["records_seen"], stats["records_filtered_out"], stats["records_delivered"]) == (2, 1, 1)


async def test_a_delivered_record_has_the_shape_lambda_gives_functions(
    table: Table, start_poller: StartPoller
) -> None:
    function = FakeFunction()
    poller = await start_poller(mapping(table.name), function)
    await table.put("event-1", kind="outbox")
    await eventually(lambda: len(function.keys) == 1)

    (record,) = function.batches[0]
    assert list(record) == [
        "eventID",
        "eventName",
        "eventVersion",
        "eventSource",
        "awsRegion",
        "dynamodb",
        "eventSourceARN",
    ]
    assert record["eventName"] == "INSERT"
    assert (record["eventVersion"], record["eventSource"], record["awsRegion"]) == (
        "1.1",
        "aws:dynamodb",
        "us-east-1",
    )
    assert record["eventSourceARN"] == poller.stream_arn
    assert re.fullmatch(
        r"arn:aws:dynamodb:[^:]+:\d{12}:table/" + table.name + r"/stream/.+", record["eventSourceARN"]
    )
    change = record["dynamodb"]
    assert change["Keys"] == {"pk": {"S": "event-1"}}
    assert change["NewImage"] == {"pk": {"S": "event-1"}, "kind": {"S": "outbox"}}
    assert "OldImage" not in change  # an INSERT has no old image
    assert change["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert change["SequenceNumber"].isdigit() and isinstance(change["SizeBytes"], int)
    assert abs(change["ApproximateCreationDateTime"] - time.time()) < 120  # epoch seconds, minute-rounded


# ---- ordering -------------------------------------------------------------------------------------------
async def test_records_of_a_shard_arrive_in_stream_order_one_batch_at_a_time(
    table: Table, start_poller: StartPoller
) -> None:
    # Given a slow function and a batch size of 7
    function = FakeFunction(delay_s=0.005)
    await start_poller(mapping(table.name, batch_size=7), function)
    # When 20 items are written one by one and then 50 in bursts
    singles = [f"single-{i:02d}" for i in range(20)]
    for pk in singles:
        await table.put(pk)
    bursts = [f"burst-{i:02d}" for i in range(50)]
    await table.put_many(bursts)
    await eventually(lambda: len(function.keys) == 70)
    # Then every record arrived once, in stream order, in batches of at most 7, never two at once
    assert function.keys[:20] == singles
    assert sorted(function.keys[20:]) == bursts
    sequences = [int(sequence(record)) for batch in function.batches for record in batch]
    assert sequences == sorted(sequences) and len(set(sequences)) == 70
    sizes = [len(batch) for batch in function.batches]
    assert max(sizes) <= 7 and max(sizes) > 1
    assert function.max_in_flight == 1


async def test_a_batching_window_gathers_records_into_one_batch(
    table: Table, start_poller: StartPoller
) -> None:
    function = FakeFunction()
    await start_poller(mapping(table.name, batch_size=10, maximum_batching_window_s=1), function)
    began = time.perf_counter()
    for pk in ("w1", "w2", "w3"):
        await table.put(pk)
    await eventually(lambda: len(function.keys) == 3)
    assert function.batch_keys() == [["w1", "w2", "w3"]]
    assert time.perf_counter() - began >= 0.9


# ---- partial batch failures -----------------------------------------------------------------------------
async def test_a_partial_batch_failure_is_retried_from_the_failed_item_only(
    table: Table, start_poller: StartPoller
) -> None:
    # Given five records and a function that reports items 3 and 2 (of 0..4) failed the first time
    for i in range(5):
        await table.put(f"p{i}")

    calls: list[int] = []

    def respond(records: list[dict[str, Any]]) -> InvokeResult:
        calls.append(len(records))
        if len(calls) == 1:
            return item_failures(sequence(records[3]), sequence(records[2]))
        return OK

    function = FakeFunction(respond)
    poller = await start_poller(
        mapping(table.name, batch_size=5, starting_position="TRIM_HORIZON", report_batch_item_failures=True),
        function,
    )
    # Then the retry starts at the lowest failed item; the two before it are not delivered again
    await eventually(lambda: len(function.batches) == 2)
    await asyncio.sleep(0.2)
    assert function.batch_keys() == [["p0", "p1", "p2", "p3", "p4"], ["p2", "p3", "p4"]]
    stats = poller.stats()
    assert (stats["records_delivered"], stats["retries"], stats["function_errors"]) == (5, 1, 1)


@pytest.mark.parametrize(
    "response", [b'{"batchItemFailures": []}', b'{"batchItemFailures": null}', b"{}", b""]
)
async def test_an_empty_or_null_item_failure_list_means_the_whole_batch_succeeded(
    table: Table, start_poller: StartPoller, response: bytes
) -> None:
    function = FakeFunction(lambda records: InvokeResult(status=200, payload=response))
    poller = await start_poller(mapping(table.name, report_batch_item_failures=True), function)
    await table.put("fine")
    await eventually(lambda: poller.stats()["records_delivered"] == 1)
    await asyncio.sleep(0.1)
    assert function.batch_keys() == [["fine"]]
    assert poller.stats()["retries"] == 0


@pytest.mark.parametrize("identifier", ["not-a-sequence-number", "", None])
async def test_an_invalid_item_identifier_fails_the_whole_batch(
    table: Table, start_poller: StartPoller, identifier: Any
) -> None:
    for pk in ("i0", "i1"):
        await table.put(pk)
    answers = [item_failures(identifier)]
    function = FakeFunction(lambda records: answers.pop() if answers else OK)
    await start_poller(
        mapping(table.name, starting_position="TRIM_HORIZON", report_batch_item_failures=True), function
    )
    await eventually(lambda: len(function.batches) == 2)
    assert function.batch_keys() == [["i0", "i1"], ["i0", "i1"]]


# ---- whole-batch failures, retries, on-failure queue, bisect ---------------------------------------------
async def test_a_failed_batch_is_retried_whole_until_it_succeeds(
    table: Table, start_poller: StartPoller
) -> None:
    # Given a function that fails, then cannot be invoked, then succeeds
    for pk in ("a", "b", "c"):
        await table.put(pk)
    outcomes: list[InvokeResult | Exception] = [FUNCTION_ERROR, ConnectionError("runtime restarting"), OK]
    function = FakeFunction(lambda records: outcomes.pop(0) if outcomes else OK)
    poller = await start_poller(mapping(table.name, starting_position="TRIM_HORIZON"), function)
    # Then the same batch is sent three times, and delivered once it succeeds
    await eventually(lambda: poller.stats()["records_delivered"] == 3)
    assert function.batch_keys() == [["a", "b", "c"]] * 3
    stats = poller.stats()
    assert (stats["retries"], stats["function_errors"], stats["records_given_up"]) == (2, 2, 0)


async def test_exhausted_retries_send_aws_invocation_record_to_the_on_failure_queue_and_move_on(
    table: Table, start_poller: StartPoller, moto_endpoint: str
) -> None:
    # Given a mapping with two retries and an SQS on-failure destination
    sqs = client("sqs", moto_endpoint)
    queue_url = sqs.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    function = FakeFunction(lambda records: FUNCTION_ERROR if key(records[0]) == "poison" else OK)
    poller = await start_poller(
        mapping(table.name, maximum_retry_attempts=2, on_failure_queue_arn=queue_arn),
        function,
        sqs_endpoint=moto_endpoint,
    )
    # When a record keeps failing
    await table.put("poison")
    await eventually(lambda: poller.stats()["dlq_messages"] == 1)
    # Then it was tried once and retried twice, and the next record still gets through
    await table.put("after")
    await eventually(lambda: "after" in function.keys)
    assert function.batch_keys() == [["poison"]] * 3 + [["after"]]
    received = await asyncio.to_thread(sqs.receive_message, QueueUrl=queue_url, WaitTimeSeconds=1)
    (message,) = received["Messages"]
    record = json.loads(message["Body"])
    poison_sequence = sequence(function.batches[0][0])
    assert record["requestContext"] == {
        "requestId": "req-error",
        "functionArn": function_arn("relay"),
        "condition": "RetryAttemptsExhausted",
        "approximateInvokeCount": 3,
    }
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert record["version"] == "1.0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["timestamp"])
    info = record["DDBStreamBatchInfo"]
    assert info["shardId"].startswith("shardId-")
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        poison_sequence,
        poison_sequence,
        1,
    )
    assert info["streamArn"] == poller.stream_arn
    for field in ("approximateArrivalOfFirstRecord", "approximateArrivalOfLastRecord"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info[field])
    stats = poller.stats()
    assert (stats["records_given_up"], stats["retries"], stats["records_delivered"]) == (1, 2, 1)


async def test_bisect_on_error_isolates_the_failing_record(table: Table, start_poller: StartPoller) -> None:
    # Given four records, one of which always makes the function fail, and no retries
    for pk in ("b0", "b1", "bad", "b3"):
        await table.put(pk)
    function = FakeFunction(lambda records: FUNCTION_ERROR if "bad" in map(key, records) else OK)
    poller = await start_poller(
        mapping(
            table.name,
            batch_size=4,
            starting_position="TRIM_HORIZON",
            bisect_on_error=True,
            maximum_retry_attempts=0,
        ),
        function,
    )
    # Then the batch is halved until the bad record stands alone and is given up; the rest is delivered
    await eventually(lambda: poller.stats()["records_delivered"] == 3)
    assert function.batch_keys() == [["b0", "b1", "bad", "b3"], ["b0", "b1"], ["bad", "b3"], ["bad"], ["b3"]]
    stats = poller.stats()
    # splitting does not count against the retry quota, as on AWS
    assert (stats["bisections"], stats["retries"], stats["records_given_up"]) == (2, 0, 1)


# ---- starting position, restart, shards -------------------------------------------------------------------
async def test_latest_starts_after_existing_records_and_trim_horizon_from_the_oldest(
    table: Table, start_poller: StartPoller
) -> None:
    await table.put("before")
    latest, oldest = FakeFunction(), FakeFunction()
    await start_poller(mapping(table.name, starting_position="LATEST"), latest)
    await start_poller(mapping(table.name, starting_position="TRIM_HORIZON"), oldest)
    await table.put("after")
    await eventually(lambda: latest.keys == ["after"] and oldest.keys == ["before", "after"])


async def test_a_restarted_poller_resumes_after_its_checkpoint(
    table: Table, start_poller: StartPoller
) -> None:
    function = FakeFunction()
    poller = await start_poller(mapping(table.name), function)
    await table.put("r1")
    await eventually(lambda: function.keys == ["r1"])
    await poller.stop()
    await table.put("r2")  # written while the mapping is stopped
    await poller.start()
    await eventually(lambda: function.keys == ["r1", "r2"])


async def test_a_closed_shard_is_read_to_its_end_then_dropped(
    table: Table, start_poller: StartPoller
) -> None:
    function = FakeFunction()
    poller = await start_poller(mapping(table.name), function)
    await table.put("last")
    await eventually(lambda: function.keys == ["last"])
    # Disabling the stream closes its shard
    await asyncio.to_thread(
        table.client.update_table, TableName=table.name, StreamSpecification={"StreamEnabled": False}
    )
    await eventually(lambda: poller.stats()["shards_finished"] == 1 and poller.stats()["shards_active"] == 0)


async def test_stop_is_prompt_and_leaves_no_task_behind(table: Table, start_poller: StartPoller) -> None:
    function = FakeFunction()
    poller = await start_poller(mapping(table.name, maximum_batching_window_s=5), function)
    await table.put("gathering")  # a batch being gathered for up to 5 s
    await eventually(lambda: poller.stats()["records_seen"] == 1)
    began = time.perf_counter()
    await poller.stop()
    assert time.perf_counter() - began < 0.5
    assert function.batches == []  # no half batch was sent
    assert not poller.running
    assert not [task for task in asyncio.all_tasks() if task.get_name().startswith("stream-")]


async def test_a_table_without_a_stream_is_refused_with_the_fix(dynamodb_endpoint: str) -> None:
    plain = Table(dynamodb_endpoint, stream=False)
    poller = StreamPoller(mapping(plain.name), FakeFunction(), dynamodb_endpoint=dynamodb_endpoint)
    with pytest.raises(LocalCloudError, match="has no stream; give it a StreamSpecification"):
        await poller.start()
    assert not poller.running


# ---- latency --------------------------------------------------------------------------------------------
async def test_delivery_latency_when_idle_is_well_under_100_ms(
    table: Table, start_poller: StartPoller
) -> None:
    # Given an idle mapping, when 200 records are written with idle gaps between them
    function = FakeFunction()
    await start_poller(mapping(table.name), function)
    gaps = random.Random(7)
    written: dict[str, float] = {}
    for i in range(200):
        pk = f"lat-{i:03d}"
        written[pk] = time.perf_counter()  # before the write call: the latency includes the write
        await table.put(pk)
        await asyncio.sleep(gaps.uniform(0.005, 0.03))
    await eventually(lambda: len(function.received) == 200)
    # Then write -> function takes well under 100 ms
    latencies = sorted((function.received[pk] - written[pk]) * 1000 for pk in written)
    median, p99 = statistics.median(latencies), latencies[197]
    print(f"\nwrite -> function latency over 200 records: median {median:.1f} ms, p99 {p99:.1f} ms")
    assert median < 100


# ---- shard lineage, with a scripted stream ---------------------------------------------------------------
STREAM_ARN = "arn:aws:dynamodb:ddblocal:000000000000:table/scripted/stream/2026-01-01T00:00:00.000"


class ScriptedStream:
    """A fake dynamodb + dynamodbstreams client whose shards, parents and closing the test controls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.shards: dict[str, dict[str, Any]] = {}
        self.reads: list[str] = []  # shard of every GetRecords, in call order

    def add_shard(self, shard_id: str, parent: str | None, sequences: list[int], *, closed: bool) -> None:
        with self._lock:
            self.shards[shard_id] = {"parent": parent, "sequences": list(sequences), "closed": closed}

    def close(self, shard_id: str, *, last: list[int]) -> None:
        with self._lock:
            self.shards[shard_id]["sequences"].extend(last)
            self.shards[shard_id]["closed"] = True

    def describe_table(self, TableName: str) -> dict[str, Any]:
        return {"Table": {"StreamSpecification": {"StreamEnabled": True}, "LatestStreamArn": STREAM_ARN}}

    def describe_stream(self, StreamArn: str, **_: Any) -> dict[str, Any]:
        with self._lock:
            shards = []
            for shard_id, shard in self.shards.items():
                numbers = {"StartingSequenceNumber": f"{min(shard['sequences'], default=0):021d}"}
                if shard["closed"]:
                    numbers["EndingSequenceNumber"] = f"{max(shard['sequences'], default=0):021d}"
                described = {"ShardId": shard_id, "SequenceNumberRange": numbers}
                if shard["parent"]:
                    described["ParentShardId"] = shard["parent"]
                shards.append(described)
        return {"StreamDescription": {"StreamArn": StreamArn, "Shards": shards}}

    def get_shard_iterator(self, ShardId: str, ShardIteratorType: str, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            sequences = self.shards[ShardId]["sequences"]
            if ShardIteratorType == "TRIM_HORIZON":
                position = 0
            elif ShardIteratorType == "LATEST":
                position = len(sequences)
            else:  # AFTER_SEQUENCE_NUMBER
                position = sequences.index(int(kwargs["SequenceNumber"])) + 1
        return {"ShardIterator": f"{ShardId}|{position}"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        shard_id, position_text = ShardIterator.split("|")
        position = int(position_text)
        with self._lock:
            self.reads.append(shard_id)
            shard = self.shards[shard_id]
            taken = shard["sequences"][position : position + Limit]
            position += len(taken)
            done = shard["closed"] and position >= len(shard["sequences"])
        records = [
            {
                "eventID": str(number),
                "eventName": "INSERT",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "ddblocal",
                "dynamodb": {
                    "ApproximateCreationDateTime": datetime.now(UTC),
                    "Keys": {"pk": {"S": f"r{number}"}},
                    "SequenceNumber": f"{number:021d}",
                    "SizeBytes": 10,
                    "StreamViewType": "KEYS_ONLY",
                },
            }
            for number in taken
        ]
        response: dict[str, Any] = {"Records": records}
        if not done:
            response["NextShardIterator"] = f"{shard_id}|{position}"
        return response


async def test_shards_are_read_parents_first_and_new_shards_are_picked_up() -> None:
    # Given a closed parent shard and its open child
    stream = ScriptedStream()
    stream.add_shard("shard-P", None, [1, 2], closed=True)
    stream.add_shard("shard-C", "shard-P", [3, 4], closed=False)
    function = FakeFunction()
    poller = StreamPoller(
        mapping("scripted", starting_position="TRIM_HORIZON"),
        function,
        clients=StreamClients(dynamodb=stream, streams=stream),
        idle_poll_s=0.01,
        shard_discovery_s=0.05,
    )
    await poller.start()
    try:
        await eventually(lambda: function.keys == ["r1", "r2", "r3", "r4"])
        # When the child closes and the stream opens a grandchild
        stream.close("shard-C", last=[5])
        stream.add_shard("shard-D", "shard-C", [6], closed=False)
        await eventually(lambda: function.keys == ["r1", "r2", "r3", "r4", "r5", "r6"])
        await eventually(lambda: poller.stats()["shards_finished"] == 2)
    finally:
        await poller.stop()
    # Then no shard was read before its parent was finished
    reads = stream.reads
    assert max(i for i, s in enumerate(reads) if s == "shard-P") < reads.index("shard-C")
    assert max(i for i, s in enumerate(reads) if s == "shard-C") < reads.index("shard-D")


async def test_latest_skips_shards_closed_before_the_mapping_existed() -> None:
    stream = ScriptedStream()
    stream.add_shard("shard-P", None, [1, 2], closed=True)
    stream.add_shard("shard-C", "shard-P", [3], closed=False)
    function = FakeFunction()
    poller = StreamPoller(
        mapping("scripted"),
        function,
        clients=StreamClients(dynamodb=stream, streams=stream),
        idle_poll_s=0.01,
    )
    await poller.start()
    try:
        stream.shards["shard-C"]["sequences"].append(4)  # written after the mapping was created
        await eventually(lambda: function.keys == ["r4"])
    finally:
        await poller.stop()
    assert "shard-P" not in stream.reads


async def test_wake_reads_at_once_instead_of_waiting_for_the_next_poll() -> None:
    # Given a mapping that polls only every 30 s
    stream = ScriptedStream()
    stream.add_shard("shard-A", None, [], closed=False)
    function = FakeFunction()
    poller = StreamPoller(
        mapping("scripted"), function, clients=StreamClients(dynamodb=stream, streams=stream), idle_poll_s=30
    )
    await poller.start()
    try:
        await eventually(lambda: "shard-A" in stream.reads)  # it has polled once and is idle now
        # When a record is written and the poller is told so
        stream.shards["shard-A"]["sequences"].append(1)
        began = time.monotonic()
        poller.wake()
        # Then it is delivered at once
        await eventually(lambda: function.keys == ["r1"], within_s=2)
        assert time.monotonic() - began < 1
    finally:
        began = time.monotonic()
        await poller.stop()
    assert time.monotonic() - began < 0.5  # stop() does not wait out the 30 s poll either


def test_an_invalid_filter_pattern_is_refused_when_the_mapping_is_created() -> None:
    bad = mapping("any", filter_patterns=({"eventName": "INSERT"},))
    with pytest.raises(ValueError, match="invalid FilterCriteria pattern: eventName"):
        StreamPoller(bad, FakeFunction(), dynamodb_endpoint="http://127.0.0.1:9")


# ---- checkpoints that outlive the poller (a restart of the local cloud) ---------------------------------
@pytest.mark.parametrize("starting_position", ["TRIM_HORIZON", "LATEST"])
async def test_a_new_poller_with_the_checkpoint_file_neither_replays_nor_skips(
    table: Table, start_poller: StartPoller, tmp_path: Any, starting_position: str
) -> None:
    checkpoints = tmp_path / "streams" / "RelayMapping.json"
    spec = mapping(table.name, filter_patterns=(OUTBOX,), starting_position=starting_position)
    # Given a poller that delivered two outbox items and dropped a domain item after them, then stopped
    first = FakeFunction()
    poller = await start_poller(spec, first, checkpoint_file=checkpoints)
    await table.put("event-1", kind="outbox")
    await table.put("event-2", kind="outbox")
    await table.put("account-1", kind="account")
    await eventually(lambda: first.keys == ["event-1", "event-2"] and poller.stats()["records_seen"] == 3)
    await poller.stop()
    saved = json.loads(checkpoints.read_text())
    assert saved["stream_arn"] == poller.stream_arn
    [shard] = saved["shards"].values()
    assert shard["done_through"] is not None  # the filtered-out record is done too
    # When an item is written while no poller runs, and a new poller starts with the same checkpoints
    await table.put("event-3", kind="outbox")
    second = FakeFunction()
    restarted = await start_poller(spec, second, checkpoint_file=checkpoints)
    await table.put("event-4", kind="outbox")
    # Then it delivers what came after the checkpoint, once, and nothing from before it
    await eventually(lambda: second.keys == ["event-3", "event-4"])
    await asyncio.sleep(0.5)
    assert second.keys == ["event-3", "event-4"]
    assert restarted.stats()["records_seen"] == 2


async def test_without_the_checkpoint_file_a_new_poller_starts_from_its_starting_position(
    table: Table, start_poller: StartPoller, tmp_path: Any
) -> None:
    # The control for the test above: without saved checkpoints TRIM_HORIZON means everything again
    spec = mapping(table.name, starting_position="TRIM_HORIZON")
    poller = await start_poller(spec, FakeFunction())
    await table.put("event-1")
    await eventually(lambda: poller.stats()["records_delivered"] == 1)
    await poller.stop()
    again = FakeFunction()
    await start_poller(spec, again)
    await eventually(lambda: again.keys == ["event-1"])


async def test_a_checkpoint_of_another_stream_is_ignored(
    table: Table, start_poller: StartPoller, tmp_path: Any
) -> None:
    # Given checkpoints saved for a stream the table no longer has (it was created again)
    checkpoints = tmp_path / "RelayMapping.json"
    checkpoints.write_text(
        json.dumps({"stream_arn": "arn:aws:dynamodb:ddblocal:000000000000:table/gone/stream/x", "shards": {}})
    )
    function = FakeFunction()
    await start_poller(mapping(table.name), function, checkpoint_file=checkpoints)
    # When an item is written, it is delivered from the mapping's starting position
    await table.put("event-1")
    await eventually(lambda: function.keys == ["event-1"])


async def test_an_unreadable_checkpoint_file_stops_the_start_with_a_clear_error(
    table: Table, start_poller: StartPoller, tmp_path: Any
) -> None:
    checkpoints = tmp_path / "RelayMapping.json"
    checkpoints.write_text("{not json")
    with pytest.raises(LocalCloudError, match=r"checkpoint .* cannot be read .*--fresh"):
        await start_poller(mapping(table.name), FakeFunction(), checkpoint_file=checkpoints)

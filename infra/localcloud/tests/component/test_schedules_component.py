"""Schedules firing in real time (scaled), and a scheduled function's writes reaching a stream mapping."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from localcloud.schedules import Scheduler
from localcloud.spec import InvokeResult, ScheduleSpec, StreamMappingSpec
from localcloud.streams import StreamPoller

pytestmark = pytest.mark.component

ACCEPTED = InvokeResult(status=202, payload=b"")
# rate(1 minute) fires every 0.1 s
TIME_SCALE = 600.0

Handler = Callable[[bytes], Awaitable[InvokeResult]]


class Functions:
    """A fake Invoker for several functions: records every call, and runs a handler where one is given."""

    def __init__(self, handlers: dict[str, Handler] | None = None) -> None:
        self.handlers = handlers or {}
        self.calls: list[tuple[str, dict[str, Any], str, float]] = []  # function, event, type, monotonic time

    async def invoke(
        self,
        function: str,
        payload: bytes,
        *,
        invocation_type: str = "RequestResponse",
        log_type: str = "None",
    ) -> InvokeResult:
        self.calls.append((function, json.loads(payload), invocation_type, time.monotonic()))
        handler = self.handlers.get(function)
        return await handler(payload) if handler else ACCEPTED

    def events_of(self, function: str) -> list[dict[str, Any]]:
        return [event for name, event, _, _ in self.calls if name == function]

    def times_of(self, function: str) -> list[float]:
        return [at for name, _, _, at in self.calls if name == function]


async def eventually(probe: Callable[[], Any], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within_s} s")
        await asyncio.sleep(0.01)


def schedule(name: str, expression: str, **overrides: Any) -> ScheduleSpec:
    return ScheduleSpec(
        logical_id=f"{name.title()}Rule", name=name, expression=expression, function_name=name, **overrides
    )


async def test_a_rate_schedule_fires_every_scaled_interval_with_the_scheduled_event() -> None:
    # Given rate(1 minute) run 600 times faster
    functions = Functions()
    scheduler = Scheduler([schedule("sweeper", "rate(1 minute)")], functions, time_scale=TIME_SCALE)
    began = time.monotonic()
    await scheduler.start()
    try:
        await eventually(lambda: len(functions.calls) >= 3)
    finally:
        await scheduler.stop()
    # Then it fired one interval after starting, then every interval, each time as an Event invocation
    times = functions.times_of("sweeper")
    assert times[0] - began >= 0.09
    assert all(0.05 <= later - earlier <= 0.5 for earlier, later in itertools.pairwise(times))
    assert {invocation_type for _, _, invocation_type, _ in functions.calls} == {"Event"}
    event = functions.events_of("sweeper")[0]
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["resources"] == ["arn:aws:events:us-east-1:000000000000:rule/sweeper"]
    assert event["detail"] == {} and event["version"] == "0"
    fired_at = datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - fired_at).total_seconds()) < 5
    assert len({e["id"] for e in functions.events_of("sweeper")}) == len(times)  # a new id each time
    assert scheduler.stats()["sweeper"]["fired"] == len(times)


async def test_a_constant_input_is_delivered_verbatim_and_a_disabled_schedule_never_fires() -> None:
    constant = '{"sweep": "outbox", "older_than_s": 60}'
    functions = Functions()
    scheduler = Scheduler(
        [
            schedule("outbox-sweeper", "rate(1 minute)", input=constant),
            schedule("paused", "rate(1 minute)", enabled=False),
        ],
        functions,
        time_scale=TIME_SCALE,
    )
    await scheduler.start()
    try:
        await eventually(lambda: len(functions.calls) >= 3)
    finally:
        await scheduler.stop()
    assert functions.events_of("outbox-sweeper")[0] == json.loads(constant)
    assert functions.events_of("paused") == []
    assert scheduler.stats()["paused"]["fired"] == 0


async def test_a_cron_schedule_fires_on_the_minute_with_that_minute_as_its_time() -> None:
    # Given a clock 0.3 s before a minute boundary
    target = (datetime.now(UTC) + timedelta(minutes=3)).replace(second=0, microsecond=0)
    offset = target - timedelta(seconds=0.3) - datetime.now(UTC)
    functions = Functions()
    scheduler = Scheduler(
        [schedule("minutely", "cron(* * * * ? *)")], functions, clock=lambda: datetime.now(UTC) + offset
    )
    await scheduler.start()
    try:
        await eventually(lambda: len(functions.calls) == 1, within_s=3)
        assert scheduler.stats()["minutely"]["next_fire_at"] == (target + timedelta(minutes=1)).isoformat(
            timespec="milliseconds"
        ).replace("+00:00", "Z")
    finally:
        await scheduler.stop()
    assert functions.events_of("minutely")[0]["time"] == target.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_stop_cancels_every_timer_and_nothing_fires_afterwards() -> None:
    functions = Functions()
    scheduler = Scheduler([schedule("sweeper", "rate(1 minute)")], functions, time_scale=TIME_SCALE)
    await scheduler.start()
    await eventually(lambda: len(functions.calls) >= 1)
    await scheduler.stop()
    fired = len(functions.calls)
    await asyncio.sleep(0.3)
    assert len(functions.calls) == fired
    assert not scheduler.running
    assert not [task for task in asyncio.all_tasks() if task.get_name().startswith("schedule-")]


def relayed(functions: Functions) -> list[str]:
    return [
        record["dynamodb"]["Keys"]["pk"]["S"]
        for event in functions.events_of("relay")
        for record in event["Records"]
    ]


async def test_a_scheduled_sweepers_outbox_write_reaches_the_relay_through_the_stream(
    dynamodb_endpoint: str,
) -> None:
    # Given a table whose stream feeds a relay through the outbox filter, and a scheduled sweeper
    make_client: Callable[..., Any] = boto3.client
    dynamodb = make_client(
        "dynamodb",
        endpoint_url=dynamodb_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    table = f"outbox-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    written: list[str] = []

    async def sweeper(payload: bytes) -> InvokeResult:
        event_id = f"evt-{uuid.uuid4().hex[:8]}"
        item = {"pk": {"S": event_id}, "kind": {"S": "outbox"}}
        await asyncio.to_thread(dynamodb.put_item, TableName=table, Item=item)
        written.append(event_id)  # only once committed: stop() may cancel a write still queued
        return ACCEPTED

    async def relay(payload: bytes) -> InvokeResult:
        return InvokeResult(status=200, payload=b'{"batchItemFailures": []}')

    functions = Functions({"sweeper": sweeper, "relay": relay})
    outbox = {"dynamodb": {"NewImage": {"kind": {"S": ["outbox"]}}}, "eventName": ["INSERT"]}
    poller = StreamPoller(
        StreamMappingSpec(
            "RelayMapping", "relay", table, filter_patterns=(outbox,), report_batch_item_failures=True
        ),
        functions,
        dynamodb_endpoint=dynamodb_endpoint,
    )
    scheduler = Scheduler([schedule("sweeper", "rate(1 minute)")], functions, time_scale=TIME_SCALE)
    await poller.start()
    await scheduler.start()
    try:
        # When the schedule fires a few times
        await eventually(lambda: len(written) >= 3)
        await scheduler.stop()
        # Then every outbox item the sweeper wrote reached the relay, in order
        # (a write that stop() interrupted may still land after them, unrecorded)
        await eventually(lambda: relayed(functions)[: len(written)] == written)
    finally:
        await scheduler.stop()
        await poller.stop()

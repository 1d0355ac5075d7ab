"""EventBridge schedule expressions: rate and cron parsing, next fire times in UTC, and clear rejections."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from localcloud.schedules import (
    CronExpression,
    RateExpression,
    ScheduleDisabledError,
    ScheduleExpressionError,
    Scheduler,
    parse_schedule_expression,
    scheduled_event,
)
from localcloud.spec import InvokeResult, ScheduleSpec

pytestmark = pytest.mark.unit

# Saturday 28 November 2026, 02:07:30 UTC
NOW = datetime(2026, 11, 28, 2, 7, 30, tzinfo=UTC)


def _cron(expression: str) -> CronExpression:
    parsed = parse_schedule_expression(expression)
    assert isinstance(parsed, CronExpression)
    return parsed


def _next_fires(expression: str, count: int, after: datetime = NOW) -> list[datetime]:
    cron, fires = _cron(expression), []
    for _ in range(count):
        nxt = cron.next_after(after)
        assert nxt is not None
        fires.append(nxt)
        after = nxt
    return fires


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "interval"),
    [
        ("rate(1 minute)", timedelta(minutes=1)),
        ("rate(5 minutes)", timedelta(minutes=5)),
        ("rate(1 hour)", timedelta(hours=1)),
        ("rate(12 hours)", timedelta(hours=12)),
        ("rate(1 day)", timedelta(days=1)),
        ("rate(7 days)", timedelta(days=7)),
    ],
)
def test_rate_expression_gives_its_interval(expression: str, interval: timedelta) -> None:
    assert parse_schedule_expression(expression) == RateExpression(expression, interval)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("cron(0 10 * * ? *)", ["2026-11-28 10:00", "2026-11-29 10:00", "2026-11-30 10:00"]),
        ("cron(15 12 * * ? *)", ["2026-11-28 12:15", "2026-11-29 12:15", "2026-11-30 12:15"]),
        ("cron(0/15 * * * ? *)", ["2026-11-28 02:15", "2026-11-28 02:30", "2026-11-28 02:45"]),
        ("cron(1/10 * * * ? *)", ["2026-11-28 02:11", "2026-11-28 02:21", "2026-11-28 02:31"]),
        ("cron(*/20 3 * * ? *)", ["2026-11-28 03:00", "2026-11-28 03:20", "2026-11-28 03:40"]),
        ("cron(5,35 14 * * ? *)", ["2026-11-28 14:05", "2026-11-28 14:35", "2026-11-29 14:05"]),
        ("cron(0 18 ? * MON-FRI *)", ["2026-11-30 18:00", "2026-12-01 18:00", "2026-12-02 18:00"]),
        ("cron(0 18 ? * 2-6 *)", ["2026-11-30 18:00", "2026-12-01 18:00", "2026-12-02 18:00"]),
        ("cron(0 8 1 * ? *)", ["2026-12-01 08:00", "2027-01-01 08:00", "2027-02-01 08:00"]),
        ("cron(0 0 1 JAN,JUL ? *)", ["2027-01-01 00:00", "2027-07-01 00:00", "2028-01-01 00:00"]),
        # an hour range that wraps past midnight (AWS's own example)
        ("cron(0/30 20-2 ? * MON-FRI *)", ["2026-11-30 00:00", "2026-11-30 00:30", "2026-11-30 01:00"]),
        ("cron(0 12 ? * SAT-SUN *)", ["2026-11-28 12:00", "2026-11-29 12:00", "2026-12-05 12:00"]),
        ("cron(0 0 29 2 ? *)", ["2028-02-29 00:00", "2032-02-29 00:00", "2036-02-29 00:00"]),
        ("cron(0 9 1 1 ? 2027-2028)", ["2027-01-01 09:00", "2028-01-01 09:00"]),
        # L, W and #
        ("cron(0 0 L * ? *)", ["2026-11-30 00:00", "2026-12-31 00:00", "2027-01-31 00:00"]),
        ("cron(0 0 LW * ? *)", ["2026-11-30 00:00", "2026-12-31 00:00", "2027-01-29 00:00"]),
        ("cron(0 0 1W * ? *)", ["2026-12-01 00:00", "2027-01-01 00:00", "2027-02-01 00:00"]),
        ("cron(0 0 15W * ? *)", ["2026-12-15 00:00", "2027-01-15 00:00", "2027-02-15 00:00"]),
        ("cron(15 10 ? * 6L *)", ["2026-12-25 10:15", "2027-01-29 10:15", "2027-02-26 10:15"]),
        ("cron(0 9 ? * 3#2 *)", ["2026-12-08 09:00", "2027-01-12 09:00", "2027-02-09 09:00"]),
        ("cron(0 9 ? * L *)", ["2026-11-28 09:00", "2026-12-05 09:00", "2026-12-12 09:00"]),
    ],
)
def test_cron_next_fire_times_are_computed_in_utc(expression: str, expected: list[str]) -> None:
    assert _next_fires(expression, len(expected)) == [_at(text) for text in expected]


def test_cron_next_fire_is_strictly_after_the_given_moment() -> None:
    on_the_minute = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    assert _cron("cron(0 10 * * ? *)").next_after(on_the_minute) == _at("2026-11-29 10:00")


def test_cron_next_fire_treats_naive_times_as_utc() -> None:
    assert _cron("cron(0 10 * * ? *)").next_after(datetime(2026, 11, 28, 9, 59)) == _at("2026-11-28 10:00")


def test_cron_with_no_fire_time_left_returns_none() -> None:
    assert _cron("cron(15 10 ? * 6L 2019-2022)").next_after(NOW) is None
    assert _cron("cron(0 0 30 2 ? *)").next_after(NOW) is None  # there is no 30 February


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("rate(1 minutes)", "singular unit"),
        ("rate(5 minute)", "plural unit"),
        ("rate(0 minutes)", "positive"),
        ("rate(-5 minutes)", "rate"),
        ("rate(1.5 hours)", "rate"),
        ("rate(2 weeks)", "minute"),
        ("rate(5)", "rate"),
        ("every 5 minutes", "rate(value unit) or cron"),
        ("cron(0 10 * *)", "six fields"),
        ("cron(0 10 * * ? * *)", "six fields"),
        ("cron(0 10 * * * *)", "exactly one of day-of-month and day-of-week"),
        ("cron(0 10 ? * ? *)", "exactly one of day-of-month and day-of-week"),
        ("cron(60 * * * ? *)", "minutes value 60 is outside 0-59"),
        ("cron(0 24 * * ? *)", "hours value 24"),
        ("cron(0 0 32 * ? *)", "day-of-month value 32"),
        ("cron(0 0 ? 13 * *)", "month value 13"),
        ("cron(0 0 ? FOO * *)", "month value 'FOO'"),
        ("cron(0 0 ? * 8 *)", "day-of-week value 8"),
        ("cron(0 0 1 * ? 1969)", "year value 1969"),
        ("cron(0 0 1 * ? 2030-2025)", "runs backwards"),
        ("cron(0/0 * * * ? *)", "step"),
        ("cron(0 0 1,L * ? *)", "stand alone"),
        ("cron(0 0 ? * 3#1,6#3 *)", "alone"),
        ("cron(0 0 ? * 3#6 *)", "1-5"),
        ("cron(0 L * * ? *)", "L, W and # belong to the day fields"),
        ("cron(0 0 ? * 2W *)", "day-of-week value '2W'"),
    ],
)
def test_bad_expression_is_rejected_with_a_clear_reason(expression: str, reason: str) -> None:
    with pytest.raises(
        ScheduleExpressionError, match=reason.replace("(", r"\(").replace(")", r"\)")
    ) as caught:
        parse_schedule_expression(expression)
    assert expression in str(caught.value)  # the message quotes what was wrong


class RecordingFunction:
    """A fake Invoker that records each invocation and answers like an Event invoke."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, str]] = []

    async def invoke(
        self,
        function: str,
        payload: bytes,
        *,
        invocation_type: str = "RequestResponse",
        log_type: str = "None",
    ) -> InvokeResult:
        self.calls.append((function, payload, invocation_type))
        return InvokeResult(status=202, payload=b"")


def _spec(name: str, expression: str, *, input_: str | None = None, enabled: bool = True) -> ScheduleSpec:
    return ScheduleSpec(
        logical_id=f"{name}Rule",
        name=name,
        expression=expression,
        function_name=f"{name}-fn",
        input=input_,
        enabled=enabled,
    )


def test_scheduler_names_the_schedule_with_a_bad_expression() -> None:
    with pytest.raises(ScheduleExpressionError, match="schedule hold-sweeper"):
        Scheduler([_spec("hold-sweeper", "rate(5 minute)")], RecordingFunction())


def test_scheduler_rejects_a_time_scale_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="time_scale"):
        Scheduler([], RecordingFunction(), time_scale=0)


async def test_fire_now_sends_the_scheduled_event_as_an_event_invocation() -> None:
    # Given a schedule without a constant Input
    function = RecordingFunction()
    scheduler = Scheduler([_spec("hold-sweeper", "rate(5 minutes)")], function, clock=lambda: NOW)
    # When it is fired on demand
    result = await scheduler.fire_now("hold-sweeper")
    # Then the function got EventBridge's scheduled event, asynchronously
    assert result.status == 202
    ((name, payload, invocation_type),) = function.calls
    event: dict[str, Any] = json.loads(payload)
    assert (name, invocation_type) == ("hold-sweeper-fn", "Event")
    assert event == {
        "version": "0",
        "id": event["id"],
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": "2026-11-28T02:07:30Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:000000000000:rule/hold-sweeper"],
        "detail": {},
    }
    assert len(event["id"]) == 36
    assert scheduler.stats()["hold-sweeper"]["fired"] == 1


async def test_fire_now_sends_a_constant_input_verbatim_and_finds_schedules_by_logical_id() -> None:
    function = RecordingFunction()
    constant = '{"sweep": "outbox", "older_than_s": 60}'
    scheduler = Scheduler([_spec("outbox-sweeper", "cron(0/5 * * * ? *)", input_=constant)], function)
    await scheduler.fire_now("outbox-sweeperRule")
    assert function.calls[0][1] == constant.encode()


async def test_fire_now_refuses_a_disabled_schedule() -> None:
    function = RecordingFunction()
    scheduler = Scheduler([_spec("paused", "rate(1 minute)", enabled=False)], function)
    with pytest.raises(ScheduleDisabledError, match="paused is disabled"):
        await scheduler.fire_now("paused")
    assert function.calls == []


async def test_fire_now_names_the_known_schedules_when_asked_for_an_unknown_one() -> None:
    scheduler = Scheduler([_spec("a-schedule", "rate(1 minute)")], RecordingFunction())
    with pytest.raises(LookupError, match="a-schedule"):
        await scheduler.fire_now("nope")


def test_scheduled_event_time_is_utc_to_the_second() -> None:
    local = datetime(2026, 11, 28, 7, 37, 30, 999_000).astimezone()  # any zone
    assert scheduled_event("r", local)["time"] == local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

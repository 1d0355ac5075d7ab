"""EventBridge schedules for the local cloud: rate() and cron() expressions that invoke a function."""

from __future__ import annotations

import asyncio
import calendar
import json
import logging
import math
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypedDict

from localcloud.spec import ACCOUNT_ID, REGION, Invoker, InvokeResult, ScheduleSpec

__all__ = [
    "CronExpression",
    "RateExpression",
    "ScheduleDisabledError",
    "ScheduleExpressionError",
    "ScheduleStats",
    "Scheduler",
    "parse_schedule_expression",
    "rule_arn",
    "scheduled_event",
]

log = logging.getLogger(__name__)

_RATE = re.compile(r"rate\(\s*(\d+)\s+([a-z]+)\s*\)")
_CRON = re.compile(r"cron\((.*)\)")
_RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}
# AWS numbers the days of the week 1 (Sunday) to 7 (Saturday).
_WEEKDAYS = {name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}
_FIRST_YEAR, _LAST_YEAR = 1970, 2199
# A sleep never lasts longer than this, so a cron schedule notices the wall clock moving (suspend, NTP).
_MAX_SLEEP_S = 30.0


class ScheduleExpressionError(ValueError):
    """A schedule expression AWS would reject; the message says which part and why."""


class ScheduleDisabledError(RuntimeError):
    """fire_now() was asked to fire a disabled schedule; disabled schedules never fire."""


@dataclass(frozen=True)
class RateExpression:
    """`rate(value unit)`: fires every `interval`, counted from when the schedule starts."""

    text: str
    interval: timedelta


@dataclass(frozen=True)
class CronExpression:
    """`cron(minutes hours day-of-month month day-of-week year)`, evaluated in UTC with minute precision."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    years: frozenset[int]
    day_matches: Callable[[date], bool]  # day-of-month or day-of-week, whichever is not "?"

    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after `moment` (UTC), or None when the expression has no more."""
        start = _as_utc(moment).replace(second=0, microsecond=0) + timedelta(minutes=1)
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        for year in sorted(y for y in self.years if y >= start.year):
            for month in sorted(self.months):
                if (year, month) < (start.year, start.month):
                    continue
                first_day = start.day if (year, month) == (start.year, start.month) else 1
                for day in range(first_day, calendar.monthrange(year, month)[1] + 1):
                    if not self.day_matches(date(year, month, day)):
                        continue
                    for hour in hours:
                        for minute in minutes:
                            candidate = datetime(year, month, day, hour, minute, tzinfo=UTC)
                            if candidate >= start:
                                return candidate
        return None


def parse_schedule_expression(expression: str) -> RateExpression | CronExpression:
    """Parse `rate(...)` or `cron(...)` as EventBridge accepts them, else raise ScheduleExpressionError."""
    text = expression.strip()
    if text.startswith("rate("):
        return _parse_rate(text)
    if text.startswith("cron("):
        return _parse_cron(text)
    raise ScheduleExpressionError(
        f"{expression!r}: a schedule expression is rate(value unit) or cron(six fields)"
    )


def rule_arn(name: str) -> str:
    return f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{name}"


def scheduled_event(rule_name: str, when: datetime) -> dict[str, Any]:
    """The event EventBridge sends a target of a scheduled rule that has no constant Input."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": _as_utc(when).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [rule_arn(rule_name)],
        "detail": {},
    }


class ScheduleStats(TypedDict):
    """One schedule in `stats()`: JSON-ready, times as ISO 8601 UTC."""

    function: str
    expression: str
    enabled: bool
    fired: int  # invocations attempted
    failures: int  # invocations the Lambda runtime refused or that raised
    last_fired_at: str | None
    next_fire_at: str | None  # None when stopped, disabled or exhausted


@dataclass
class _Counters:
    fired: int = 0
    failures: int = 0
    last_fired_at: datetime | None = None
    next_fire_at: datetime | None = None


@dataclass
class _Entry:
    spec: ScheduleSpec
    expression: RateExpression | CronExpression
    stats: _Counters
    task: asyncio.Task[None] | None = None


class Scheduler:
    """Fires each enabled ScheduleSpec's function with invocation type Event, as EventBridge does.

    `time_scale` divides rate intervals, so `rate(1 minute)` with `time_scale=60` fires every second (for
    tests and demos); cron expressions follow the UTC wall clock and ignore it. `clock` supplies "now" for
    cron and for the events' `time` (tests pass a fixed clock).
    """

    def __init__(
        self,
        schedules: Sequence[ScheduleSpec],
        invoker: Invoker,
        *,
        time_scale: float = 1.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not (time_scale > 0 and math.isfinite(time_scale)):
            raise ValueError(f"time_scale must be a positive number, got {time_scale}")
        self._invoker = invoker
        self._time_scale = time_scale
        self._clock = clock or (lambda: datetime.now(UTC))
        self._entries: dict[str, _Entry] = {}
        for spec in schedules:
            if spec.name in self._entries:
                raise ValueError(f"two schedules are named {spec.name}")
            try:
                expression = parse_schedule_expression(spec.expression)
            except ScheduleExpressionError as exc:
                raise ScheduleExpressionError(f"schedule {spec.name} ({spec.logical_id}): {exc}") from exc
            self._entries[spec.name] = _Entry(spec, expression, _Counters())

    @property
    def running(self) -> bool:
        return any(entry.task is not None and not entry.task.done() for entry in self._entries.values())

    async def start(self) -> None:
        """Start a timer per enabled schedule; disabled ones are parsed (so errors show) but never fire."""
        for entry in self._entries.values():
            if entry.task is not None:
                continue
            if not entry.spec.enabled:
                log.info("schedule %s is disabled: it will not fire", entry.spec.name)
                continue
            entry.task = asyncio.create_task(self._run(entry), name=f"schedule-{entry.spec.name}")

    async def stop(self) -> None:
        """Cancel every timer; an invocation being sent is abandoned (Event invocations return at once)."""
        tasks = [entry.task for entry in self._entries.values() if entry.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for entry in self._entries.values():
            entry.task = None
            entry.stats.next_fire_at = None

    async def fire_now(self, name: str) -> InvokeResult:
        """Fire a schedule (by name or logical id) at once, as its timer would; errors propagate."""
        entry = self._entry(name)
        if not entry.spec.enabled:
            raise ScheduleDisabledError(
                f"schedule {entry.spec.name} is disabled, and disabled schedules never fire"
            )
        return await self._fire(entry, self._clock())

    def stats(self) -> dict[str, ScheduleStats]:
        """Per schedule name: what it has done since the scheduler was created, and when it fires next."""
        return {
            name: ScheduleStats(
                function=entry.spec.function_name,
                expression=entry.spec.expression,
                enabled=entry.spec.enabled,
                fired=entry.stats.fired,
                failures=entry.stats.failures,
                last_fired_at=_iso(entry.stats.last_fired_at),
                next_fire_at=_iso(entry.stats.next_fire_at),
            )
            for name, entry in self._entries.items()
        }

    def _entry(self, name: str) -> _Entry:
        for entry in self._entries.values():
            if name in (entry.spec.name, entry.spec.logical_id):
                return entry
        raise LookupError(f"no schedule named {name!r}; the schedules are {sorted(self._entries)}")

    async def _run(self, entry: _Entry) -> None:
        if isinstance(entry.expression, RateExpression):
            await self._run_rate(entry, entry.expression)
        else:
            await self._run_cron(entry, entry.expression)

    async def _run_rate(self, entry: _Entry, rate: RateExpression) -> None:
        loop = asyncio.get_running_loop()
        period = rate.interval.total_seconds() / self._time_scale
        origin, tick = loop.time(), 1
        while True:
            due = origin + tick * period
            entry.stats.next_fire_at = self._clock() + timedelta(seconds=max(0.0, due - loop.time()))
            await asyncio.sleep(max(0.0, due - loop.time()))
            await self._fire_logged(entry, self._clock())
            # EventBridge does not catch up on fires it missed: the next one is the next tick still ahead.
            tick = max(tick + 1, math.floor((loop.time() - origin) / period) + 1)

    async def _run_cron(self, entry: _Entry, cron: CronExpression) -> None:
        due = cron.next_after(self._clock())
        while due is not None:
            entry.stats.next_fire_at = due
            left = (due - self._clock()).total_seconds()
            if left > 0:
                await asyncio.sleep(min(left, _MAX_SLEEP_S))
                continue  # look again: the wall clock may have moved while asleep
            await self._fire_logged(entry, due)
            # Fires missed while the clock jumped ahead are skipped, as EventBridge does not catch up.
            due = cron.next_after(max(due, self._clock()))
        entry.stats.next_fire_at = None
        log.info("schedule %s (%s) has no fire times left", entry.spec.name, cron.text)

    async def _fire_logged(self, entry: _Entry, when: datetime) -> None:
        try:
            await self._fire(entry, when)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a timer keeps running whatever one invocation does
            log.warning("schedule %s could not invoke %s: %r", entry.spec.name, entry.spec.function_name, exc)

    async def _fire(self, entry: _Entry, when: datetime) -> InvokeResult:
        spec = entry.spec
        if spec.input is not None:
            payload = spec.input.encode()  # a constant Input goes to the target verbatim
        else:
            payload = json.dumps(scheduled_event(spec.name, when)).encode()
        entry.stats.fired += 1
        entry.stats.last_fired_at = _as_utc(when)
        try:
            result = await self._invoker.invoke(spec.function_name, payload, invocation_type="Event")
        except Exception:
            entry.stats.failures += 1
            raise
        if result.status != 202 or result.function_error:
            entry.stats.failures += 1
            log.warning(
                "schedule %s: %s answered HTTP %d %s",
                spec.name,
                spec.function_name,
                result.status,
                result.function_error or "",
            )
        return result


def _parse_rate(text: str) -> RateExpression:
    match = _RATE.fullmatch(text)
    if not match:
        raise ScheduleExpressionError(f"{text!r}: a rate is rate(value unit), e.g. rate(5 minutes)")
    value, unit = int(match.group(1)), match.group(2)
    singular = unit.removesuffix("s")
    if singular not in _RATE_UNITS:
        raise ScheduleExpressionError(
            f"{text!r}: the unit must be minute(s), hour(s) or day(s), not {unit!r}"
        )
    if value < 1:
        raise ScheduleExpressionError(f"{text!r}: the value must be a positive whole number")
    if value == 1 and unit != singular:
        raise ScheduleExpressionError(f"{text!r}: a value of 1 takes the singular unit: rate(1 {singular})")
    if value > 1 and unit == singular:
        raise ScheduleExpressionError(
            f"{text!r}: a value above 1 takes the plural unit: rate({value} {unit}s)"
        )
    return RateExpression(text, timedelta(seconds=value * _RATE_UNITS[singular]))


def _parse_cron(text: str) -> CronExpression:
    match = _CRON.fullmatch(text)
    fields = match.group(1).split() if match else []
    if len(fields) != 6:
        raise ScheduleExpressionError(
            f"{text!r}: cron takes six fields: minutes hours day-of-month month day-of-week year"
        )
    minute_f, hour_f, dom_f, month_f, dow_f, year_f = fields
    if (dom_f == "?") == (dow_f == "?"):
        raise ScheduleExpressionError(
            f"{text!r}: exactly one of day-of-month and day-of-week must be ?, "
            "e.g. cron(0 10 * * ? *) or cron(0 18 ? * MON-FRI *)"
        )
    day_matches = _day_of_week(text, dow_f) if dom_f == "?" else _day_of_month(text, dom_f)
    return CronExpression(
        text=text,
        minutes=_field(text, "minutes", minute_f, 0, 59),
        hours=_field(text, "hours", hour_f, 0, 23),
        months=_field(text, "month", month_f, 1, 12, _MONTHS),
        years=_field(text, "year", year_f, _FIRST_YEAR, _LAST_YEAR, wrap=False),
        day_matches=day_matches,
    )


def _field(
    text: str,
    name: str,
    spec: str,
    low: int,
    high: int,
    names: dict[str, int] | None = None,
    *,
    wrap: bool = True,
) -> frozenset[int]:
    """Values of one numeric field: *, n, a-b (wrapping past the top, e.g. hours 22-2), lists, and /steps."""
    values: set[int] = set()
    for item in spec.split(","):
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ScheduleExpressionError(
                    f"{text!r}: {name} step {step_text!r} must be a positive number"
                )
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            start_text, _, end_text = base.partition("-")
            first = _value(text, name, start_text, low, high, names)
            last = _value(text, name, end_text, low, high, names)
        else:
            first = _value(text, name, base, low, high, names)
            last = high if step_text else first
        if first <= last:
            span = list(range(first, last + 1))
        elif wrap:
            span = [*range(first, high + 1), *range(low, last + 1)]
        else:
            raise ScheduleExpressionError(f"{text!r}: {name} range {base!r} runs backwards")
        values.update(span[::step])
    return frozenset(values)


def _value(text: str, name: str, token: str, low: int, high: int, names: dict[str, int] | None) -> int:
    upper = token.upper()
    if names and upper in names:
        return names[upper]
    if not token.isdigit():
        hint = " (L, W and # belong to the day fields)" if any(c in token for c in "LW#") else ""
        raise ScheduleExpressionError(f"{text!r}: {name} value {token!r} is not understood{hint}")
    number = int(token)
    if not low <= number <= high:
        raise ScheduleExpressionError(f"{text!r}: {name} value {number} is outside {low}-{high}")
    return number


def _day_of_month(text: str, spec: str) -> Callable[[date], bool]:
    """Day-of-month: the numeric forms, L (last day), LW (last weekday) or nW (weekday nearest day n)."""
    if spec == "L":
        return lambda day: day.day == _last_day(day)
    if spec == "LW":
        return lambda day: day == _nearest_weekday(day.year, day.month, _last_day(day))
    if spec.endswith("W"):
        target = _value(text, "day-of-month", spec[:-1], 1, 31, None)
        return lambda day: day == _nearest_weekday(day.year, day.month, target)
    if "L" in spec or "W" in spec:
        raise ScheduleExpressionError(f"{text!r}: day-of-month {spec!r}: L, LW and nW stand alone")
    days = _field(text, "day-of-month", spec, 1, 31)
    return lambda day: day.day in days


def _day_of_week(text: str, spec: str) -> Callable[[date], bool]:
    """Day-of-week: numeric forms (1 = SUN), L (Saturday), nL (last n-day of the month), n#k (k-th n-day)."""
    if spec == "L":
        return lambda day: _aws_weekday(day) == 7
    if "#" in spec:
        weekday_text, _, nth_text = spec.partition("#")
        weekday = _value(text, "day-of-week", weekday_text, 1, 7, _WEEKDAYS)
        if not nth_text.isdigit() or not 1 <= int(nth_text) <= 5:
            raise ScheduleExpressionError(f"{text!r}: day-of-week {spec!r}: the n in d#n must be 1-5, alone")
        nth = int(nth_text)
        return lambda day: _aws_weekday(day) == weekday and (day.day - 1) // 7 + 1 == nth
    if spec.endswith("L"):
        weekday = _value(text, "day-of-week", spec[:-1], 1, 7, _WEEKDAYS)
        return lambda day: _aws_weekday(day) == weekday and day.day + 7 > _last_day(day)
    weekdays = _field(text, "day-of-week", spec, 1, 7, _WEEKDAYS)
    return lambda day: _aws_weekday(day) in weekdays


def _aws_weekday(day: date) -> int:
    return day.isoweekday() % 7 + 1  # Monday is 1 in ISO, 2 in AWS


def _last_day(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def _nearest_weekday(year: int, month: int, target: int) -> date | None:
    """The Monday-Friday nearest to day `target`, never leaving the month (Quartz's W rule)."""
    last = calendar.monthrange(year, month)[1]
    if target > last:
        return None
    day = date(year, month, target)
    if day.weekday() == 5:  # Saturday: the Friday before, or the Monday after when that leaves the month
        return day - timedelta(days=1) if target > 1 else day + timedelta(days=2)
    if day.weekday() == 6:  # Sunday: the Monday after, or the Friday before when that leaves the month
        return day + timedelta(days=1) if target < last else day - timedelta(days=2)
    return day


def _iso(moment: datetime | None) -> str | None:
    return (
        None if moment is None else _as_utc(moment).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

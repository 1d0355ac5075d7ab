"""Shipping Lambda logs: stream names, PutLogEvents batches, a shipper that survives the service failing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from localcloud.logs import (
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    LogEvent,
    LogShipper,
    batches,
    cloudwatch_message,
    log_stream_name,
)

pytestmark = pytest.mark.unit


class ServiceError(Exception):
    """What botocore's ClientError looks like to the shipper: an error code in .response."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code}}


class FakeLogs:
    """A CloudWatch Logs client that records what it is sent."""

    def __init__(self, *, existing_group: bool = False, down: bool = False) -> None:
        self.groups: set[str] = {"/aws/lambda/pay"} if existing_group else set()
        self.streams: set[tuple[str, str]] = set()
        self.events: list[tuple[str, str, str]] = []
        self.down = down

    def create_log_group(self, logGroupName: str) -> None:
        if logGroupName in self.groups:
            raise ServiceError("ResourceAlreadyExistsException")
        self.groups.add(logGroupName)

    def create_log_stream(self, logGroupName: str, logStreamName: str) -> None:
        self.streams.add((logGroupName, logStreamName))

    def put_log_events(self, logGroupName: str, logStreamName: str, logEvents: list[dict[str, Any]]) -> None:
        if self.down:
            raise ConnectionRefusedError("logs is down")
        if (logGroupName, logStreamName) not in self.streams:
            raise ServiceError("ResourceNotFoundException")
        self.events += [(logGroupName, logStreamName, e["message"]) for e in logEvents]


def event(message: str, ts: int = 1) -> LogEvent:
    return LogEvent("/aws/lambda/pay", "s", "pay", ts, message)


def test_a_stream_is_named_like_aws_date_latest_and_32_hex_digits() -> None:
    assert re.fullmatch(r"2025/01/31/\[\$LATEST\][0-9a-f]{32}", log_stream_name(1738281600.0))


def test_a_message_keeps_its_newline_and_is_cut_to_the_event_limit() -> None:
    assert cloudwatch_message("") == "\n"
    assert len(cloudwatch_message("x" * 300_000).encode()) == MAX_EVENT_BYTES


def test_batches_respect_the_event_count_limit_and_time_order() -> None:
    events = [event(f"m{i}", ts=MAX_BATCH_EVENTS + 10 - i) for i in range(MAX_BATCH_EVENTS + 10)]

    split = list(batches(events))

    assert [len(b) for b in split] == [MAX_BATCH_EVENTS, 10]
    assert split[0][0].timestamp_ms == 1


def test_batches_respect_the_byte_limit() -> None:
    events = [event("x" * 200_000) for _ in range(6)]

    assert [len(b) for b in batches(events)] == [5, 1]


def test_lines_are_shipped_to_a_created_group_and_stream() -> None:
    # Given a group that already exists (its creation must not be an error)
    logs = FakeLogs(existing_group=True)
    shipper = LogShipper(lambda: logs, flush_interval_s=10)

    # When
    shipper.ship("/aws/lambda/pay", "s1", "START RequestId: r", function="pay")
    shipper.ship("/aws/lambda/pay", "s1", "hello", function="pay")
    assert shipper.flush(5)
    shipper.close()

    # Then
    assert logs.events == [
        ("/aws/lambda/pay", "s1", "START RequestId: r\n"),
        ("/aws/lambda/pay", "s1", "hello\n"),
    ]
    assert shipper.stats()["shipped"] == 2


def test_a_deleted_stream_is_created_again() -> None:
    logs = FakeLogs()
    shipper = LogShipper(lambda: logs, flush_interval_s=10)
    shipper.ship("/aws/lambda/pay", "s1", "one", function="pay")
    assert shipper.flush(5)

    logs.streams.clear()
    shipper.ship("/aws/lambda/pay", "s1", "two", function="pay")
    assert shipper.flush(5)
    shipper.close()

    assert [m for _, _, m in logs.events] == ["one\n", "two\n"]


def test_when_the_service_is_down_lines_are_dropped_and_counted_not_raised() -> None:
    logs = FakeLogs(down=True)
    shipper = LogShipper(lambda: logs, flush_interval_s=10, failure_backoff_s=0)

    shipper.ship("/aws/lambda/pay", "s1", "lost", function="pay")
    assert shipper.flush(5)

    logs.down = False
    shipper.ship("/aws/lambda/pay", "s1", "kept", function="pay")
    assert shipper.flush(5)
    shipper.close()

    assert shipper.stats()["dropped"] == 1
    assert [m for _, _, m in logs.events] == ["kept\n"]


def test_a_client_factory_that_fails_does_not_stop_the_shipper() -> None:
    def no_client() -> Any:
        raise RuntimeError("no credentials")

    shipper = LogShipper(no_client, flush_interval_s=10, failure_backoff_s=0)
    shipper.ship("/aws/lambda/pay", "s1", "line", function="pay")

    assert shipper.flush(5)
    shipper.close()
    assert shipper.stats()["dropped"] == 1


def test_each_function_also_gets_a_local_file_to_tail(tmp_path: Path) -> None:
    shipper = LogShipper(lambda: FakeLogs(), log_dir=tmp_path, flush_interval_s=10)

    shipper.ship("/aws/lambda/pay", "2025/01/01/[$LATEST]abcdef", "hello", function="pay")
    shipper.close()

    path = shipper.log_file("pay")
    assert path == tmp_path / "pay.log"
    assert re.fullmatch(r"\S+Z abcdef hello\n", path.read_text())


def test_lines_after_close_are_dropped() -> None:
    shipper = LogShipper(lambda: FakeLogs(), flush_interval_s=10)
    shipper.close()

    shipper.ship("/aws/lambda/pay", "s1", "late", function="pay")

    assert shipper.stats()["dropped"] == 1

"""Ships Lambda function logs to CloudWatch Logs from a background thread, and to a file per function."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

# PutLogEvents limits: 10,000 events and 1,048,576 bytes per call, each event counting its UTF-8 size + 26.
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD = 26
MAX_EVENT_BYTES = 256 * 1024 - EVENT_OVERHEAD


@dataclass(frozen=True, slots=True)
class LogEvent:
    group: str
    stream: str
    function: str
    timestamp_ms: int
    message: str  # one line, without its newline


def log_stream_name(now: float | None = None) -> str:
    """A new worker's stream, named like AWS's: "2025/01/31/[$LATEST]" + 32 hex digits."""
    day = time.strftime("%Y/%m/%d", time.gmtime(time.time() if now is None else now))
    return f"{day}/[$LATEST]{uuid.uuid4().hex}"


def cloudwatch_message(line: str) -> str:
    """The event AWS stores for one line: the line with its newline (so a blank line is not empty)."""
    data = line.encode("utf-8", "replace")
    if len(data) >= MAX_EVENT_BYTES:
        line = data[: MAX_EVENT_BYTES - 1].decode("utf-8", "ignore")
    return line + "\n"


def batches(events: Sequence[LogEvent]) -> Iterator[list[LogEvent]]:
    """Splits one stream's events, in time order, into PutLogEvents calls within the service's limits."""
    batch: list[LogEvent] = []
    size = 0
    for event in sorted(events, key=lambda e: e.timestamp_ms):
        event_size = len(cloudwatch_message(event.message).encode("utf-8", "replace")) + EVENT_OVERHEAD
        if batch and (len(batch) >= MAX_BATCH_EVENTS or size + event_size > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(event)
        size += event_size
    if batch:
        yield batch


def local_line(event: LogEvent) -> str:
    """A line of the per-function file: UTC time, the worker (end of its stream name), the message."""
    seconds, millis = divmod(event.timestamp_ms, 1000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{millis:03d}Z {event.stream[-6:]} {event.message}\n"


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


class LogShipper:
    """Collects log lines without blocking and ships them in batches every `flush_interval_s` and on close.

    `client_factory` returns a boto3 CloudWatch Logs client; it is called lazily, on the shipping thread. When
    the service is down, batches are dropped and counted (see `stats()`), never retried forever nor raised.
    """

    def __init__(
        self,
        client_factory: Callable[[], Any],
        *,
        log_dir: Path | None = None,
        flush_interval_s: float = 0.5,
        max_buffered: int = 100_000,
        close_timeout_s: float = 5.0,
        failure_backoff_s: float = 2.0,
        tap: Callable[[str, str, Sequence[LogEvent]], None] | None = None,
    ) -> None:
        self._client_factory = client_factory
        # Sees every shipped batch (group, stream, events) on the shipping thread: subscription filters.
        self.tap = tap
        self._client: Any = None
        self._log_dir = log_dir
        self._interval = flush_interval_s
        self._max_buffered = max_buffered
        self._close_timeout = close_timeout_s
        self._failure_backoff = failure_backoff_s
        self._queue: deque[LogEvent] = deque()
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._closing = False
        self._closed = False
        self._ready_streams: set[tuple[str, str]] = set()
        self._files: dict[str, IO[str]] = {}
        self._paused_until = 0.0
        self._failing = False
        self._enqueued = 0
        self._processed = 0
        self._shipped = 0
        self._dropped = 0
        self._file_errors = 0

    # ---- called on the event loop: must stay O(1) --------------------------------------------------------
    def ship(
        self, group: str, stream: str, line: str, *, function: str = "", timestamp_ms: int | None = None
    ) -> None:
        """Queues one log line of `function` for `group`/`stream`."""
        if self._closing or len(self._queue) >= self._max_buffered:
            self._dropped += 1
            return
        if timestamp_ms is None:
            timestamp_ms = int(time.time() * 1000)
        self._queue.append(LogEvent(group, stream, function, timestamp_ms, line))
        self._enqueued += 1
        if self._thread is None:
            self._start()

    def log_file(self, function: str) -> Path | None:
        """Where `function`'s lines are appended locally (for `tail -f`), if a log_dir was given."""
        if self._log_dir is None:
            return None
        return self._log_dir / (re.sub(r"[^A-Za-z0-9._-]", "_", function or "_unknown") + ".log")

    def stats(self) -> dict[str, int]:
        return {
            "queued": len(self._queue),
            "shipped": self._shipped,
            "dropped": self._dropped,
            "file_errors": self._file_errors,
        }

    # ---- blocking: tests, shutdown ------------------------------------------------------------------------
    def flush(self, timeout_s: float = 10.0) -> bool:
        """Waits until every line queued so far was shipped or dropped; False on timeout."""
        target = self._enqueued
        if self._thread is None:
            return self._processed >= target
        self._wake.set()
        with self._done:
            return self._done.wait_for(lambda: self._processed >= target or self._closed, timeout_s)

    def close(self) -> None:
        """Ships what is queued (bounded by close_timeout_s) and stops the thread; later lines are dropped."""
        self._closing = True
        thread = self._thread
        if thread is not None:
            self._wake.set()
            thread.join(self._close_timeout)
        if thread is None or not thread.is_alive():
            self._close_files()

    # ---- the shipping thread ------------------------------------------------------------------------------
    def _start(self) -> None:
        with self._thread_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lambda-log-shipper", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            closing = self._closing  # read before draining, so nothing queued before close() is left behind
            try:
                while self._queue:
                    self._drain()
            except Exception:  # a bug here must not stop log shipping for the rest of the session
                log.exception("the Lambda log shipper failed a batch")
            if closing:
                break
        with self._done:
            self._closed = True
            self._done.notify_all()

    def _drain(self) -> None:
        events: list[LogEvent] = []
        while self._queue and len(events) < MAX_BATCH_EVENTS:
            events.append(self._queue.popleft())
        try:
            self._write_files(events)
            by_stream: dict[tuple[str, str], list[LogEvent]] = {}
            for event in events:
                by_stream.setdefault((event.group, event.stream), []).append(event)
            for key, stream_events in by_stream.items():
                for batch in batches(stream_events):
                    self._put(key, batch)
                if self.tap is not None:
                    try:
                        self.tap(key[0], key[1], stream_events)
                    except Exception:  # a subscriber must never stop the logs themselves
                        log.exception("log subscription tap failed")
        finally:
            with self._done:
                self._processed += len(events)
                self._done.notify_all()

    def _write_files(self, events: Sequence[LogEvent]) -> None:
        if self._log_dir is None:
            return
        touched: set[str] = set()
        for event in events:
            try:
                fh = self._files.get(event.function)
                if fh is None:
                    path = self.log_file(event.function)
                    assert path is not None
                    path.parent.mkdir(parents=True, exist_ok=True)
                    fh = self._files[event.function] = path.open("a", encoding="utf-8")
                fh.write(local_line(event))
                touched.add(event.function)
            except OSError:
                self._file_errors += 1
        for function in touched:
            with contextlib.suppress(OSError):
                self._files[function].flush()

    def _close_files(self) -> None:
        for fh in self._files.values():
            with contextlib.suppress(OSError):
                fh.close()
        self._files.clear()

    def _put(self, key: tuple[str, str], events: list[LogEvent]) -> None:
        if time.monotonic() < self._paused_until:
            self._dropped += len(events)  # the service failed moments ago: don't stall on every batch
            return
        group, stream = key
        log_events = [{"timestamp": e.timestamp_ms, "message": cloudwatch_message(e.message)} for e in events]
        for attempt in (1, 2):
            try:
                client = self._logs_client()
                if key not in self._ready_streams:
                    self._create_stream(client, group, stream)
                    self._ready_streams.add(key)
                client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=log_events)
            except Exception as exc:
                self._ready_streams.discard(key)
                if attempt == 1 and _error_code(exc) == "ResourceNotFoundException":
                    continue  # the group or stream was deleted under us: create it again once
                self._dropped += len(events)
                self._paused_until = time.monotonic() + self._failure_backoff
                if not self._failing:
                    self._failing = True
                    log.warning("CloudWatch Logs is not reachable, dropping Lambda logs until it is: %r", exc)
                return
            self._shipped += len(events)
            if self._failing:
                self._failing = False
                log.info("CloudWatch Logs is reachable again")
            return

    def _logs_client(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    @staticmethod
    def _create_stream(client: Any, group: str, stream: str) -> None:
        for create, kwargs in (
            (client.create_log_group, {"logGroupName": group}),
            (client.create_log_stream, {"logGroupName": group, "logStreamName": stream}),
        ):
            try:
                create(**kwargs)
            except Exception as exc:
                if _error_code(exc) != "ResourceAlreadyExistsException":
                    raise

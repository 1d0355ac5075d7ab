"""DynamoDB Streams event source mappings: read a table's stream from DynamoDB Local and invoke a function."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypedDict, TypeVar

from localcloud.faults import FaultInjector
from localcloud.filtering import FilterPatternError, record_passes, validate_pattern
from localcloud.services import LocalCloudError
from localcloud.spec import (
    REGION,
    Invoker,
    InvokeResult,
    StreamMappingSpec,
    function_arn,
    function_name_from,
)
from localcloud.stored_state import write_atomic

__all__ = ["MAX_PAYLOAD_BYTES", "StreamClients", "StreamPoller", "StreamPollerStats", "boto3_client"]

log = logging.getLogger(__name__)

# Lambda's limit for a synchronous invocation payload; a batch stops growing before it would pass it.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
_GET_RECORDS_LIMIT = 1000  # the most DynamoDB Streams returns from one GetRecords
_DLQ_SEND_ATTEMPTS = 5
# DynamoDB Local rounds ApproximateCreationDateTime down to the minute; a record cannot be older than that.
_CREATION_ROUNDING_S = 60.0
_RECORD_OVERHEAD_BYTES = 2  # the comma and space between records in the payload

_T = TypeVar("_T")


class StreamPollerStats(TypedDict):
    """What `stats()` returns: JSON-ready, for the local cloud's status endpoint and operators."""

    mapping: str  # the mapping's logical id
    function: str
    table: str
    records_seen: int  # read from the stream, before filtering
    records_filtered_out: int  # dropped by the filter patterns, never sent
    records_delivered: int  # acknowledged by the function (whole batch, or before a reported failure)
    batches: int  # invocations made
    function_errors: int  # invocations that failed (function error, invoke error, or reported items)
    retries: int  # failed batches retried (bisected halves not included, as AWS counts)
    bisections: int  # failed batches split in two
    dlq_messages: int  # invocation records sent to the on-failure queue
    records_given_up: int  # records in batches that exhausted their retries
    iterator_age_ms: int  # age of the last record of the last delivered batch when it was acknowledged
    shards_active: int  # shards being read now
    shards_finished: int  # closed shards read to their end


@dataclass
class _Counters:
    records_seen: int = 0
    records_filtered_out: int = 0
    records_delivered: int = 0
    batches: int = 0
    function_errors: int = 0
    retries: int = 0
    bisections: int = 0
    dlq_messages: int = 0
    records_given_up: int = 0
    iterator_age_ms: int = 0
    shards_finished: int = 0


@dataclass
class _Record:
    event: dict[str, Any]  # the record exactly as the function receives it
    sequence_number: str
    created: float  # ApproximateCreationDateTime, epoch seconds
    read_at: float  # time.monotonic() when the poller first read it
    arrived: float  # best estimate of when it entered the stream, epoch seconds
    size: int  # bytes of its JSON in the payload


@dataclass
class _Shard:
    shard_id: str
    parent_id: str | None
    start: str  # iterator type when there is nothing read yet: LATEST or TRIM_HORIZON
    iterator: str | None = None
    last_read: str | None = None  # sequence number of the last record read, filtered or not
    # The checkpoint: every record up to this one is done (delivered, filtered out or given up); a restart
    # reads after it. None: nothing done yet (a restart reads from `start`).
    done_through: str | None = None
    ended: bool = False  # GetRecords gave no next iterator: closed and read to its end
    buffer: deque[_Record] = field(default_factory=deque)  # read, passed the filters, not yet acknowledged
    failures: int = 0  # failed invocations of the head batch that count against MaximumRetryAttempts
    invocations: int = 0  # invocations that included the head record (approximateInvokeCount)
    pending: list[int] = field(default_factory=list)  # sizes of bisected sub-batches still owed, head first
    errors: int = 0  # consecutive errors reading the shard, for back-off
    poked: asyncio.Event = field(default_factory=asyncio.Event)  # wake() or stop(): stop idling, read now


@dataclass(frozen=True)
class _Outcome:
    result: InvokeResult | None
    error: str | None  # None when the function returned normally


@dataclass(frozen=True)
class StreamClients:
    """The clients a poller reads and reports through: boto3's dynamodb, dynamodbstreams and sqs, or fakes."""

    dynamodb: Any
    streams: Any
    sqs: Any | None = None

    @classmethod
    def for_endpoints(
        cls, dynamodb_endpoint: str, sqs_endpoint: str | None = None, *, region: str = REGION
    ) -> StreamClients:
        return cls(
            dynamodb=boto3_client("dynamodb", dynamodb_endpoint, region),
            streams=boto3_client("dynamodbstreams", dynamodb_endpoint, region),
            sqs=boto3_client("sqs", sqs_endpoint, region) if sqs_endpoint else None,
        )


class StreamPoller:
    """One AWS::Lambda::EventSourceMapping on a DynamoDB stream, with Lambda's batching, filters and retries.

    Each shard is read by its own asyncio task (parents before children), one batch in flight per shard,
    records in stream order. Blocking boto3 calls run on the poller's own small thread pool. An idle shard
    polls every `idle_poll_s`, at once after `wake()`, and again immediately while records flow.
    `stop()` then `start()` resumes where it stopped. With a `checkpoint_file` the checkpoints also outlive
    the process, as an event source mapping's do on AWS: each shard's last done record (and the shards read
    to their end) is written there as it moves, and a new poller on the same stream reads after it, so a
    restart neither replays nor skips records; shards it does not know opened later and are read from their
    start.
    """

    def __init__(
        self,
        mapping: StreamMappingSpec,
        invoker: Invoker,
        *,
        dynamodb_endpoint: str | None = None,
        sqs_endpoint: str | None = None,
        region: str = REGION,
        clients: StreamClients | None = None,
        idle_poll_s: float = 0.05,
        retry_base_delay_s: float = 0.1,
        retry_max_delay_s: float = 5.0,
        shard_discovery_s: float = 1.0,
        stop_grace_s: float = 5.0,
        faults: FaultInjector | None = None,
        checkpoint_file: Path | None = None,
    ) -> None:
        """Reads through boto3 clients for `dynamodb_endpoint` (and `sqs_endpoint` for the on-failure queue),
        or through the given `clients` (fakes in tests). `region` is what records say in `awsRegion`.
        `faults` may ask for a batch to be delivered twice (the local cloud's fault plan)."""
        _check_mapping(mapping)
        if clients is None:
            if not dynamodb_endpoint:
                raise ValueError(f"{mapping.logical_id}: give dynamodb_endpoint (DynamoDB Local) or clients")
            clients = StreamClients.for_endpoints(
                dynamodb_endpoint, sqs_endpoint if mapping.on_failure_queue_arn else None, region=region
            )
        if mapping.on_failure_queue_arn and clients.sqs is None:
            raise ValueError(
                f"{mapping.logical_id}: an on-failure queue needs sqs_endpoint (moto, or the edge)"
            )
        self.mapping = mapping
        self._invoker = invoker
        self._faults = faults
        self._function = function_name_from(mapping.function_name)
        self._region = region
        self._patterns = mapping.filter_patterns
        self._idle_poll_s = idle_poll_s
        self._retry_base_delay_s = retry_base_delay_s
        self._retry_max_delay_s = retry_max_delay_s
        self._shard_discovery_s = shard_discovery_s
        self._stop_grace_s = stop_grace_s
        self._dynamodb = clients.dynamodb
        self._streams = clients.streams
        self._sqs = clients.sqs if mapping.on_failure_queue_arn else None
        self._queue_url: str | None = None
        self._stream_arn: str | None = None
        self._stats = _Counters()
        self._shards: dict[str, _Shard] = {}
        self._finished: set[str] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._discovery_task: asyncio.Task[None] | None = None
        self._discovery_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._started_once = False
        self._checkpoint_file = checkpoint_file
        self._restored: dict[str, dict[str, Any]] | None = None  # shard id -> saved checkpoint
        self._checkpoint_dirty = False
        self._checkpoint_saved_at = 0.0

    @property
    def stream_arn(self) -> str | None:
        """The stream being read (as DynamoDB Local names it), known once started."""
        return self._stream_arn

    @property
    def running(self) -> bool:
        return self._executor is not None

    def stats(self) -> StreamPollerStats:
        counters = self._stats
        return StreamPollerStats(
            mapping=self.mapping.logical_id,
            function=self.mapping.function_name,
            table=self.mapping.table_name,
            records_seen=counters.records_seen,
            records_filtered_out=counters.records_filtered_out,
            records_delivered=counters.records_delivered,
            batches=counters.batches,
            function_errors=counters.function_errors,
            retries=counters.retries,
            bisections=counters.bisections,
            dlq_messages=counters.dlq_messages,
            records_given_up=counters.records_given_up,
            iterator_age_ms=counters.iterator_age_ms,
            shards_active=len(self._tasks),
            shards_finished=counters.shards_finished,
        )

    async def start(self) -> None:
        """Begin polling; returns once the starting position is fixed, so later writes are delivered."""
        if self.running:
            return
        if not self.mapping.enabled:
            log.info("event source mapping %s is disabled: not polling", self.mapping.logical_id)
            return
        self._stopping = asyncio.Event()
        self._discovery_lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(
            max_workers=4, thread_name_prefix=f"stream-{self.mapping.logical_id}"
        )
        try:
            if self._stream_arn is None:
                self._stream_arn = await self._call(self._resolve_stream_arn)
            if not self._started_once:
                self._load_checkpoint()
            await self._discover(initial=not self._started_once)
        except BaseException:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
            raise
        self._started_once = True
        self._discovery_task = asyncio.create_task(
            self._discovery_loop(), name=f"stream-discovery-{self.mapping.logical_id}"
        )
        log.info(
            "event source mapping %s: %s -> %s from %s",
            self.mapping.logical_id,
            self._stream_arn,
            self.mapping.function_name,
            self.mapping.starting_position,
        )

    def wake(self) -> None:
        """A hint that the table may just have been written: idle shards read at once, not at the next poll.

        Call it from the event loop (the edge sees every DynamoDB write); without it, records still arrive
        within `idle_poll_s`.
        """
        for shard in self._shards.values():
            shard.poked.set()

    async def stop(self) -> None:
        """Stop polling: no new batch starts; one in flight gets `stop_grace_s` to finish or is abandoned."""
        if self._executor is None:
            return
        self._stopping.set()
        self.wake()
        tasks = [*self._tasks.values(), *([self._discovery_task] if self._discovery_task else [])]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self._stop_grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._discovery_task = None
        for shard in self._shards.values():
            # Unacknowledged records stay buffered; their bisection plan does not survive a restart.
            shard.pending.clear()
        self._save_checkpoint(force=True)
        # Threads finish their current call (bounded by the client timeouts) and exit.
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = None

    # -- checkpoints that outlive the process ---------------------------------------------------

    def _load_checkpoint(self) -> None:
        if self._checkpoint_file is None:
            return
        try:
            saved = json.loads(self._checkpoint_file.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise LocalCloudError(
                f"{self.mapping.logical_id}: the stream checkpoint {self._checkpoint_file} cannot be read "
                f"({exc}); `vaultpay local up --fresh` starts over"
            ) from exc
        if saved.get("stream_arn") != self._stream_arn:
            log.warning(
                "%s: the saved checkpoint is for stream %s, the table now has %s: reading from %s",
                self.mapping.logical_id,
                saved.get("stream_arn"),
                self._stream_arn,
                self.mapping.starting_position,
            )
            return
        self._restored = dict(saved.get("shards", {}))
        self._finished.update(saved.get("finished", []))

    def _mark_done(self, shard: _Shard, sequence_number: str | None) -> None:
        shard.done_through = sequence_number
        self._checkpoint_dirty = True
        self._save_checkpoint()

    def _save_checkpoint(self, *, force: bool = False) -> None:
        """Write the checkpoints (at most every 0.2 s while records flow; always when `force`)."""
        if self._checkpoint_file is None or self._stream_arn is None:
            return
        if not (self._checkpoint_dirty or force):
            return
        now = time.monotonic()
        if not force and now - self._checkpoint_saved_at < 0.2:
            return
        document = {
            "mapping": self.mapping.logical_id,
            "function": self.mapping.function_name,
            "stream_arn": self._stream_arn,
            "shards": {
                shard_id: {"done_through": shard.done_through, "start": shard.start}
                for shard_id, shard in self._shards.items()
            },
            "finished": sorted(self._finished),
        }
        self._checkpoint_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self._checkpoint_file, json.dumps(document))
        self._checkpoint_dirty, self._checkpoint_saved_at = False, now

    # -- shards ---------------------------------------------------------------------------------

    def _resolve_stream_arn(self) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        table = self.mapping.table_name
        try:
            description = self._dynamodb.describe_table(TableName=table)["Table"]
        except ClientError as exc:
            if _error_code(exc) == "ResourceNotFoundException":
                raise LocalCloudError(
                    f"{self.mapping.logical_id}: table {table} does not exist, so its stream cannot be read"
                ) from exc
            raise
        except BotoCoreError as exc:
            raise LocalCloudError(
                f"{self.mapping.logical_id}: DynamoDB Local is not reachable: {exc}"
            ) from exc
        spec = description.get("StreamSpecification") or {}
        arn = description.get("LatestStreamArn")
        if not spec.get("StreamEnabled") or not arn:
            raise LocalCloudError(
                f"{self.mapping.logical_id}: table {table} has no stream; give it a StreamSpecification "
                "(StreamViewType NEW_IMAGE or NEW_AND_OLD_IMAGES) in the template"
            )
        return str(arn)

    def _list_shards(self) -> list[dict[str, Any]]:
        shards: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            kwargs: dict[str, Any] = {"StreamArn": self._stream_arn}
            if after:
                kwargs["ExclusiveStartShardId"] = after
            description = self._streams.describe_stream(**kwargs)["StreamDescription"]
            shards.extend(description.get("Shards", []))
            after = description.get("LastEvaluatedShardId")
            if not after:
                return shards

    async def _discover(self, *, initial: bool) -> None:
        """Track shards the stream has opened since the last look, and start those whose parents are done."""
        async with self._discovery_lock:
            listed = await self._call(self._list_shards)
            restored = self._restored
            # A mapping that has checkpoints already started before: LATEST applied then, not now.
            latest = initial and restored is None and self.mapping.starting_position == "LATEST"
            for described in listed:
                shard_id = described["ShardId"]
                if shard_id in self._shards or shard_id in self._finished:
                    continue
                closed = "EndingSequenceNumber" in described.get("SequenceNumberRange", {})
                if latest and closed:
                    self._finished.add(shard_id)  # closed before the mapping existed: nothing LATEST in it
                    continue
                saved = (restored or {}).get(shard_id)
                if saved is not None:
                    # Known before the restart: after its checkpoint, or where it was pinned if nothing was
                    # done in it yet (a LATEST shard that saw no record).
                    start = str(saved.get("start") or "TRIM_HORIZON")
                    shard = _Shard(shard_id, described.get("ParentShardId"), start)
                    shard.last_read = shard.done_through = saved.get("done_through")
                    self._shards[shard_id] = shard
                    continue
                shard = _Shard(
                    shard_id, described.get("ParentShardId"), "LATEST" if latest else "TRIM_HORIZON"
                )
                if latest:
                    # Pin the position now, so whatever is written once start() returns is delivered.
                    shard.iterator = await self._call(self._get_iterator, shard)
                self._shards[shard_id] = shard
            self._launch_ready_shards()

    def _launch_ready_shards(self) -> None:
        if self._stopping.is_set():
            return
        for shard_id, shard in self._shards.items():
            if shard_id in self._tasks:
                continue
            if shard.parent_id and shard.parent_id in self._shards:
                continue  # the parent's records come first
            task = asyncio.create_task(
                self._run_shard(shard), name=f"stream-{self.mapping.logical_id}-{shard_id}"
            )
            self._tasks[shard_id] = task
            task.add_done_callback(partial(self._forget_task, shard_id))

    def _forget_task(self, shard_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(shard_id) is task:
            del self._tasks[shard_id]

    async def _discovery_loop(self) -> None:
        reported: str | None = None
        while not self._stopping.is_set():
            await self._pause(self._shard_discovery_s)
            if self._stopping.is_set():
                return
            try:
                await self._discover(initial=False)
                self._save_checkpoint()  # what the last 0.2 s left unsaved
                reported = None
            except Exception as exc:  # keep polling the shards we have; report a new problem once
                if str(exc) != reported:
                    log.warning("%s: cannot list the stream's shards: %s", self.mapping.logical_id, exc)
                    reported = str(exc)

    def _get_iterator(self, shard: _Shard) -> str:
        kwargs: dict[str, Any] = {"StreamArn": self._stream_arn, "ShardId": shard.shard_id}
        if shard.last_read is not None:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=shard.last_read)
        else:
            kwargs["ShardIteratorType"] = shard.start
        return str(self._streams.get_shard_iterator(**kwargs)["ShardIterator"])

    async def _run_shard(self, shard: _Shard) -> None:
        while not self._stopping.is_set():
            try:
                if shard.ended and not shard.buffer:
                    await self._finish_shard(shard)
                    return
                read_some = False
                if not shard.ended and len(shard.buffer) < self._batch_limit(shard):
                    read_some = await self._read(shard)
                if shard.buffer and self._batch_ready(shard):
                    if self._stopping.is_set():
                        return
                    await self._deliver(shard)
                    shard.errors = 0
                    continue
                shard.errors = 0
                if not read_some:
                    await self._idle(shard, self._idle_wait(shard))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                shard.errors += 1
                delay = self._backoff(shard.errors)
                log.warning(
                    "%s: polling shard %s failed (%s), trying again in %.1f s",
                    self.mapping.logical_id,
                    shard.shard_id,
                    exc,
                    delay,
                )
                await self._pause(delay)

    async def _finish_shard(self, shard: _Shard) -> None:
        self._shards.pop(shard.shard_id, None)
        self._finished.add(shard.shard_id)
        self._checkpoint_dirty = True
        self._save_checkpoint(force=True)
        self._stats.shards_finished += 1
        log.info("%s: shard %s is closed and fully processed", self.mapping.logical_id, shard.shard_id)
        self._launch_ready_shards()  # its children may be waiting already
        with contextlib.suppress(Exception):
            await self._discover(initial=False)  # or not listed yet

    async def _read(self, shard: _Shard) -> bool:
        """One GetRecords; True when the stream returned records (whether or not they passed the filters)."""
        from botocore.exceptions import ClientError

        shard.poked.clear()  # a write after this point pokes again, so the next idle wait ends at once
        try:
            if shard.iterator is None:
                shard.iterator = await self._call(self._get_iterator, shard)
            response = await self._call(
                self._streams.get_records, ShardIterator=shard.iterator, Limit=_GET_RECORDS_LIMIT
            )
        except ClientError as exc:
            code = _error_code(exc)
            if code == "ExpiredIteratorException" or (
                code == "ValidationException" and "Iterator" in str(exc)
            ):
                shard.iterator = None  # a fresh one continues after the last record read
                return False
            if code == "TrimmedDataAccessException":
                log.warning(
                    "%s: shard %s was trimmed past the checkpoint", self.mapping.logical_id, shard.shard_id
                )
                shard.iterator, shard.last_read, shard.start = None, None, "TRIM_HORIZON"
                shard.done_through = None
                return False
            if code == "ResourceNotFoundException":
                log.warning("%s: shard %s no longer exists", self.mapping.logical_id, shard.shard_id)
                shard.ended = True
                return False
            raise
        shard.iterator = response.get("NextShardIterator")
        if shard.iterator is None:
            shard.ended = True
        records = response.get("Records", [])
        now_mono, now_wall = time.monotonic(), time.time()
        for raw in records:
            event = self._lambda_record(raw)
            sequence_number = str(raw["dynamodb"]["SequenceNumber"])
            shard.last_read = sequence_number
            self._stats.records_seen += 1
            if not record_passes(self._patterns, event):
                self._stats.records_filtered_out += 1
                if not shard.buffer:  # nothing before it is owed: the checkpoint moves past it
                    self._mark_done(shard, sequence_number)
                continue
            created = float(event["dynamodb"].get("ApproximateCreationDateTime", now_wall))
            shard.buffer.append(
                _Record(
                    event=event,
                    sequence_number=sequence_number,
                    created=created,
                    read_at=now_mono,
                    arrived=min(now_wall, created + _CREATION_ROUNDING_S),
                    size=len(json.dumps(event)) + _RECORD_OVERHEAD_BYTES,
                )
            )
        return bool(records)

    def _lambda_record(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """A stream record in the shape Lambda gives the function (boto3 parsed dates and binary)."""
        change = raw["dynamodb"]
        body: dict[str, Any] = {}
        created = change.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            body["ApproximateCreationDateTime"] = created.timestamp()
        elif created is not None:
            body["ApproximateCreationDateTime"] = float(created)
        for key in ("Keys", "NewImage", "OldImage", "SequenceNumber", "SizeBytes", "StreamViewType"):
            if key in change:
                body[key] = _jsonable(change[key])
        record: dict[str, Any] = {
            "eventID": raw.get("eventID", ""),
            "eventName": raw.get("eventName", ""),
            "eventVersion": raw.get("eventVersion") or "1.1",
            "eventSource": "aws:dynamodb",
            # DynamoDB Local says "ddblocal"; functions see the region the local cloud pretends to be.
            "awsRegion": self._region,
            "dynamodb": body,
            "eventSourceARN": self._stream_arn,
        }
        if "userIdentity" in raw:  # TTL deletions
            record["userIdentity"] = _jsonable(raw["userIdentity"])
        return record

    # -- batches --------------------------------------------------------------------------------

    def _batch_limit(self, shard: _Shard) -> int:
        return shard.pending[0] if shard.pending else self.mapping.batch_size

    def _batch_ready(self, shard: _Shard) -> bool:
        if shard.pending or shard.ended or len(shard.buffer) >= self.mapping.batch_size:
            return True
        window = self.mapping.maximum_batching_window_s
        if window <= 0:
            return True
        if sum(record.size for record in shard.buffer) >= MAX_PAYLOAD_BYTES:
            return True
        return time.monotonic() - shard.buffer[0].read_at >= window

    def _idle_wait(self, shard: _Shard) -> float:
        if shard.buffer:  # gathering a batch: look again at the poll rate, and not past the window
            left = self.mapping.maximum_batching_window_s - (time.monotonic() - shard.buffer[0].read_at)
            return max(0.0, min(self._idle_poll_s, left))
        return self._idle_poll_s

    def _take_batch(self, shard: _Shard) -> list[_Record]:
        limit = self._batch_limit(shard)
        batch: list[_Record] = []
        size = len('{"Records": []}')
        for record in shard.buffer:
            if len(batch) >= limit or (batch and size + record.size > MAX_PAYLOAD_BYTES):
                break
            batch.append(record)
            size += record.size
        return batch

    async def _deliver(self, shard: _Shard) -> None:
        batch = self._take_batch(shard)
        payload = json.dumps({"Records": [record.event for record in batch]}).encode()
        shard.invocations += 1
        self._stats.batches += 1
        outcome = await self._invoke(payload)
        if (
            outcome.error is None
            and self._faults is not None
            and self._faults.duplicate_delivery(self._function)
        ):
            # At-least-once delivery: the same records again, as after a checkpoint that was not saved. The
            # second answer decides the checkpoint, as it would on AWS.
            log.warning("fault: %s gets the same %d record(s) again", self._function, len(batch))
            self._stats.batches += 1
            outcome = await self._invoke(payload)
        failed_at = self._first_failed(batch, outcome)
        if failed_at is None:
            self._acknowledge(shard, batch)
            if shard.pending:
                shard.pending.pop(0)
            shard.failures = shard.invocations = 0
            return
        self._stats.function_errors += 1
        if failed_at > 0:
            # Checkpoint before the lowest failed item; the rest is retried from there.
            self._acknowledge(shard, batch[:failed_at])
            shard.failures, shard.invocations = 0, 1
        remaining = batch[failed_at:]
        if outcome.error is not None and self.mapping.bisect_on_error and len(remaining) > 1:
            # Split in two and retry the halves; as on AWS, a split does not count against the retry quota.
            half = math.ceil(len(remaining) / 2)
            shard.pending[:1] = [half, len(remaining) - half]
            self._stats.bisections += 1
            return
        if outcome.error is not None or self.mapping.bisect_on_error or shard.pending:
            # The same records are retried, not a fresh batch from the checkpoint (that happens only after a
            # reported item failure without bisection, as on AWS).
            shard.pending[:1] = [len(remaining)]
        shard.failures += 1
        limit = self.mapping.maximum_retry_attempts
        if limit != -1 and shard.failures > limit:
            await self._give_up(shard, remaining, outcome)
            return
        self._stats.retries += 1
        delay = self._backoff(shard.failures)
        log.warning(
            "%s: %s failed (%s) on %d record(s) from %s; retry %d in %.2f s",
            self.mapping.logical_id,
            self.mapping.function_name,
            outcome.error or "reported item failures",
            len(remaining),
            remaining[0].sequence_number,
            shard.failures,
            delay,
        )
        await self._pause(delay)

    async def _invoke(self, payload: bytes) -> _Outcome:
        try:
            result = await self._invoker.invoke(self.mapping.function_name, payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "%s: invoking %s failed: %r", self.mapping.logical_id, self.mapping.function_name, exc
            )
            return _Outcome(result=None, error=type(exc).__name__)
        if result.function_error:
            return _Outcome(result=result, error=result.function_error)
        if not 200 <= result.status < 300:
            return _Outcome(result=result, error=f"HTTP {result.status}")
        return _Outcome(result=result, error=None)

    def _first_failed(self, batch: list[_Record], outcome: _Outcome) -> int | None:
        """Index of the first record to retry, or None when the whole batch succeeded."""
        if outcome.error is not None:
            return 0
        if not self.mapping.report_batch_item_failures or outcome.result is None:
            return None
        text = outcome.result.payload.strip()
        try:
            response = json.loads(text) if text else None
        except ValueError:
            return self._invalid_response("is not JSON")
        if response is None:
            return None
        if not isinstance(response, dict):
            return self._invalid_response("is not a JSON object")
        failures = response.get("batchItemFailures")
        if failures is None or failures == []:
            return None
        if not isinstance(failures, list):
            return self._invalid_response("has batchItemFailures that is not a list")
        index = {record.sequence_number: position for position, record in enumerate(batch)}
        lowest: int | None = None
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if not isinstance(identifier, str) or identifier not in index:
                return self._invalid_response(
                    f"names {identifier!r}, which is no sequence number of the batch"
                )
            lowest = index[identifier] if lowest is None else min(lowest, index[identifier])
        return lowest

    def _invalid_response(self, why: str) -> int:
        log.warning(
            "%s: %s's batch response %s: the whole batch failed",
            self.mapping.logical_id,
            self.mapping.function_name,
            why,
        )
        return 0

    def _acknowledge(self, shard: _Shard, records: list[_Record]) -> None:
        for _ in records:
            shard.buffer.popleft()
        if records:
            # Records filtered out after the last one acknowledged are done too once nothing is owed.
            self._mark_done(shard, shard.last_read if not shard.buffer else records[-1].sequence_number)
            self._stats.records_delivered += len(records)
            self._stats.iterator_age_ms = max(0, round((time.time() - records[-1].arrived) * 1000))

    async def _give_up(self, shard: _Shard, records: list[_Record], outcome: _Outcome) -> None:
        self._stats.records_given_up += len(records)
        log.warning(
            "%s: %d record(s) from %s failed %d time(s): retries exhausted, moving past them",
            self.mapping.logical_id,
            len(records),
            records[0].sequence_number,
            shard.failures,
        )
        if self._sqs is not None:
            await self._send_on_failure(shard, records, outcome)
        for _ in records:
            shard.buffer.popleft()
        if records:
            self._mark_done(shard, shard.last_read if not shard.buffer else records[-1].sequence_number)
        if shard.pending:
            shard.pending.pop(0)
        shard.failures = shard.invocations = 0

    async def _send_on_failure(self, shard: _Shard, records: list[_Record], outcome: _Outcome) -> None:
        message = json.dumps(self._invocation_record(shard, records, outcome))
        for attempt in range(1, _DLQ_SEND_ATTEMPTS + 1):
            try:
                await self._call(self._send_message, message)
                self._stats.dlq_messages += 1
                return
            except Exception as exc:  # the destination is best effort, as on AWS, but say so loudly
                log.warning(
                    "%s: sending to %s failed: %s",
                    self.mapping.logical_id,
                    self.mapping.on_failure_queue_arn,
                    exc,
                )
                if attempt < _DLQ_SEND_ATTEMPTS:
                    await self._pause(self._backoff(attempt))
        log.error(
            "%s: records %s..%s are lost: the on-failure queue %s could not be reached",
            self.mapping.logical_id,
            records[0].sequence_number,
            records[-1].sequence_number,
            self.mapping.on_failure_queue_arn,
        )

    def _send_message(self, body: str) -> None:
        assert self._sqs is not None and self.mapping.on_failure_queue_arn is not None
        if self._queue_url is None:
            name = self.mapping.on_failure_queue_arn.split(":")[-1]
            self._queue_url = str(self._sqs.get_queue_url(QueueName=name)["QueueUrl"])
        self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=body)

    def _invocation_record(self, shard: _Shard, records: list[_Record], outcome: _Outcome) -> dict[str, Any]:
        """The document AWS sends to a stream mapping's on-failure destination."""
        result = outcome.result
        response: dict[str, Any] = {
            "statusCode": result.status if result is not None else 500,
            "executedVersion": "$LATEST",
        }
        if outcome.error is not None:
            response["functionError"] = outcome.error
        return {
            "requestContext": {
                "requestId": (
                    result.request_id if result is not None and result.request_id else str(uuid.uuid4())
                ),
                "functionArn": function_arn(function_name_from(self.mapping.function_name)),
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": max(1, shard.invocations),
            },
            "responseContext": response,
            "version": "1.0",
            "timestamp": _iso(time.time(), millis=True),
            "DDBStreamBatchInfo": {
                "shardId": shard.shard_id,
                "startSequenceNumber": records[0].sequence_number,
                "endSequenceNumber": records[-1].sequence_number,
                "approximateArrivalOfFirstRecord": _iso(records[0].created),
                "approximateArrivalOfLastRecord": _iso(records[-1].created),
                "batchSize": len(records),
                "streamArn": self._stream_arn,
            },
        }

    # -- plumbing -------------------------------------------------------------------------------

    async def _call(self, function: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(function, *args, **kwargs))

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the poller is stopping."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _idle(self, shard: _Shard, seconds: float) -> None:
        """Wait for the next poll, unless wake() or stop() says to read now."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await shard.poked.wait()

    def _backoff(self, failures: int) -> float:
        return min(self._retry_max_delay_s, self._retry_base_delay_s * 2.0 ** max(0, failures - 1))


def _check_mapping(mapping: StreamMappingSpec) -> None:
    """Reject what CreateEventSourceMapping would reject, with the reason."""
    name = mapping.logical_id
    if not 1 <= mapping.batch_size <= 10_000:
        raise ValueError(
            f"{name}: BatchSize must be 1..10000 for a DynamoDB stream, got {mapping.batch_size}"
        )
    if mapping.starting_position not in ("LATEST", "TRIM_HORIZON"):
        raise ValueError(
            f"{name}: StartingPosition must be LATEST or TRIM_HORIZON, got {mapping.starting_position}"
        )
    if not -1 <= mapping.maximum_retry_attempts <= 10_000:
        raise ValueError(
            f"{name}: MaximumRetryAttempts must be -1..10000, got {mapping.maximum_retry_attempts}"
        )
    if not 0 <= mapping.maximum_batching_window_s <= 300:
        raise ValueError(f"{name}: MaximumBatchingWindowInSeconds must be 0..300")
    arn = mapping.on_failure_queue_arn
    if arn is not None and not arn.startswith("arn:aws:sqs:"):
        raise ValueError(f"{name}: the local cloud sends on-failure records to SQS only, got {arn}")
    for pattern in mapping.filter_patterns:
        try:
            validate_pattern(pattern)
        except FilterPatternError as exc:
            raise ValueError(f"{name}: invalid FilterCriteria pattern: {exc}") from exc


def boto3_client(service: str, endpoint_url: str, region: str = REGION) -> Any:
    """A boto3 client for a local emulator: fixed region and credentials, short timeouts, few retries."""
    import boto3
    from botocore.config import Config

    # DynamoDB Local and moto accept any credentials; fixed ones keep the host's real ones out of it.
    session = boto3.session.Session(
        aws_access_key_id="test",
        aws_secret_access_key="test",  # noqa: S106
        region_name=region,
    )
    config = Config(
        connect_timeout=2,
        read_timeout=10,
        retries={"total_max_attempts": 2, "mode": "standard"},
        max_pool_connections=8,
    )
    # The stubs type each service's client separately; this helper makes three kinds.
    make_client: Callable[..., Any] = session.client
    return make_client(service, endpoint_url=endpoint_url, config=config)


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _jsonable(value: Any) -> Any:
    """boto3's attribute values as Lambda's JSON has them: binary becomes base64 text."""
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(item) for item in value]
    return value


def _iso(epoch: float, *, millis: bool = False) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

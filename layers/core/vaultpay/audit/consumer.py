"""The audit consumer: pulls CloudEvents from JetStream and appends them to the chain, acking after the write.

Delivery contract. A message is acked only after the transaction holding its record (or finding its
event's marker) has committed, and the acks are flushed before the invocation ends. A crash anywhere
before that leaves the message unacked: JetStream redelivers it after `ack_wait`, and the event's marker
makes the second append a no-op, so a redelivery never yields a second record.

Poison messages (not JSON, not a CloudEvent, data that is not canonical, or an item DynamoDB refuses) are
nak'd, not terminated: each nak is another delivery, and after `max_deliver` of them JetStream publishes
a MAX_DELIVERIES advisory, from which the dead-letter stream (issue 4, infra/nats/) keeps the
message for an operator to inspect and replay. `term()` would stop redelivery at once, but it raises a
MSG_TERMINATED advisory instead, which a dead-letter stream fed from MAX_DELIVERIES never sees: the event
would be missing from the audit log with no one told. The price is a few wasted deliveries per poison
message.

When DynamoDB fails, nothing of the batch is acked or nak'd and the run stops: the messages come back
after `ack_wait`. The head of the chain is read before the first fetch, so an unreachable table costs no
delivery attempts at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from vaultpay.audit.model import APPENDED, DUPLICATE, AppendOutcome, AuditEntry, InvalidEvent, entry_from_json
from vaultpay.audit.store import ENTRIES_PER_TRANSACTION
from vaultpay.shared.errors import ConfigurationError, TransientError

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

    from vaultpay.audit.service import AuditService
    from vaultpay.events.nats_client import CredentialSource

STREAM = "VAULTPAY"
DURABLE = "audit-workers"
# One fetch fills one append transaction.
FETCH_BATCH = ENTRIES_PER_TRANSACTION
# How long a fetch waits for a first message: an empty queue ends the run after this.
FETCH_TIMEOUT_S = 1.0
# No new fetch when less than this is left of the invocation: a batch (read, write, ack) takes well
# under a second, and DynamoDB's client timeouts bound a slow one.
RESERVE_MS = 5_000
_NATS_TIMEOUT_S = 2

T = TypeVar("T")


class Delivery(Protocol):
    """What the loop needs of a JetStream message (nats.aio.msg.Msg is one)."""

    @property
    def data(self) -> bytes: ...

    @property
    def metadata(self) -> Any: ...

    async def ack(self) -> None: ...

    async def nak(self, delay: float | None = None) -> None: ...


class PullSource(Protocol):
    """A pull consumer: a fetch returns [] when nothing is waiting; flush confirms acks reached the server."""

    async def fetch(self, batch: int, wait_s: float) -> list[Delivery]: ...

    async def flush(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ConsumerLag:
    """A durable consumer's backlog: messages not yet delivered, delivered but unacknowledged, redelivered."""

    pending: int
    ack_pending: int
    redelivered: int

    def as_dict(self) -> dict[str, int]:
        return {"pending": self.pending, "ack_pending": self.ack_pending, "redelivered": self.redelivered}


@dataclass
class ConsumeReport:
    """What one run did; `stopped` is "drained" (queue empty) or "time" (the invocation's end is near)."""

    batches: int = 0
    fetched: int = 0
    appended: int = 0
    duplicates: int = 0
    rejected: int = 0
    stopped: str = ""
    lag: ConsumerLag | None = None  # the durable consumer's backlog after the run, when it was read

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def consume(
    source: PullSource,
    service: AuditService,
    *,
    remaining_ms: Callable[[], int],
    log: Logger | None = None,
    batch: int = FETCH_BATCH,
    fetch_timeout_s: float = FETCH_TIMEOUT_S,
    reserve_ms: int = RESERVE_MS,
) -> ConsumeReport:
    """Fetches and appends batches until the consumer has nothing waiting or time runs low."""
    report = ConsumeReport()
    # Fails here, before any delivery is spent, when the table cannot be reached or its head is unreadable.
    await asyncio.to_thread(service.head)
    while True:
        if remaining_ms() < reserve_ms:
            report.stopped = "time"
            return report
        messages = await source.fetch(batch, fetch_timeout_s)
        if not messages:
            report.stopped = "drained"
            return report
        report.batches += 1
        report.fetched += len(messages)
        await _process(messages, source, service, report, log)


async def _process(
    messages: list[Delivery],
    source: PullSource,
    service: AuditService,
    report: ConsumeReport,
    log: Logger | None,
) -> None:
    entries: list[AuditEntry] = []
    parsed: list[Delivery] = []
    for message in messages:
        try:
            entries.append(entry_from_json(message.data))
        except InvalidEvent as exc:
            await _reject(message, str(exc), report, log)
            continue
        parsed.append(message)
    # boto3 blocks; a thread keeps the NATS connection's reader running meanwhile.
    outcomes = await asyncio.to_thread(service.append_entries, entries)
    # Only now is every record (or its earlier copy) durable.
    for message, outcome in zip(parsed, outcomes, strict=True):
        if outcome.status == APPENDED:
            report.appended += 1
            await message.ack()
        elif outcome.status == DUPLICATE:
            report.duplicates += 1
            await message.ack()
        else:
            await _reject(message, "the audit table refused the record", report, log)
    await source.flush()


async def _reject(message: Delivery, reason: str, report: ConsumeReport, log: Logger | None) -> None:
    report.rejected += 1
    if log is not None:
        # Stream position and delivery count only: the payload may hold anything.
        log.warning("audit message rejected", extra={"reason": reason, **_position(message)})
    await message.nak()


def _position(message: Delivery) -> dict[str, Any]:
    try:
        metadata = message.metadata
        return {"stream_seq": metadata.sequence.stream, "deliveries": metadata.num_delivered}
    except (AttributeError, ValueError, TypeError):
        return {}


# ---- NATS --------------------------------------------------------------------------------------------


class NatsPullSource:
    """A bound pull subscription on a durable consumer."""

    def __init__(self, client: Any, subscription: Any, *, stream: str = "", durable: str = "") -> None:
        self._client = client
        self._subscription = subscription
        self._stream = stream
        self._durable = durable

    async def fetch(self, batch: int, wait_s: float) -> list[Delivery]:
        import nats.errors

        try:
            messages: list[Delivery] = await self._subscription.fetch(batch, timeout=wait_s)
        except (nats.errors.TimeoutError, TimeoutError):
            # An empty wait. Under load nats-py can surface it as the builtin TimeoutError (an OSError),
            # which must not be mistaken for a broken connection below.
            return []
        except (nats.errors.Error, OSError) as exc:
            raise TransientError(f"JetStream fetch failed: {type(exc).__name__}") from exc
        return messages

    async def lag(self) -> ConsumerLag:
        """How far behind the durable consumer is now (JetStream's consumer info)."""
        import nats.errors

        try:
            info = await self._client.jetstream(timeout=_NATS_TIMEOUT_S).consumer_info(
                self._stream, self._durable
            )
        except (nats.errors.Error, OSError) as exc:
            raise TransientError(f"JetStream consumer info failed: {type(exc).__name__}") from exc
        return ConsumerLag(
            pending=int(info.num_pending or 0),
            ack_pending=int(info.num_ack_pending or 0),
            redelivered=int(info.num_redelivered or 0),
        )

    async def flush(self) -> None:
        import nats.errors

        try:
            await self._client.flush(timeout=_NATS_TIMEOUT_S)
        except (nats.errors.Error, OSError) as exc:
            # The acks may be lost: the messages come back, and their markers make that harmless.
            raise TransientError(f"NATS flush failed: {type(exc).__name__}") from exc


async def _quiet(_exc: Exception) -> None:
    # nats-py reports connection errors through this callback; the caller sees them as exceptions.
    return None


class JetStreamConnection:
    """One NATS connection per process, on an event loop that lives as long as the process: a warm Lambda
    reuses both, and reconnects only when the connection has closed while the container was frozen."""

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        name: str,
        credentials: CredentialSource | None = None,
        tls: Mapping[str, Any] | None = None,
    ) -> None:
        self._servers = [url] if isinstance(url, str) else list(url)
        self._name = name
        self._credentials = credentials
        self._tls = dict(tls or {})
        self._loop = asyncio.new_event_loop()
        self._client: Any = None
        self._sources: dict[tuple[str, str], NatsPullSource] = {}

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, name: str) -> JetStreamConnection:
        """A consumer function's connection: NATS_URL, NATS_TLS_CA and its own NATS user
        (NATS_CREDENTIALS_SECRET_ARN), which may read only its durable consumer."""
        from vaultpay.events.nats_client import NatsSettings, credentials_from

        settings = NatsSettings.from_environ(environ)
        return cls(
            settings.servers, name=name, credentials=credentials_from(settings), tls=settings.tls_options()
        )

    def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Runs `work` on this connection's loop (the handler itself is synchronous)."""
        return self._loop.run_until_complete(work())

    async def pull_source(self, stream: str, durable: str) -> NatsPullSource:
        """The bound pull subscription of a durable consumer, created once per connection."""
        import nats.js.errors

        client = await self._connected()
        key = (stream, durable)
        if key not in self._sources:
            js = client.jetstream(timeout=_NATS_TIMEOUT_S)
            try:
                # Binding does not check that the consumer exists; a missing one must fail loudly here.
                await js.consumer_info(stream, durable)
            except nats.js.errors.NotFoundError as exc:
                missing = f"JetStream consumer {durable} on stream {stream} does not exist"
                raise ConfigurationError(missing) from exc
            except (nats.errors.Error, OSError) as exc:
                raise TransientError(f"JetStream did not answer: {type(exc).__name__}") from exc
            subscription = await js.pull_subscribe_bind(durable, stream=stream)
            self._sources[key] = NatsPullSource(client, subscription, stream=stream, durable=durable)
        return self._sources[key]

    async def _connected(self) -> Any:
        import nats
        import nats.errors

        if self._client is not None and not self._client.is_closed:
            return self._client
        self._sources.clear()
        options = self._credentials.get().connect_options() if self._credentials else {}
        try:
            self._client = await nats.connect(
                self._servers,
                name=self._name,
                connect_timeout=_NATS_TIMEOUT_S,
                max_reconnect_attempts=3,
                reconnect_time_wait=0.5,
                error_cb=_quiet,
                **options,
                **self._tls,
            )
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            if self._credentials is not None and "authorization" in str(exc).lower():
                self._credentials.invalidate()  # rotated since it was cached: read it again next time
            raise TransientError(f"NATS is unreachable: {type(exc).__name__}") from exc
        return self._client

    def close(self) -> None:
        """Closes the connection and the loop (tests; a Lambda process just ends)."""
        if self._client is not None and not self._client.is_closed:
            self._loop.run_until_complete(self._client.close())
        self._client = None
        self._sources.clear()
        self._loop.close()


# ---- replay ------------------------------------------------------------------------------------------


@dataclass
class ReplayReport:
    """What a replay fed its read model. `skipped` lists the stream sequences that are not CloudEvents and
    `rejected` counts events the read model refused: both stay in the stream, and a replay passes them."""

    last_stream_seq: int = 0
    delivered: int = 0
    appended: int = 0
    duplicates: int = 0
    rejected: int = 0
    skipped: list[int] = field(default_factory=list)


async def replay(
    client: Any,
    append: Callable[[Sequence[AuditEntry]], list[AppendOutcome]],
    *,
    stream: str = STREAM,
    start_seq: int | None = None,
    start_time: datetime | None = None,
    batch: int = FETCH_BATCH,
) -> ReplayReport:
    """Feeds every event of `stream` from a sequence or a time up to its last message (when the replay
    began) to a read model's `append`, through an ephemeral consumer deleted afterwards. The durable
    consumers are not touched, and `append` is idempotent, so a replay can be run again safely."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    js = client.jetstream(timeout=_NATS_TIMEOUT_S)
    report = ReplayReport(last_stream_seq=(await js.stream_info(stream)).state.last_seq)
    config = ConsumerConfig(
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=60.0,
        # A replay that dies leaves nothing behind: the server drops the consumer soon after.
        inactive_threshold=60.0,
        mem_storage=True,
    )
    if start_seq is not None:
        config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, start_seq
    elif start_time is not None:
        config.deliver_policy, config.opt_start_time = DeliverPolicy.BY_START_TIME, start_time
    if report.last_stream_seq == 0:
        return report
    info = await js.add_consumer(stream, config)
    try:
        source = NatsPullSource(client, await js.pull_subscribe_bind(consumer=info.name, stream=stream))
        while True:
            messages = await source.fetch(batch, FETCH_TIMEOUT_S)
            if not messages:
                return report
            report.delivered += len(messages)
            entries: list[AuditEntry] = []
            for message in messages:
                try:
                    entries.append(entry_from_json(message.data))
                except InvalidEvent:
                    report.skipped.append(int(message.metadata.sequence.stream))
            for outcome in await asyncio.to_thread(append, entries):
                if outcome.status == APPENDED:
                    report.appended += 1
                elif outcome.status == DUPLICATE:
                    report.duplicates += 1
                else:
                    report.rejected += 1
            for message in messages:
                await message.ack()
            await source.flush()
            if max(int(m.metadata.sequence.stream) for m in messages) >= report.last_stream_seq:
                return report
    finally:
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream, info.name)

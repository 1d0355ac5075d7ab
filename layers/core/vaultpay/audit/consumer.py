"""The audit consumer: pulls CloudEvents from JetStream and appends them to the chain, acking after the write.

Delivery contract. A message is acked only after the transaction holding its record (or finding its
event's marker) has committed, and the acks are flushed before the invocation ends. A crash anywhere
before that leaves the message unacked: JetStream redelivers it after `ack_wait`, and the event's marker
makes the second append a no-op, so a redelivery never yields a second record.

Poison messages (not JSON, not a CloudEvent, data that is not canonical, or an item DynamoDB refuses) are
rejected: nak'd until `max_deliver`, so the dead-letter stream keeps them (vaultpay.events.jetstream says
why not `term()`). A batch is appended in one transaction: its unparseable messages are rejected first,
the others settled once that transaction has committed. When DynamoDB fails, the run stops and nothing of
the batch is acked: the messages come back after `ack_wait`. The head of the chain is read before the
first fetch, so an unreachable table costs no delivery attempts at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from vaultpay.audit.model import APPENDED, DUPLICATE, AppendOutcome, AuditEntry, InvalidEvent, entry_from_json
from vaultpay.audit.store import ENTRIES_PER_TRANSACTION
from vaultpay.events.jetstream import (
    FETCH_TIMEOUT_S,
    Ack,
    Delivery,
    NatsPullSource,
    PullReport,
    PullSource,
    Reject,
    Verdict,
    pull,
)

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

    from vaultpay.audit.service import AuditService

STREAM = "VAULTPAY"
DURABLE = "audit-workers"
# One fetch fills one append transaction.
FETCH_BATCH = ENTRIES_PER_TRANSACTION
_NATS_TIMEOUT_S = 2


@dataclass
class ConsumeReport(PullReport):
    """What one run did (vaultpay.events.jetstream.PullReport), and how many records it appended."""

    appended: int = 0


async def consume(
    source: PullSource,
    service: AuditService,
    *,
    remaining_ms: Callable[[], int],
    log: Logger | None = None,
    batch: int = FETCH_BATCH,
) -> ConsumeReport:
    """Fetches and appends batches until the consumer has nothing waiting or time runs low."""
    report = ConsumeReport()
    # Fails here, before any delivery is spent, when the table cannot be reached or its head is unreadable.
    await asyncio.to_thread(service.head)

    async def append(messages: Sequence[Delivery]) -> AsyncGenerator[Verdict, None]:
        entries: list[AuditEntry] = []
        parsed: list[Delivery] = []
        for message in messages:
            try:
                entries.append(entry_from_json(message.data))
            except InvalidEvent as exc:
                yield Reject(message, str(exc))
                continue
            parsed.append(message)
        # boto3 blocks; a thread keeps the NATS connection's reader running meanwhile.
        outcomes = await asyncio.to_thread(service.append_entries, entries)
        # Only now is every record (or its earlier copy) durable.
        for message, outcome in zip(parsed, outcomes, strict=True):
            if outcome.status == APPENDED:
                report.appended += 1
                yield Ack(message)
            elif outcome.status == DUPLICATE:
                report.duplicates += 1
                yield Ack(message)
            else:
                yield Reject(message, "the audit table refused the record")

    return await pull(source, append, report, name="audit", remaining_ms=remaining_ms, batch=batch, log=log)


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

"""The fraud-workers consumer: pulls CloudEvents from JetStream into risk profiles, acking after the write.

Delivery contract (as the audit consumer's). A message is acked only after its profile update (with the
event's processed marker, in one transaction) has committed, or when it is a type the profile does not
learn from. A crash before that leaves it unacked: JetStream redelivers it after `ack_wait`, and the marker
makes the second application a no-op. A message that cannot be parsed is nak'd, so after `max_deliver`
deliveries its advisory reaches the dead-letter stream. When DynamoDB fails the run stops, leaving the rest
of the batch unacked for redelivery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from vaultpay.fraud.records import MalformedEvent, NotAProfileEvent, profile_event
from vaultpay.shared.strict_json import strict_loads

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

    from vaultpay.audit.consumer import ConsumerLag, Delivery, PullSource
    from vaultpay.fraud.service import ProfileService

STREAM = "VAULTPAY"
DURABLE = "fraud-workers"
FETCH_BATCH = 25
FETCH_TIMEOUT_S = 1.0
RESERVE_MS = 5_000


@dataclass
class ConsumeReport:
    """What one run did; `stopped` is "drained" (queue empty) or "time" (the invocation's end is near)."""

    batches: int = 0
    fetched: int = 0
    applied: int = 0
    duplicates: int = 0
    ignored: int = 0
    rejected: int = 0
    stopped: str = ""
    lag: ConsumerLag | None = None  # the durable consumer's backlog after the run, when it was read

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def consume(
    source: PullSource,
    service: ProfileService,
    *,
    remaining_ms: Callable[[], int],
    log: Logger | None = None,
    batch: int = FETCH_BATCH,
    fetch_timeout_s: float = FETCH_TIMEOUT_S,
    reserve_ms: int = RESERVE_MS,
) -> ConsumeReport:
    """Fetches and applies batches until the consumer has nothing waiting or time runs low."""
    report = ConsumeReport()
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
        try:
            for message in messages:
                await _handle(message, service, report, log)
        finally:
            # Whatever was acked before a failure reaches the server; the rest comes back.
            await source.flush()


async def _handle(
    message: Delivery, service: ProfileService, report: ConsumeReport, log: Logger | None
) -> None:
    try:
        # Strict: a key twice would let a forged event teach the profile what the audit log never records.
        event = profile_event(strict_loads(message.data))
    except NotAProfileEvent:
        report.ignored += 1
        await message.ack()
        return
    except (MalformedEvent, ValueError, UnicodeDecodeError) as exc:
        report.rejected += 1
        if log is not None:
            # The reason and the stream position only: the payload may hold anything.
            reason = str(exc) if isinstance(exc, MalformedEvent) else "not JSON"
            log.warning("fraud message rejected", extra={"reason": reason, **_position(message)})
        await message.nak()
        return
    # boto3 blocks; a thread keeps the NATS connection's reader running meanwhile. An error here stops the
    # run with this message unacked (redelivered after ack_wait).
    applied = await asyncio.to_thread(service.apply, event)
    if applied:
        report.applied += 1
    else:
        report.duplicates += 1
    await message.ack()


def _position(message: Delivery) -> dict[str, Any]:
    try:
        metadata = message.metadata
        return {"stream_seq": metadata.sequence.stream, "deliveries": metadata.num_delivered}
    except (AttributeError, ValueError, TypeError):
        return {}

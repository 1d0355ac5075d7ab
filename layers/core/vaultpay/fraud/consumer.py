"""The fraud-workers consumer: pulls CloudEvents from JetStream into risk profiles, acking after the write.

Delivery contract (as the audit consumer's, through the same loop: vaultpay.events.jetstream.pull). A
message is acked only after its profile update (with the event's processed marker, in one transaction) has
committed, or when it is a type the profile does not learn from. A crash before that leaves it unacked:
JetStream redelivers it after `ack_wait`, and the marker makes the second application a no-op. A message
that cannot be parsed is rejected (nak'd), so after `max_deliver` deliveries its advisory reaches the
dead-letter stream. Messages are applied one at a time: when DynamoDB fails the run stops, the messages
before it stay acked and the rest of the batch is left unacked for redelivery.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vaultpay.events.jetstream import (
    Ack,
    Delivery,
    PullReport,
    PullSource,
    Reject,
    Verdict,
    pull,
)
from vaultpay.fraud.records import MalformedEvent, NotAProfileEvent, profile_event
from vaultpay.shared.strict_json import strict_loads

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

    from vaultpay.fraud.service import ProfileService

STREAM = "VAULTPAY"
DURABLE = "fraud-workers"
FETCH_BATCH = 25


@dataclass
class ConsumeReport(PullReport):
    """What one run did (vaultpay.events.jetstream.PullReport): events applied to a profile, and events of a
    type the profile does not learn from (acked, `ignored`)."""

    applied: int = 0
    ignored: int = 0


async def consume(
    source: PullSource,
    service: ProfileService,
    *,
    remaining_ms: Callable[[], int],
    log: Logger | None = None,
    batch: int = FETCH_BATCH,
) -> ConsumeReport:
    """Fetches and applies batches until the consumer has nothing waiting or time runs low."""
    report = ConsumeReport()

    async def apply(messages: Sequence[Delivery]) -> AsyncGenerator[Verdict, None]:
        for message in messages:
            yield await _apply(message, service, report)

    return await pull(source, apply, report, name="fraud", remaining_ms=remaining_ms, batch=batch, log=log)


async def _apply(message: Delivery, service: ProfileService, report: ConsumeReport) -> Verdict:
    try:
        # Strict: a key twice would let a forged event teach the profile what the audit log never records.
        event = profile_event(strict_loads(message.data))
    except NotAProfileEvent:
        report.ignored += 1
        return Ack(message)
    except (MalformedEvent, ValueError, UnicodeDecodeError) as exc:
        return Reject(message, str(exc) if isinstance(exc, MalformedEvent) else "not JSON")
    # boto3 blocks; a thread keeps the NATS connection's reader running meanwhile. An error here stops the
    # run with this message unacked (redelivered after ack_wait).
    if await asyncio.to_thread(service.apply, event):
        report.applied += 1
    else:
        report.duplicates += 1
    return Ack(message)

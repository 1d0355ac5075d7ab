"""The webhook-workers consumer: pulls CloudEvents from JetStream into deliveries and feeds, acking after
the writes.

Delivery contract (the audit and fraud consumers', through the same loop: vaultpay.events.jetstream.pull).
A message is acked once its feed entries and deliveries are written, or when it concerns no customer. A
crash before that leaves it unacked: JetStream redelivers it after `ack_wait`, and the writes are keyed by
the event id, so the second run adds nothing. A message that cannot be parsed is rejected (nak'd) towards
`max_deliver` and the dead-letter stream. Sending is not done here: a slow endpoint never holds up the
stream (vaultpay.webhooks.delivery sends, one worker per endpoint).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vaultpay.events.jetstream import Ack, Delivery, PullReport, PullSource, Reject, Verdict, pull
from vaultpay.shared.strict_json import strict_loads
from vaultpay.webhooks.delivery import InvalidEvent

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

    from vaultpay.webhooks.delivery import DeliveryService

STREAM = "VAULTPAY"
DURABLE = "webhook-workers"
FETCH_BATCH = 25


@dataclass
class ConsumeReport(PullReport):
    """What one run did (vaultpay.events.jetstream.PullReport), and how many deliveries it wrote."""

    deliveries: int = 0


async def consume(
    source: PullSource,
    service: DeliveryService,
    *,
    remaining_ms: Callable[[], int],
    log: Logger | None = None,
    batch: int = FETCH_BATCH,
) -> ConsumeReport:
    """Fetches and records batches until the consumer has nothing waiting or time runs low."""
    report = ConsumeReport()

    async def record(messages: Sequence[Delivery]) -> AsyncGenerator[Verdict, None]:
        for message in messages:
            try:
                envelope = strict_loads(message.data)
                if not isinstance(envelope, Mapping):
                    raise InvalidEvent("not a JSON object")
                # boto3 blocks; a thread keeps the NATS connection's reader running meanwhile.
                report.deliveries += await asyncio.to_thread(service.record, envelope)
            except (InvalidEvent, ValueError, UnicodeDecodeError) as exc:
                yield Reject(message, str(exc) if isinstance(exc, InvalidEvent) else "not JSON")
                continue
            yield Ack(message)

    return await pull(
        source, record, report, name="webhooks", remaining_ms=remaining_ms, batch=batch, log=log
    )

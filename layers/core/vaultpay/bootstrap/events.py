"""The relay's and the outbox sweeper's composition, built once per warm Lambda: NATS, publisher, and the
sweeper's rescue, pending store and marker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from vaultpay.events.jetstream import run_blocking
from vaultpay.events.nats_publisher import JetStreamPublisher
from vaultpay.events.relay import BatchOutcome, Relay
from vaultpay.shared.lazy import cached
from vaultpay.shared.observability import get_logger, get_metrics

if TYPE_CHECKING:
    from vaultpay.events.jetstream import NatsConnection
    from vaultpay.events.rescue import RescueOutcome, Rescuer
    from vaultpay.events.sweeper import Sweeper, SweepOutcome


@cached
def nats_connection() -> NatsConnection:
    """The process's NATS connection (opened lazily on the first publish), with the relay's credentials."""
    from vaultpay.bootstrap import nats
    from vaultpay.bootstrap.settings import relay_settings

    settings = relay_settings()
    return nats.nats_connection(settings, name=f"vaultpay-relay-{settings.function_name}")


@cached
def relay() -> Relay:
    return Relay(JetStreamPublisher(nats_connection()), log=get_logger())


def relay_request_logs(delivery: Mapping[str, Any]) -> int:
    """Publishes the gateway request events of one CloudWatch Logs delivery; raises if any failed, so
    CloudWatch Logs retries the delivery (the stable event ids make the retry publish nothing twice)."""
    from vaultpay.events.gateway_logs import decode_delivery, request_events
    from vaultpay.events.relay import NotPublished, publish_events

    events = request_events(decode_delivery(delivery))
    published, failed = run_blocking(publish_events(JetStreamPublisher(nats_connection()), events))
    if failed:
        raise NotPublished(f"{failed} of {len(events)} gateway request events were not published")
    return published


def relay_records(records: Sequence[Mapping[str, Any]]) -> BatchOutcome:
    """Publishes one stream batch on the process's event loop and records the outcome as metrics."""
    from aws_lambda_powertools.metrics import MetricUnit

    outcome = run_blocking(relay().relay(records))
    metrics = get_metrics()
    metrics.add_metric(name="EventsPublished", unit=MetricUnit.Count, value=outcome.published)
    metrics.add_metric(name="EventsDeduplicated", unit=MetricUnit.Count, value=outcome.duplicates)
    metrics.add_metric(name="EventsNotPublished", unit=MetricUnit.Count, value=outcome.failed)
    metrics.add_metric(name="PoisonRecordsRejected", unit=MetricUnit.Count, value=outcome.poison)
    return outcome


# ---- the sweeper ---------------------------------------------------------------------------------------


@cached
def sweeper() -> Sweeper:
    from vaultpay.events.adapters import DynamoDbMarker, DynamoDbPendingStore
    from vaultpay.events.sweeper import Sweeper

    return Sweeper(
        DynamoDbPendingStore(), JetStreamPublisher(nats_connection()), DynamoDbMarker(), log=get_logger()
    )


@cached
def rescuer() -> Rescuer | None:
    """The sweeper's rescue of given-up relay batches; None when no on-failure queue is configured."""
    from vaultpay.bootstrap.settings import relay_settings
    from vaultpay.events.adapters import DynamoDbPendingMarker, DynamoDbStreamReader, SqsFailureQueue
    from vaultpay.events.rescue import Rescuer

    settings = relay_settings()
    if not settings.relay_failures_queue_url:
        return None
    return Rescuer(
        SqsFailureQueue(settings.relay_failures_queue_url),
        DynamoDbStreamReader(),
        JetStreamPublisher(nats_connection()),
        DynamoDbPendingMarker(),
        tables=settings.outbox_table_names,
        log=get_logger(),
    )


def rescue_failed_batches() -> RescueOutcome | None:
    """Reads the given-up relay batches back from their streams (before the sweep, which re-publishes
    what the rescue had to leave pending), with the outcome as metrics."""
    from aws_lambda_powertools.metrics import MetricUnit

    rescue = rescuer()
    if rescue is None:
        return None
    outcome = run_blocking(rescue.rescue())
    metrics = get_metrics()
    metrics.add_metric(name="RelayBatchesRescued", unit=MetricUnit.Count, value=outcome.rescued)
    metrics.add_metric(name="RelayBatchesGone", unit=MetricUnit.Count, value=outcome.gone)
    metrics.add_metric(name="RelayBatchesUnreadable", unit=MetricUnit.Count, value=outcome.unreadable)
    metrics.add_metric(name="RescuedEventsPublished", unit=MetricUnit.Count, value=outcome.published)
    metrics.add_metric(name="RescuedEventsLeftPending", unit=MetricUnit.Count, value=outcome.marked_pending)
    return outcome


def sweep_outbox(tables: Sequence[str] | None = None) -> SweepOutcome:
    """One scheduled sweep of the given tables (by default OUTBOX_TABLES), with its outcome as metrics."""
    from aws_lambda_powertools.metrics import MetricUnit

    from vaultpay.bootstrap.settings import relay_settings

    names = relay_settings().outbox_table_names if tables is None else tables
    outcome = run_blocking(sweeper().sweep(names))
    metrics = get_metrics()
    metrics.add_metric(name="OutboxItemsRepublished", unit=MetricUnit.Count, value=outcome.published)
    metrics.add_metric(name="OutboxItemsDeduplicated", unit=MetricUnit.Count, value=outcome.duplicates)
    metrics.add_metric(name="OutboxItemsNotRepublished", unit=MetricUnit.Count, value=outcome.failed)
    metrics.add_metric(name="OutboxMarksFailed", unit=MetricUnit.Count, value=outcome.mark_failed)
    return outcome

"""The relay's composition, built once per warm Lambda: settings, credentials, the kept NATS connection."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any

from vaultpay.events.nats_client import NatsConnection, NatsSettings, SecretCredentials, run_blocking
from vaultpay.events.nats_publisher import JetStreamPublisher
from vaultpay.events.relay import BatchOutcome, Relay
from vaultpay.shared.observability import get_logger, get_metrics

# The secret is read at connect time only (once per connection, at most once a minute through the cache).
_SECRETS_TIMEOUT_S = 2.0
_SECRETS_ATTEMPTS = 2


@functools.cache
def nats_connection() -> NatsConnection:
    """The process's NATS connection (opened lazily on the first publish)."""
    settings = NatsSettings.from_environ(os.environ)
    credentials = None
    if settings.credentials_secret_arn:
        from vaultpay.shared.aws import aws_client
        from vaultpay.shared.secrets import SecretCache

        client = aws_client("secretsmanager", timeout_s=_SECRETS_TIMEOUT_S, max_attempts=_SECRETS_ATTEMPTS)
        credentials = SecretCredentials(SecretCache(client), settings.credentials_secret_arn)
    return NatsConnection(
        settings.servers,
        name=f"vaultpay-relay-{os.environ.get('AWS_LAMBDA_FUNCTION_NAME', 'local')}",
        credentials=credentials,
        log=get_logger(),
    )


@functools.cache
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

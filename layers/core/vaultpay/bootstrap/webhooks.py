"""The webhook functions' composition: the routes' service, the delivery service, and the consumer's run."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vaultpay.shared.lazy import LazyProxy, cached

if TYPE_CHECKING:
    from vaultpay.events.jetstream import NatsConnection
    from vaultpay.webhooks.consumer import ConsumeReport
    from vaultpay.webhooks.delivery import DeliveryReport, DeliveryService
    from vaultpay.webhooks.service import WebhooksService

# The routes answer people at a screen: a short deadline and a retry.
_AWS_TIMEOUT_S = 2.0
_AWS_ATTEMPTS = 3
# The secrets' data keys carry this context: IAM lets the webhook functions use their key under it only.
WEBHOOK_SECRET_KEY_CONTEXT = {"app": "vaultpay", "purpose": "webhook_secret"}


def _client(service: str) -> LazyProxy:
    from vaultpay.shared.aws import aws_client

    return LazyProxy(lambda: aws_client(service, timeout_s=_AWS_TIMEOUT_S, max_attempts=_AWS_ATTEMPTS))


@cached
def _cipher() -> Any:
    from vaultpay.bootstrap.settings import webhooks_settings
    from vaultpay.shared.fieldcrypt import FieldCipher, KmsKeyProvider

    key = webhooks_settings().require("webhook_secret_key_id")
    return FieldCipher(KmsKeyProvider(_client("kms"), key), key_context=WEBHOOK_SECRET_KEY_CONTEXT)


def _parts() -> tuple[Any, Any, Any]:
    """The store, the cipher (built at its first use: the consumer, which only records, never has its key)
    and the stage's URL policy."""
    from vaultpay.bootstrap.settings import webhooks_settings
    from vaultpay.webhooks.model import UrlPolicy
    from vaultpay.webhooks.store import DynamoWebhookStore

    settings = webhooks_settings()
    store = DynamoWebhookStore(_client("dynamodb"), settings.require("webhooks_table"))
    return store, LazyProxy(_cipher), UrlPolicy(allow_http_loopback=settings.allows_loopback)


@cached
def webhooks_service() -> WebhooksService:
    """The routes' service, built on first use: one per warm Lambda."""
    from vaultpay.webhooks.adapters import resolve
    from vaultpay.webhooks.service import WebhooksService

    store, cipher, policy = _parts()
    return WebhooksService(store, cipher, resolve=resolve, policy=policy)


@cached
def delivery_service() -> DeliveryService:
    from vaultpay.bootstrap.settings import webhooks_settings
    from vaultpay.shared.observability import get_logger
    from vaultpay.webhooks.adapters import HttpSender, resolve
    from vaultpay.webhooks.delivery import DeliveryService
    from vaultpay.webhooks.model import RetryPolicy

    store, cipher, policy = _parts()
    retry = RetryPolicy(time_scale=webhooks_settings().webhook_time_scale)
    return DeliveryService(
        store, cipher, HttpSender(), resolve=resolve, policy=policy, retry=retry, log=get_logger()
    )


@cached
def jetstream() -> NatsConnection:
    """The process's one NATS connection, as the webhook consumer's own NATS user."""
    from vaultpay.bootstrap.nats import nats_connection
    from vaultpay.bootstrap.settings import webhook_consumer_settings

    return nats_connection(webhook_consumer_settings(), name="vaultpay-webhook-consumer")


def consume_pending(remaining_ms: Callable[[], int]) -> ConsumeReport:
    """One scheduled run: records what `webhook-workers` holds until it is empty or time runs low (and
    publishes the backlog it leaves as the lag metrics)."""
    from vaultpay.events.jetstream import consume_durable
    from vaultpay.shared.observability import get_logger
    from vaultpay.webhooks.consumer import DURABLE, STREAM, consume

    connection = jetstream()
    service = delivery_service()
    return consume_durable(
        connection,
        STREAM,
        DURABLE,
        lambda source: consume(source, service, remaining_ms=remaining_ms, log=get_logger()),
    )


def deliver_due(remaining_ms: Callable[[], int]) -> DeliveryReport:
    """One sending pass over the due deliveries (the sweeper's run)."""
    return delivery_service().deliver_due(remaining_ms=remaining_ms)

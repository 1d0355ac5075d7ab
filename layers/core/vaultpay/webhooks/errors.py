"""The webhooks domain's errors, each with its problem+json code and HTTP status (docs/api.md, Webhooks)."""

from __future__ import annotations

from vaultpay.shared.errors import Conflict, NotFound, ValidationFailed


class WebhookNotFound(NotFound):
    """No such webhook, or not the caller's: the two look the same from outside."""

    code = "webhook_not_found"


class DeliveryNotFound(NotFound):
    """No such delivery of this webhook."""

    code = "delivery_not_found"


class WebhookUrlNotAllowed(ValidationFailed):
    """The URL is not one VaultPay may call: not https, or its host is a private, loopback, link-local,
    multicast or otherwise non-public address."""

    code = "webhook_url_not_allowed"


class WebhookLimitReached(Conflict):
    """The caller already has the most webhook endpoints a user may have."""

    code = "webhook_limit_reached"


class WebhookDisabled(Conflict):
    """The webhook was disabled after failing every delivery for days: a redelivery would fail alike."""

    code = "webhook_disabled"

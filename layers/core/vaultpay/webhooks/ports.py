"""What the webhooks use cases need from the outside world: the store of webhooks, deliveries, the feed and
account owners; the secret cipher; the name resolver; the HTTP sender; and the signals a store raises.

Implementations: vaultpay.webhooks.store (DynamoDB), vaultpay.webhooks.adapters (the sender, the resolver),
vaultpay.webhooks.memory (in memory, for unit tests), wired in vaultpay.bootstrap.webhooks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from vaultpay.webhooks.model import AttemptResult, Delivery, Webhook, WebhookUrl


class LimitReached(Exception):
    """The user already has the most webhooks allowed."""


class AlreadyExists(Exception):
    """The item to create exists already."""


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Any]
    next_cursor: str | None


class WebhookStore(Protocol):
    def add_webhook(self, webhook: Webhook, *, limit: int) -> None: ...

    def get_webhook(self, user_id: str, webhook_id: str) -> Webhook | None: ...

    def list_webhooks(self, user_id: str) -> list[Webhook]: ...

    def set_secrets(self, webhook: Webhook) -> None:
        """Writes the webhook's secrets (current, previous and its end) and nothing else."""
        ...

    def set_health(self, webhook: Webhook, *, failing_since: float | None, disabled_at: str | None) -> None:
        """Writes when its failures began and, with `disabled_at`, that it is DISABLED; nothing else."""
        ...

    def delete_webhook(self, user_id: str, webhook_id: str) -> bool: ...

    def add_delivery(self, delivery: Delivery) -> None: ...

    def get_delivery(self, webhook_id: str, event_id: str) -> Delivery | None: ...

    def put_delivery(self, delivery: Delivery) -> None: ...

    def list_deliveries(self, webhook_id: str, *, limit: int, cursor: str | None) -> Page: ...

    def due_deliveries(self, now: float, *, limit: int, per_endpoint: int) -> list[Delivery]:
        """PENDING deliveries due by `now`, oldest due first, at most `per_endpoint` of one webhook."""
        ...

    def claim_delivery(self, delivery: Delivery, *, now: float, lease_s: float) -> bool: ...

    def add_feed_event(self, user_id: str, event_id: str, event_type: str, body: str) -> None: ...

    def feed_page(
        self, user_id: str, *, after: str | None, limit: int
    ) -> tuple[list[tuple[str, str]], bool]: ...

    def set_owner(self, account_id: str, user_id: str) -> None: ...

    def owners(self, account_ids: Sequence[str]) -> Mapping[str, str]: ...


class SecretCipher(Protocol):
    """Encrypts a webhook's signing secret at rest (vaultpay.shared.fieldcrypt.FieldCipher is one)."""

    def encrypt(self, plaintext: str, *, context: Mapping[str, str]) -> str: ...

    def decrypt(self, blob: str, *, context: Mapping[str, str]) -> str: ...


class Sender(Protocol):
    """POSTs one delivery to the checked addresses of its URL, no redirect followed, within a timeout."""

    def send(
        self, target: WebhookUrl, addresses: Sequence[str], body: bytes, headers: Mapping[str, str]
    ) -> AttemptResult: ...

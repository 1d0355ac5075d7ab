"""In-memory implementations of the webhooks ports with the DynamoDB store's conditions, for unit tests."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from vaultpay.webhooks.model import (
    AttemptResult,
    Delivery,
    DeliveryStatus,
    Webhook,
    WebhookStatus,
    WebhookUrl,
)
from vaultpay.webhooks.ports import AlreadyExists, LimitReached, Page


@dataclass
class MemoryWebhookStore:
    webhooks: dict[tuple[str, str], Webhook] = field(default_factory=dict)
    deliveries: dict[tuple[str, str], Delivery] = field(default_factory=dict)
    leases: dict[tuple[str, str], float] = field(default_factory=dict)
    feed: dict[str, dict[str, str]] = field(default_factory=dict)
    account_owners: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_webhook(self, webhook: Webhook, *, limit: int) -> None:
        with self._lock:
            if sum(1 for user, _ in self.webhooks if user == webhook.user_id) >= limit:
                raise LimitReached(webhook.user_id)
            self.webhooks[(webhook.user_id, webhook.webhook_id)] = webhook

    def get_webhook(self, user_id: str, webhook_id: str) -> Webhook | None:
        return self.webhooks.get((user_id, webhook_id))

    def list_webhooks(self, user_id: str) -> list[Webhook]:
        return [w for (user, _), w in sorted(self.webhooks.items()) if user == user_id]

    def set_secrets(self, webhook: Webhook) -> None:
        key = (webhook.user_id, webhook.webhook_id)
        if key in self.webhooks:
            self.webhooks[key] = replace(
                self.webhooks[key],
                secret_enc=webhook.secret_enc,
                previous_secret_enc=webhook.previous_secret_enc,
                previous_until=webhook.previous_until,
                updated_at=webhook.updated_at,
            )

    def set_health(self, webhook: Webhook, *, failing_since: float | None, disabled_at: str | None) -> None:
        key = (webhook.user_id, webhook.webhook_id)
        if key in self.webhooks:
            status = WebhookStatus.DISABLED if disabled_at is not None else self.webhooks[key].status
            self.webhooks[key] = replace(
                self.webhooks[key], failing_since=failing_since, disabled_at=disabled_at, status=status
            )

    def delete_webhook(self, user_id: str, webhook_id: str) -> bool:
        return self.webhooks.pop((user_id, webhook_id), None) is not None

    def add_delivery(self, delivery: Delivery) -> None:
        with self._lock:
            key = (delivery.webhook_id, delivery.event_id)
            if key in self.deliveries:
                raise AlreadyExists(delivery.delivery_id)
            self.deliveries[key] = delivery

    def get_delivery(self, webhook_id: str, event_id: str) -> Delivery | None:
        return self.deliveries.get((webhook_id, event_id))

    def put_delivery(self, delivery: Delivery) -> None:
        with self._lock:
            self.deliveries[(delivery.webhook_id, delivery.event_id)] = delivery
            self.leases.pop((delivery.webhook_id, delivery.event_id), None)

    def list_deliveries(self, webhook_id: str, *, limit: int, cursor: str | None) -> Page:
        mine = sorted(
            (d for (w, _), d in self.deliveries.items() if w == webhook_id),
            key=lambda d: d.event_id,
            reverse=True,
        )
        if cursor is not None:
            mine = [d for d in mine if d.event_id < cursor]
        page = mine[:limit]
        return Page(page, page[-1].event_id if len(mine) > limit else None)

    def due_deliveries(self, now: float, *, limit: int, per_endpoint: int) -> list[Delivery]:
        pending = [d for d in self.deliveries.values() if d.status is DeliveryStatus.PENDING]
        due = [d for d in pending if d.next_attempt_at is not None and d.next_attempt_at <= now]
        taken: list[Delivery] = []
        counts: dict[str, int] = {}
        for delivery in sorted(due, key=lambda d: (d.next_attempt_at or 0.0, d.event_id)):
            if counts.get(delivery.webhook_id, 0) < per_endpoint and len(taken) < limit:
                counts[delivery.webhook_id] = counts.get(delivery.webhook_id, 0) + 1
                taken.append(delivery)
        return taken

    def claim_delivery(self, delivery: Delivery, *, now: float, lease_s: float) -> bool:
        with self._lock:
            key = (delivery.webhook_id, delivery.event_id)
            current = self.deliveries.get(key)
            if current is None or current.status is not DeliveryStatus.PENDING:
                return False
            if self.leases.get(key, 0.0) > now:
                return False
            self.leases[key] = now + lease_s
            return True

    def add_feed_event(self, user_id: str, event_id: str, event_type: str, body: str) -> None:
        self.feed.setdefault(user_id, {})[event_id] = body

    def feed_page(self, user_id: str, *, after: str | None, limit: int) -> tuple[list[tuple[str, str]], bool]:
        rows = sorted(self.feed.get(user_id, {}).items())
        if after is not None:
            rows = [row for row in rows if row[0] > after]
        return rows[:limit], len(rows) > limit

    def set_owner(self, account_id: str, user_id: str) -> None:
        self.account_owners[account_id] = user_id

    def owners(self, account_ids: Sequence[str]) -> Mapping[str, str]:
        return {a: self.account_owners[a] for a in account_ids if a in self.account_owners}


@dataclass
class ReversibleCipher:
    """Tags the plaintext with its context, so a blob moved to another row fails as the real one does."""

    def encrypt(self, plaintext: str, *, context: Mapping[str, str]) -> str:
        return f"enc[{sorted(context.items())}]{plaintext}"

    def decrypt(self, blob: str, *, context: Mapping[str, str]) -> str:
        prefix = f"enc[{sorted(context.items())}]"
        if not blob.startswith(prefix):
            raise ValueError("the blob belongs to another context")
        return blob[len(prefix) :]


@dataclass
class RecordingSender:
    """Answers each URL as told (a status code, or an error) and records what it was sent."""

    answers: dict[str, AttemptResult] = field(default_factory=dict)
    sent: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)

    def send(
        self, target: WebhookUrl, addresses: Sequence[str], body: bytes, headers: Mapping[str, str]
    ) -> AttemptResult:
        self.sent.append((target.url, body, dict(headers)))
        return self.answers.get(target.url, AttemptResult(200))

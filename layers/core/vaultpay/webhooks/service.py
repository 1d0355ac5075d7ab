"""The webhook routes' use cases: register, list, read, delete, rotate the secret, list deliveries, redeliver,
and read the events feed. Another user's webhook is a 404, exactly like one that does not exist."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from vaultpay.shared import kernel
from vaultpay.shared.errors import FieldError, ValidationFailed
from vaultpay.webhooks.errors import (
    DeliveryNotFound,
    WebhookDisabled,
    WebhookLimitReached,
    WebhookNotFound,
)
from vaultpay.webhooks.model import (
    MAX_DESCRIPTION,
    MAX_WEBHOOKS_PER_USER,
    ROTATION_OVERLAP_S,
    DeliveryStatus,
    Resolver,
    UrlPolicy,
    Webhook,
    WebhookStatus,
    check_patterns,
    event_id_of,
    is_event_id,
    matches_any,
    new_secret,
    parse_url,
    resolve_checked,
)
from vaultpay.webhooks.ports import LimitReached, SecretCipher, WebhookStore

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
WEBHOOK_PREFIX = "wh"


def secret_context(webhook: Webhook | tuple[str, str], slot: str) -> dict[str, str]:
    """The encryption context binding a stored secret to its webhook, its owner and its slot (a blob
    copied to another row, or from `previous` to `current`, does not decrypt)."""
    user_id, webhook_id = (webhook.user_id, webhook.webhook_id) if isinstance(webhook, Webhook) else webhook
    return {"field": f"webhook_secret_{slot}", "user_id": user_id, "webhook_id": webhook_id}


@dataclass(frozen=True, slots=True)
class WithSecret:
    """A webhook's view with its new secret: the one answer that ever shows it (create, rotate)."""

    webhook: Webhook
    secret: str

    def to_json(self) -> dict[str, Any]:
        body = self.webhook.view()
        body["secret"] = self.secret
        return body


class WebhooksService:
    def __init__(
        self,
        store: WebhookStore,
        cipher: SecretCipher,
        *,
        resolve: Resolver,
        policy: UrlPolicy,
        clock: Callable[[], float] = kernel.now,
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._resolve = resolve
        self._policy = policy
        self._clock = clock

    def create(
        self, user_id: str, url: str, events: Sequence[str], description: str | None = None
    ) -> WithSecret:
        target = parse_url(url, self._policy)
        patterns = check_patterns(events)
        if description is not None and not 1 <= len(description.strip()) <= MAX_DESCRIPTION:
            raise ValidationFailed(
                "The description is not valid.",
                errors=[FieldError("description", f"must be 1..{MAX_DESCRIPTION} characters, not blank")],
            )
        # Checked now as well as at every delivery: a URL that already names a private address is refused
        # here with its reason, rather than registered to fail every delivery.
        resolve_checked(target, self._policy, self._resolve)
        at = kernel.rfc3339(self._clock())
        webhook_id = kernel.random_id(WEBHOOK_PREFIX)
        secret = new_secret()
        webhook = Webhook(
            webhook_id=webhook_id,
            user_id=user_id,
            url=target.url,
            events=patterns,
            description=description,
            status=WebhookStatus.ENABLED,
            secret_enc=self._cipher.encrypt(secret, context=secret_context((user_id, webhook_id), "current")),
            created_at=at,
            updated_at=at,
        )
        try:
            self._store.add_webhook(webhook, limit=MAX_WEBHOOKS_PER_USER)
        except LimitReached:
            raise WebhookLimitReached(
                f"A user may have at most {MAX_WEBHOOKS_PER_USER} webhooks; delete one first."
            ) from None
        return WithSecret(webhook, secret)

    def list(self, user_id: str) -> dict[str, Any]:
        webhooks = sorted(self._store.list_webhooks(user_id), key=lambda w: (w.created_at, w.webhook_id))
        # At most MAX_WEBHOOKS_PER_USER: always one page, in the contract's list shape.
        return {"items": [webhook.view() for webhook in webhooks], "next_cursor": None}

    def get(self, user_id: str, webhook_id: str) -> Webhook:
        webhook = (
            self._store.get_webhook(user_id, webhook_id) if kernel.is_id(webhook_id, WEBHOOK_PREFIX) else None
        )
        if webhook is None:
            raise WebhookNotFound("No such webhook.")
        return webhook

    def delete(self, user_id: str, webhook_id: str) -> None:
        if not kernel.is_id(webhook_id, WEBHOOK_PREFIX) or not self._store.delete_webhook(
            user_id, webhook_id
        ):
            raise WebhookNotFound("No such webhook.")

    def rotate_secret(self, user_id: str, webhook_id: str) -> WithSecret:
        """A new secret; the one it replaces keeps signing beside it for ROTATION_OVERLAP_S (a rotation
        during an overlap ends the older one at once: at most two secrets ever sign)."""
        webhook = self.get(user_id, webhook_id)
        now = self._clock()
        current = self._cipher.decrypt(webhook.secret_enc, context=secret_context(webhook, "current"))
        secret = new_secret()
        rotated = replace(
            webhook,
            secret_enc=self._cipher.encrypt(secret, context=secret_context(webhook, "current")),
            previous_secret_enc=self._cipher.encrypt(current, context=secret_context(webhook, "previous")),
            previous_until=now + ROTATION_OVERLAP_S,
            updated_at=kernel.rfc3339(now),
        )
        self._store.set_secrets(rotated)
        return WithSecret(rotated, secret)

    def deliveries(
        self, user_id: str, webhook_id: str, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
    ) -> dict[str, Any]:
        webhook = self.get(user_id, webhook_id)
        page = self._store.list_deliveries(webhook.webhook_id, limit=limit, cursor=cursor)
        return {"items": [d.view(kernel.rfc3339) for d in page.items], "next_cursor": page.next_cursor}

    def redeliver(self, user_id: str, webhook_id: str, delivery_id: str) -> dict[str, Any]:
        """The delivery again, soon, with a fresh retry window (whatever its status): 202."""
        webhook = self.get(user_id, webhook_id)
        if webhook.status is WebhookStatus.DISABLED:
            raise WebhookDisabled("The webhook is disabled; register its URL again once it answers.")
        event_id = event_id_of(delivery_id)
        delivery = self._store.get_delivery(webhook.webhook_id, event_id) if event_id else None
        if delivery is None:
            raise DeliveryNotFound("No such delivery of this webhook.")
        again = replace(
            delivery, status=DeliveryStatus.PENDING, next_attempt_at=self._clock(), first_attempt_at=None
        )
        self._store.put_delivery(again)
        return again.view(kernel.rfc3339)

    def feed(
        self, user_id: str, *, after: str | None, types: str | None, limit: int = DEFAULT_LIMIT
    ) -> dict[str, Any]:
        """The caller's own events (the webhooks' selection, each as its customer view), oldest first,
        after the cursor (the last event id of the previous page); `types` a comma-separated list of
        patterns. A page holds `limit` events of those types, fewer only on the last page."""
        patterns = check_patterns([p.strip() for p in types.split(",")]) if types else ("*",)
        if after is not None and not is_event_id(after):
            raise ValidationFailed(
                "The cursor is not valid.",
                code="invalid_cursor",
                errors=[FieldError("after", "is not valid")],
            )
        items: list[Mapping[str, Any]] = []
        position = after
        while True:
            rows, more = self._store.feed_page(user_id, after=position, limit=limit)
            for event_id, body in rows:
                position = event_id
                event = json.loads(body)
                if matches_any(patterns, str(event.get("type"))):
                    items.append(event)
                    if len(items) == limit:
                        # Another page may follow: the client asks again from here.
                        return {"items": items, "next_cursor": event_id}
            if not more:
                return {"items": items, "next_cursor": None}

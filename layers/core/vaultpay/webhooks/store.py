"""The webhooks table through the shared `Table` helper: webhooks, their per-user count, deliveries, the
customers' event feeds and the account owners the consumer has learned.

The low-level client (docs/persistence.md): registering is one transaction whose point is a counter's
condition (at most ten per user), a delivery is claimed and settled with conditional updates, and the due
deliveries are a sparse index read by time. Items (`pk` / `sk`):

- `USER#<user_id>` / `WEBHOOK#<webhook_id>`: a webhook (its secrets as FieldCipher blobs);
- `USER#<user_id>` / `COUNT`: how many webhooks the user has (`webhooks`);
- `WEBHOOK#<webhook_id>` / `DELIVERY#<event_id>`: a delivery; while PENDING it carries `due_shard` and
  `due_at` (index DueDeliveries);
- `FEED#<user_id>` / `EVENT#<event_id>`: the customer's view of an event, in event-id (time) order;
- `ACCOUNT#<account_id>` / `OWNER`: who owns an account (from `vaultpay.account.created`).

Deliveries and feed entries expire (`expires_at`, the table's TTL) after RETENTION_S.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from vaultpay.shared import dynamo as ddb
from vaultpay.shared.kernel import epoch_now
from vaultpay.webhooks.model import Delivery, DeliveryStatus, Webhook, WebhookStatus
from vaultpay.webhooks.ports import AlreadyExists, LimitReached, Page

RETENTION_S = 30 * 24 * 3600
DUE_INDEX = "DueDeliveries"
# One partition of the due index: a few hundred due deliveries a minute fit one partition's throughput with
# room to spare; shard the key (DUE#0..n) when that stops being true.
DUE_SHARD = "DUE"
DUE_PAGES = 5


def _s(item: Mapping[str, Any], name: str) -> str:
    value = ddb.str_attr(item, name)
    if value is None:
        raise ValueError(f"{name} is missing from a webhooks item")
    return value


def _int_or_none(item: Mapping[str, Any], name: str) -> int | None:
    return ddb.int_attr(item, name) if name in item else None


class DynamoWebhookStore:
    """The WebhookStore port on the webhooks table."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._db = ddb.Table(client, table_name)

    # ---- webhooks -----------------------------------------------------------------------------------

    def add_webhook(self, webhook: Webhook, *, limit: int) -> None:
        count = {
            "Update": {
                "TableName": self._db.name,
                "Key": _key(f"USER#{webhook.user_id}", "COUNT"),
                "UpdateExpression": "SET webhooks = if_not_exists(webhooks, :zero) + :one",
                "ConditionExpression": "attribute_not_exists(webhooks) OR webhooks < :limit",
                "ExpressionAttributeValues": {":zero": ddb.n(0), ":one": ddb.n(1), ":limit": ddb.n(limit)},
            }
        }
        failed = self._db.transact([count, self._db.put_new(_webhook_item(webhook))])
        if 0 in failed:
            raise LimitReached(webhook.user_id)
        if failed:
            raise AlreadyExists(webhook.webhook_id)

    def get_webhook(self, user_id: str, webhook_id: str) -> Webhook | None:
        item = self._db.get(_key(f"USER#{user_id}", f"WEBHOOK#{webhook_id}"))
        return _webhook(item) if item is not None else None

    def list_webhooks(self, user_id: str) -> list[Webhook]:
        items, _ = self._db.query_page(
            {
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
                "ExpressionAttributeValues": {":pk": ddb.s(f"USER#{user_id}"), ":prefix": ddb.s("WEBHOOK#")},
            },
            # A user has at most ten: one page always holds them all.
            limit=100,
        )
        return [_webhook(item) for item in items]

    def set_secrets(self, webhook: Webhook) -> None:
        values: dict[str, Any] = {
            ":secret": ddb.s(webhook.secret_enc),
            ":updated": ddb.s(webhook.updated_at),
        }
        sets = ["secret_enc = :secret", "updated_at = :updated"]
        if webhook.previous_secret_enc is not None and webhook.previous_until is not None:
            values[":previous"] = ddb.s(webhook.previous_secret_enc)
            values[":until"] = ddb.n(int(webhook.previous_until))
            sets += ["previous_secret_enc = :previous", "previous_until = :until"]
        self._db.update(
            _key(f"USER#{webhook.user_id}", f"WEBHOOK#{webhook.webhook_id}"),
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues=values,
        )

    def set_health(self, webhook: Webhook, *, failing_since: float | None, disabled_at: str | None) -> None:
        values: dict[str, Any] = {}
        sets: list[str] = []
        removes: list[str] = []
        if failing_since is None:
            removes.append("failing_since")
        else:
            sets.append("failing_since = :since")
            values[":since"] = ddb.n(int(failing_since))
        if disabled_at is not None:
            sets += ["#status = :disabled", "disabled_at = :at"]
            values[":disabled"] = ddb.s(WebhookStatus.DISABLED.value)
            values[":at"] = ddb.s(disabled_at)
        expression = (f"SET {', '.join(sets)} " if sets else "") + (
            f"REMOVE {', '.join(removes)}" if removes else ""
        )
        request: dict[str, Any] = {
            "UpdateExpression": expression.strip(),
            # A webhook deleted meanwhile stays deleted: the update never re-creates it.
            "ConditionExpression": "attribute_exists(pk)",
        }
        if values:
            request["ExpressionAttributeValues"] = values
        if disabled_at is not None:
            request["ExpressionAttributeNames"] = {"#status": "status"}
        try:
            self._db.update(_key(f"USER#{webhook.user_id}", f"WEBHOOK#{webhook.webhook_id}"), **request)
        except ddb.ConditionFailed:
            return

    def delete_webhook(self, user_id: str, webhook_id: str) -> bool:
        delete = {
            "Delete": {
                "TableName": self._db.name,
                "Key": _key(f"USER#{user_id}", f"WEBHOOK#{webhook_id}"),
                "ConditionExpression": "attribute_exists(pk)",
            }
        }
        count = {
            "Update": {
                "TableName": self._db.name,
                "Key": _key(f"USER#{user_id}", "COUNT"),
                "UpdateExpression": "SET webhooks = webhooks - :one",
                "ConditionExpression": "webhooks > :zero",
                "ExpressionAttributeValues": {":zero": ddb.n(0), ":one": ddb.n(1)},
            }
        }
        return not self._db.transact([delete, count])

    # ---- deliveries ---------------------------------------------------------------------------------

    def add_delivery(self, delivery: Delivery) -> None:
        # A conditional put, not a transaction: one item, at half a transaction's write units.
        try:
            self._db.call(
                "PutItem",
                TableName=self._db.name,
                Item=_delivery_item(delivery),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ddb.ConditionFailed:
            raise AlreadyExists(delivery.delivery_id) from None

    def get_delivery(self, webhook_id: str, event_id: str) -> Delivery | None:
        item = self._db.get(_key(f"WEBHOOK#{webhook_id}", f"DELIVERY#{event_id}"))
        return _delivery(item) if item is not None else None

    def put_delivery(self, delivery: Delivery) -> None:
        # Whole, without its lease: the attempt that held it is over.
        self._db.call("PutItem", TableName=self._db.name, Item=_delivery_item(delivery))

    def list_deliveries(self, webhook_id: str, *, limit: int, cursor: str | None) -> Page:
        start = None
        if cursor:
            after = ddb.decode_position(cursor, "cursor")
            if not after.startswith("DELIVERY#"):
                raise ddb.InvalidCursor()
            start = _key(f"WEBHOOK#{webhook_id}", after)
        items, last = self._db.query_page(
            {
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
                "ExpressionAttributeValues": {
                    ":pk": ddb.s(f"WEBHOOK#{webhook_id}"),
                    ":prefix": ddb.s("DELIVERY#"),
                },
                # Newest first: the latest deliveries are what an operator looks at.
                "ScanIndexForward": False,
            },
            limit=limit,
            start=start,
        )
        next_cursor = ddb.encode_position("cursor", last["sk"]["S"]) if last else None
        return Page([_delivery(item) for item in items], next_cursor)

    def due_deliveries(self, now: float, *, limit: int, per_endpoint: int) -> list[Delivery]:
        # Pages of the index, oldest due first, until `limit` are taken or DUE_PAGES were read: one endpoint's
        # backlog is skipped past (at most `per_endpoint` of it), up to DUE_PAGES pages deep.
        request = {
            "IndexName": DUE_INDEX,
            "KeyConditionExpression": "due_shard = :shard AND due_at <= :now",
            "ExpressionAttributeValues": {":shard": ddb.s(DUE_SHARD), ":now": ddb.n(int(now * 1000))},
        }
        taken: list[Delivery] = []
        counts: dict[str, int] = {}
        start: dict[str, Any] | None = None
        for _ in range(DUE_PAGES):
            items, start = self._db.query_page(request, limit=limit, start=start)
            for item in items:
                webhook_id = _s(item, "webhook_id")
                if counts.get(webhook_id, 0) < per_endpoint and len(taken) < limit:
                    counts[webhook_id] = counts.get(webhook_id, 0) + 1
                    taken.append(_delivery(item))
            if start is None or len(taken) >= limit:
                break
        return taken

    def claim_delivery(self, delivery: Delivery, *, now: float, lease_s: float) -> bool:
        try:
            self._db.update(
                _key(f"WEBHOOK#{delivery.webhook_id}", f"DELIVERY#{delivery.event_id}"),
                UpdateExpression="SET lease_until = :until",
                ConditionExpression=(
                    "#status = :pending AND (attribute_not_exists(lease_until) OR lease_until < :now)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":pending": ddb.s(DeliveryStatus.PENDING.value),
                    ":now": ddb.n(int(now * 1000)),
                    ":until": ddb.n(int((now + lease_s) * 1000)),
                },
            )
        except ddb.ConditionFailed:
            return False
        return True

    # ---- the feed and the owners --------------------------------------------------------------------

    def add_feed_event(self, user_id: str, event_id: str, event_type: str, body: str) -> None:
        item = {
            **_key(f"FEED#{user_id}", f"EVENT#{event_id}"),
            "type": ddb.s(event_type),
            "body": ddb.s(body),
            "expires_at": ddb.n(epoch_now() + RETENTION_S),
        }
        # The same event again (a redelivery) writes the same view: a plain put is idempotent.
        self._db.call("PutItem", TableName=self._db.name, Item=item)

    def feed_page(self, user_id: str, *, after: str | None, limit: int) -> tuple[list[tuple[str, str]], bool]:
        start = _key(f"FEED#{user_id}", f"EVENT#{after}") if after else None
        items, last = self._db.query_page(
            {
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
                "ExpressionAttributeValues": {":pk": ddb.s(f"FEED#{user_id}"), ":prefix": ddb.s("EVENT#")},
            },
            limit=limit,
            start=start,
        )
        rows = [(_s(item, "sk").removeprefix("EVENT#"), _s(item, "body")) for item in items]
        return rows, last is not None

    def set_owner(self, account_id: str, user_id: str) -> None:
        item = {**_key(f"ACCOUNT#{account_id}", "OWNER"), "user_id": ddb.s(user_id)}
        self._db.call("PutItem", TableName=self._db.name, Item=item)

    def owners(self, account_ids: Sequence[str]) -> Mapping[str, str]:
        if not account_ids:
            return {}
        found = self._db.batch_get([_key(f"ACCOUNT#{account}", "OWNER") for account in account_ids])
        return {_s(item, "pk").removeprefix("ACCOUNT#"): _s(item, "user_id") for item in found}


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": ddb.s(pk), "sk": ddb.s(sk)}


def _webhook_item(webhook: Webhook) -> dict[str, Any]:
    item: dict[str, Any] = {
        **_key(f"USER#{webhook.user_id}", f"WEBHOOK#{webhook.webhook_id}"),
        "webhook_id": ddb.s(webhook.webhook_id),
        "user_id": ddb.s(webhook.user_id),
        "url": ddb.s(webhook.url),
        "events": ddb.s(json.dumps(list(webhook.events))),
        "status": ddb.s(webhook.status.value),
        "secret_enc": ddb.s(webhook.secret_enc),
        "created_at": ddb.s(webhook.created_at),
        "updated_at": ddb.s(webhook.updated_at),
    }
    if webhook.description is not None:
        item["description"] = ddb.s(webhook.description)
    return item


def _webhook(item: Mapping[str, Any]) -> Webhook:
    previous_until = _int_or_none(item, "previous_until")
    failing_since = _int_or_none(item, "failing_since")
    return Webhook(
        webhook_id=_s(item, "webhook_id"),
        user_id=_s(item, "user_id"),
        url=_s(item, "url"),
        events=tuple(json.loads(_s(item, "events"))),
        description=ddb.str_attr(item, "description"),
        status=WebhookStatus(_s(item, "status")),
        secret_enc=_s(item, "secret_enc"),
        created_at=_s(item, "created_at"),
        updated_at=_s(item, "updated_at"),
        previous_secret_enc=ddb.str_attr(item, "previous_secret_enc"),
        previous_until=float(previous_until) if previous_until is not None else None,
        failing_since=float(failing_since) if failing_since is not None else None,
        disabled_at=ddb.str_attr(item, "disabled_at"),
    )


def _delivery_item(delivery: Delivery) -> dict[str, Any]:
    item: dict[str, Any] = {
        **_key(f"WEBHOOK#{delivery.webhook_id}", f"DELIVERY#{delivery.event_id}"),
        "webhook_id": ddb.s(delivery.webhook_id),
        "user_id": ddb.s(delivery.user_id),
        "event_id": ddb.s(delivery.event_id),
        "type": ddb.s(delivery.type),
        "body": ddb.s(delivery.body),
        "status": ddb.s(delivery.status.value),
        "attempts": ddb.n(delivery.attempts),
        "created_at": ddb.s(delivery.created_at),
        "expires_at": ddb.n(epoch_now() + RETENTION_S),
    }
    # Times in milliseconds: a retry a fraction of a second away (the local time scale) keeps its order.
    if delivery.next_attempt_at is not None:
        item["next_attempt_at"] = ddb.n(int(delivery.next_attempt_at * 1000))
        if delivery.status is DeliveryStatus.PENDING:
            item["due_shard"] = ddb.s(DUE_SHARD)
            item["due_at"] = ddb.n(int(delivery.next_attempt_at * 1000))
    if delivery.first_attempt_at is not None:
        item["first_attempt_at"] = ddb.n(int(delivery.first_attempt_at * 1000))
    if delivery.last_status_code is not None:
        item["last_status_code"] = ddb.n(delivery.last_status_code)
    if delivery.last_error is not None:
        item["last_error"] = ddb.s(delivery.last_error)
    return item


def _millis(item: Mapping[str, Any], name: str) -> float | None:
    value = _int_or_none(item, name)
    return value / 1000 if value is not None else None


def _delivery(item: Mapping[str, Any]) -> Delivery:
    return Delivery(
        webhook_id=_s(item, "webhook_id"),
        user_id=_s(item, "user_id"),
        event_id=_s(item, "event_id"),
        type=_s(item, "type"),
        body=_s(item, "body"),
        status=DeliveryStatus(_s(item, "status")),
        attempts=ddb.int_attr(item, "attempts"),
        created_at=_s(item, "created_at"),
        next_attempt_at=_millis(item, "next_attempt_at"),
        first_attempt_at=_millis(item, "first_attempt_at"),
        last_status_code=_int_or_none(item, "last_status_code"),
        last_error=ddb.str_attr(item, "last_error"),
    )

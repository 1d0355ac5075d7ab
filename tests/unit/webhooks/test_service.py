"""The webhook use cases against the in-memory store: the routes' rules, event selection into deliveries and
the feed, signed sending, retries, FAILED and DISABLED (no I/O: a recording sender, a stubbed resolver)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.webhooks import completed_event

from vaultpay.shared.errors import ValidationFailed
from vaultpay.webhooks.delivery import DeliveryService, InvalidEvent
from vaultpay.webhooks.errors import (
    DeliveryNotFound,
    WebhookLimitReached,
    WebhookNotFound,
    WebhookUrlNotAllowed,
)
from vaultpay.webhooks.memory import MemoryWebhookStore, RecordingSender, ReversibleCipher
from vaultpay.webhooks.model import (
    MAX_WEBHOOKS_PER_USER,
    AttemptResult,
    RetryPolicy,
    UrlPolicy,
    WebhookStatus,
    verify_signature,
)
from vaultpay.webhooks.service import WebhooksService

pytestmark = pytest.mark.unit

URL = "https://hooks.example.com/in"
ADDRESSES = {"hooks.example.com": ["93.184.216.34"], "slow.example.com": ["93.184.216.35"]}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _resolve(host: str, port: int) -> list[str]:
    return ADDRESSES.get(host, [])


@pytest.fixture
def world() -> dict[str, Any]:
    store, cipher, sender, clock = MemoryWebhookStore(), ReversibleCipher(), RecordingSender(), Clock()
    policy = UrlPolicy()
    api = WebhooksService(store, cipher, resolve=_resolve, policy=policy, clock=clock)
    delivery = DeliveryService(
        store,
        cipher,
        sender,
        resolve=_resolve,
        policy=policy,
        retry=RetryPolicy(),
        clock=clock,
        jitter=lambda: 0.5,
    )
    store.set_owner("acc_alice", "usr_alice")
    store.set_owner("acc_bob", "usr_bob")
    return {"store": store, "api": api, "delivery": delivery, "sender": sender, "clock": clock}


def _forever() -> int:
    return 10**9


def test_registering_answers_the_secret_once_and_stores_it_encrypted(world: dict[str, Any]) -> None:
    created = world["api"].create("usr_alice", URL, ["vaultpay.transaction.*"], "ops")
    body = created.to_json()
    assert body["status"] == "ENABLED" and body["secret"].startswith("whsec_")
    stored = world["store"].get_webhook("usr_alice", body["webhook_id"])
    assert body["secret"] in stored.secret_enc and stored.secret_enc != body["secret"]
    assert "secret" not in world["api"].get("usr_alice", body["webhook_id"]).view()


def test_another_users_webhook_is_not_found(world: dict[str, Any]) -> None:
    webhook_id = world["api"].create("usr_alice", URL, ["*"]).webhook.webhook_id
    for call in (world["api"].get, world["api"].delete, world["api"].rotate_secret):
        with pytest.raises(WebhookNotFound):
            call("usr_bob", webhook_id)
    with pytest.raises(WebhookNotFound):
        world["api"].get("usr_alice", "not-an-id")


def test_a_user_may_have_at_most_ten_webhooks(world: dict[str, Any]) -> None:
    for _ in range(MAX_WEBHOOKS_PER_USER):
        world["api"].create("usr_alice", URL, ["*"])
    with pytest.raises(WebhookLimitReached):
        world["api"].create("usr_alice", URL, ["*"])
    world["api"].create("usr_bob", URL, ["*"])


def test_a_url_resolving_to_a_private_address_is_refused_at_registration(world: dict[str, Any]) -> None:
    ADDRESSES["internal.example.com"] = ["10.0.0.7"]
    with pytest.raises(WebhookUrlNotAllowed):
        world["api"].create("usr_alice", "https://internal.example.com/", ["*"])
    with pytest.raises(ValidationFailed):
        world["api"].create("usr_alice", URL, ["vaultpay.fraud.result"])


def test_a_completed_transfer_is_delivered_signed_to_sender_and_recipient(world: dict[str, Any]) -> None:
    alice = world["api"].create("usr_alice", URL, ["vaultpay.transaction.*"]).secret
    bob = (
        world["api"]
        .create("usr_bob", "https://slow.example.com/x", ["vaultpay.transaction.completed"])
        .secret
    )
    event = completed_event()
    assert world["delivery"].record(event) == 2
    assert world["delivery"].record(event) == 0  # a redelivered event makes no second delivery
    report = world["delivery"].deliver_due(remaining_ms=_forever)
    assert (report.attempted, report.succeeded) == (2, 2)
    by_url = {url: (body, headers) for url, body, headers in world["sender"].sent}
    body, headers = by_url["https://slow.example.com/x"]
    assert headers["VaultPay-Event-Id"] == event["id"]
    assert headers["VaultPay-Delivery-Id"] == "dlv_" + event["id"].replace("-", "")
    assert verify_signature(headers["VaultPay-Signature"], bob, body, now=int(world["clock"].now))
    assert not verify_signature(headers["VaultPay-Signature"], alice, body, now=int(world["clock"].now))
    seen = json.loads(body)
    assert "user_id" not in seen["data"] and "source_account_id" not in seen["data"] and "actor" not in seen


def test_a_failing_endpoint_is_retried_with_back_off_then_failed(world: dict[str, Any]) -> None:
    webhook = world["api"].create("usr_alice", URL, ["*"]).webhook
    world["sender"].answers[URL] = AttemptResult(500)
    world["delivery"].record(completed_event())
    world["delivery"].deliver_due(remaining_ms=_forever)
    [delivery] = world["api"].deliveries("usr_alice", webhook.webhook_id)["items"]
    assert (
        delivery["status"] == "PENDING" and delivery["attempts"] == 1 and delivery["last_status_code"] == 500
    )
    assert world["delivery"].deliver_due(remaining_ms=_forever).attempted == 0  # not due yet
    world["clock"].now += 60
    assert world["delivery"].deliver_due(remaining_ms=_forever).attempted == 1
    for _ in range(40):
        world["clock"].now += 6 * 3600
        world["delivery"].deliver_due(remaining_ms=_forever)
    [delivery] = world["api"].deliveries("usr_alice", webhook.webhook_id)["items"]
    assert delivery["status"] == "FAILED" and delivery["next_attempt_at"] is None


def test_an_endpoint_failing_every_delivery_for_three_days_is_disabled(world: dict[str, Any]) -> None:
    webhook = world["api"].create("usr_alice", URL, ["*"]).webhook
    world["sender"].answers[URL] = AttemptResult(None, "connection refused")
    for _ in range(80):
        world["delivery"].record(completed_event())
        world["delivery"].deliver_due(remaining_ms=_forever)
        world["clock"].now += 3600
    shown = world["api"].get("usr_alice", webhook.webhook_id)
    assert shown.status is WebhookStatus.DISABLED and shown.view()["status"] == "DISABLED"


def test_a_success_ends_the_run_of_failures(world: dict[str, Any]) -> None:
    webhook = world["api"].create("usr_alice", URL, ["*"]).webhook
    world["sender"].answers[URL] = AttemptResult(503)
    world["delivery"].record(completed_event())
    world["delivery"].deliver_due(remaining_ms=_forever)
    assert world["store"].get_webhook("usr_alice", webhook.webhook_id).failing_since is not None
    world["sender"].answers[URL] = AttemptResult(204)
    world["clock"].now += 120
    world["delivery"].deliver_due(remaining_ms=_forever)
    assert world["store"].get_webhook("usr_alice", webhook.webhook_id).failing_since is None


def test_after_a_rotation_both_secrets_sign_for_a_day(world: dict[str, Any]) -> None:
    created = world["api"].create("usr_alice", URL, ["*"])
    rotated = world["api"].rotate_secret("usr_alice", created.webhook.webhook_id)
    assert rotated.secret != created.secret
    world["delivery"].record(completed_event())
    world["delivery"].deliver_due(remaining_ms=_forever)
    _, body, headers = world["sender"].sent[-1]
    now = int(world["clock"].now)
    assert headers["VaultPay-Signature"].count("v1=") == 2
    assert verify_signature(headers["VaultPay-Signature"], created.secret, body, now=now)
    assert verify_signature(headers["VaultPay-Signature"], rotated.secret, body, now=now)
    world["clock"].now += 24 * 3600 + 1
    world["delivery"].record(completed_event())
    world["delivery"].deliver_due(remaining_ms=_forever)
    _, body, headers = world["sender"].sent[-1]
    assert headers["VaultPay-Signature"].count("v1=") == 1


def test_a_redelivery_sends_a_delivery_again(world: dict[str, Any]) -> None:
    webhook = world["api"].create("usr_alice", URL, ["*"]).webhook
    world["delivery"].record(completed_event())
    world["delivery"].deliver_due(remaining_ms=_forever)
    [delivery] = world["api"].deliveries("usr_alice", webhook.webhook_id)["items"]
    again = world["api"].redeliver("usr_alice", webhook.webhook_id, delivery["delivery_id"])
    assert again["status"] == "PENDING"
    assert world["delivery"].deliver_due(remaining_ms=_forever).succeeded == 1
    with pytest.raises(DeliveryNotFound):
        world["api"].redeliver("usr_alice", webhook.webhook_id, "dlv_" + "0" * 32)
    with pytest.raises(WebhookNotFound):
        world["api"].redeliver("usr_bob", webhook.webhook_id, delivery["delivery_id"])


def test_the_feed_holds_the_callers_own_events_oldest_first(world: dict[str, Any]) -> None:
    # Event ids are time-ordered to the millisecond: the feed's order is theirs.
    events = sorted((completed_event() for _ in range(5)), key=lambda e: e["id"])
    for event in events:
        world["delivery"].record(event)
    first = world["api"].feed("usr_bob", after=None, types=None, limit=3)
    assert [e["id"] for e in first["items"]] == [e["id"] for e in events[:3]]
    rest = world["api"].feed("usr_bob", after=first["next_cursor"], types="vaultpay.transaction.*", limit=3)
    assert [e["id"] for e in rest["items"]] == [e["id"] for e in events[3:]] and rest["next_cursor"] is None
    assert world["api"].feed("usr_carol", after=None, types=None)["items"] == []
    assert world["api"].feed("usr_bob", after=None, types="vaultpay.account.*")["items"] == []
    with pytest.raises(ValidationFailed):
        world["api"].feed("usr_bob", after="nope", types=None)


def test_a_message_that_is_not_a_cloudevent_is_refused(world: dict[str, Any]) -> None:
    with pytest.raises(InvalidEvent):
        world["delivery"].record({"type": "vaultpay.transaction.completed"})


def test_account_created_teaches_the_owner_so_later_events_reach_them(world: dict[str, Any]) -> None:
    created = {
        **completed_event(),
        "type": "vaultpay.account.created",
        "data": {"account_id": "acc_carol", "owner_id": "usr_carol", "type": "SAVINGS", "currency": "INR"},
    }
    world["delivery"].record(created)
    world["delivery"].record(completed_event(destination_account_id="acc_carol"))
    kinds = [e["type"] for e in world["api"].feed("usr_carol", after=None, types=None)["items"]]
    # Two ids made in one millisecond are in no set order: the feed holds both, whatever theirs.
    assert sorted(kinds) == ["vaultpay.account.created", "vaultpay.transaction.completed"]


def test_a_slow_endpoint_does_not_hold_up_another(world: dict[str, Any]) -> None:
    import threading

    released = threading.Event()
    order: list[str] = []

    class SlowFirst(RecordingSender):
        def send(self, target: Any, addresses: Any, body: bytes, headers: Any) -> AttemptResult:
            if "slow" in target.url:
                released.wait(5)
                order.append("slow")
            else:
                order.append("fast")
                released.set()
            return AttemptResult(200)

    world["delivery"]._sender = SlowFirst()
    world["api"].create("usr_bob", "https://slow.example.com/x", ["*"])
    world["api"].create("usr_alice", URL, ["*"])
    world["delivery"].record(completed_event())
    world["delivery"].deliver_due(remaining_ms=_forever)
    assert order == ["fast", "slow"]


def test_a_dead_endpoints_backlog_costs_one_attempt_a_pass_and_crowds_out_no_one(
    world: dict[str, Any],
) -> None:
    dead = world["api"].create("usr_bob", "https://slow.example.com/x", ["*"]).webhook
    world["sender"].answers["https://slow.example.com/x"] = AttemptResult(None, "no answer within 10 s")
    for _ in range(300):
        world["delivery"].record(completed_event())
    world["api"].create("usr_alice", URL, ["*"])
    world["delivery"].record(completed_event())
    report = world["delivery"].deliver_due(remaining_ms=_forever)
    assert (report.attempted, report.succeeded, report.failed_attempts) == (2, 1, 1)
    sent_to_dead = [url for url, _, _ in world["sender"].sent if "slow" in url]
    assert len(sent_to_dead) == 1
    assert world["store"].get_webhook("usr_bob", dead.webhook_id).failing_since is not None

"""Webhooks end to end on the local stage: a transfer reaches the recipient's receiver on 127.0.0.1 signed,
a failing receiver gets a retry within seconds (the local time scale), and the events feed catches up."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.bank import deposit, idempotency_key, open_account, signed_in_customer
from support.webhooks import Receiver

from vaultpay.shared.kernel import epoch_seconds
from vaultpay.webhooks.model import verify_signature

pytestmark = pytest.mark.e2e
RUPEE = 100


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(fail_first: int = 0) -> Receiver:
        made.append(Receiver(fail_first=fail_first))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def _register(client: Any, url: str, events: list[str]) -> dict[str, Any]:
    reply = client.post("/v1/webhooks", {"url": url, "events": events})
    assert reply.status == 201, reply.body
    return dict(reply.body)


def _completed(received: list[Any]) -> list[Any]:
    return [r for r in received if json.loads(r[2])["type"] == "vaultpay.transaction.completed"]


def test_a_transfer_reaches_the_recipients_webhook_signed_and_a_failing_one_is_retried(
    api: Callable[..., Any], admin: Any, receivers: Callable[..., Receiver]
) -> None:
    # Given a funded sender whose endpoint fails once, and a payee whose endpoint answers
    sender = signed_in_customer(api)
    source = open_account(sender)
    assert deposit(admin, source["account_id"], 1_000 * RUPEE).status == 201
    payee = signed_in_customer(api, device_id="payee-phone")
    destination = open_account(payee)
    flaky, steady = receivers(fail_first=1), receivers()
    sender_hook = _register(sender, flaky.url, ["vaultpay.transaction.completed"])
    payee_hook = _register(payee, steady.url, ["vaultpay.transaction.*", "vaultpay.account.*"])
    # When the sender pays the payee
    body = {
        "source_account_id": source["account_id"],
        "destination_account_number": destination["account_number"],
        "amount": 250 * RUPEE,
        "currency": "INR",
    }
    transfer = sender.post("/v1/transfers", body, headers=idempotency_key()).body
    # Then the payee's endpoint receives the completed event, signed with its secret
    [(received_at, headers, raw, _)] = _completed(steady.wait_for(lambda got: bool(_completed(got))))
    event = json.loads(raw)
    # Within seconds of the commit: the consumer and the sweeper each run every second on this time scale
    assert received_at - epoch_seconds(event["time"]) < 30
    assert headers["VaultPay-Event-Id"] == event["id"]
    assert headers["VaultPay-Delivery-Id"] == "dlv_" + event["id"].replace("-", "")
    assert verify_signature(headers["VaultPay-Signature"], payee_hook["secret"], raw, now=int(time.time()))
    assert not verify_signature(
        headers["VaultPay-Signature"], sender_hook["secret"], raw, now=int(time.time())
    )
    # And it tells the payee of the money, nothing of the sender
    assert event["subject"] == transfer["transfer_id"] and event["data"]["amount"] == 250 * RUPEE
    assert event["data"]["destination_account_id"] == destination["account_id"]
    assert (
        "user_id" not in event["data"] and "source_account_id" not in event["data"] and "actor" not in event
    )
    # And the sender's failing endpoint got the same event again, within seconds, and it is SUCCEEDED
    attempts = _completed(flaky.wait_for(lambda got: len(_completed(got)) >= 2))
    assert [a[3] for a in attempts[:2]] == [500, 204]
    assert json.loads(attempts[0][2])["id"] == json.loads(attempts[1][2])["id"]
    assert attempts[1][0] - attempts[0][0] < 60
    listed = sender.get(f"/v1/webhooks/{sender_hook['webhook_id']}/deliveries").body["items"]
    mine = [d for d in listed if d["type"] == "vaultpay.transaction.completed"]
    assert mine[0]["status"] == "SUCCEEDED" and mine[0]["attempts"] == 2
    # And the payee's feed holds the same event, and none of the sender's own
    feed = payee.get("/v1/events?types=vaultpay.transaction.*").body["items"]
    assert event["id"] in [e["id"] for e in feed]
    assert all("user_id" not in e["data"] for e in feed)
    # And another customer sees neither webhook
    assert sender.get(f"/v1/webhooks/{payee_hook['webhook_id']}").status == 404

"""Four eyes on privileged money operations (OWASP API5/API6), attacked over HTTP on the local cloud.

Before: one admin's POST /v1/admin/deposits moved any amount at once, into any account, their own included,
and an admin could decide the fraud review of their own transfer. After: above DepositApprovalThreshold the
money waits for a second admin, and no admin moves money into, or decides about, an account they own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from support.bank import (
    assert_problem,
    create_admin,
    deposit,
    idempotency_key,
    open_account,
    signed_in_admin,
    signed_in_customer,
    waiting_review_alert,
)
from support.cloud import DEPOSIT_APPROVAL_THRESHOLD

pytestmark = pytest.mark.e2e

RUPEE = 100
REVIEW_AMOUNT = 2_00_000 * RUPEE  # held for review by the stage's fraud rules (HIGH_AMOUNT)
LARGE = DEPOSIT_APPROVAL_THRESHOLD + 1


@pytest.fixture(scope="module")
def controller_credentials(local_cloud: Any) -> tuple[str, str]:
    return create_admin(local_cloud)


_controllers: dict[tuple[str, str], Any] = {}


@pytest.fixture
def controller(api: Callable[..., Any], controller_credentials: tuple[str, str]) -> Any:
    """A second admin, signed in once per module (a TOTP code is accepted once per step)."""
    if controller_credentials not in _controllers:
        _controllers[controller_credentials] = signed_in_admin(api, controller_credentials)
    return _controllers[controller_credentials]


def _balance(client: Any, account_id: str) -> dict[str, int]:
    reply = client.get(f"/v1/accounts/{account_id}")
    assert reply.status == 200, reply.body
    return dict(reply.body["balance"])


def _held_for_review(client: Any, source: dict[str, Any], destination: dict[str, Any], admin: Any) -> str:
    """A transfer large enough to be held for review, sent by `client`; its id once the review waits."""
    body = {
        "source_account_id": source["account_id"],
        "destination_account_number": destination["account_number"],
        "amount": REVIEW_AMOUNT,
        "currency": "INR",
    }
    sent = client.post("/v1/transfers", body, headers=idempotency_key())
    assert sent.status == 202, sent.body
    waiting_review_alert(admin, sent.body["transfer_id"])
    return str(sent.body["transfer_id"])


def _pending_ids(admin: Any) -> set[str]:
    ids: set[str] = set()
    cursor = ""
    while True:
        page = admin.get(f"/v1/admin/deposits?status=PENDING_APPROVAL&limit=100{cursor}")
        assert page.status == 200, page.body
        ids |= {item["deposit_id"] for item in page.body["items"]}
        if not page.body["next_cursor"]:
            return ids
        cursor = f"&cursor={page.body['next_cursor']}"


def test_a_large_deposit_moves_nothing_until_a_second_admin_approves_it(
    api: Callable[..., Any], admin: Any, controller: Any
) -> None:
    # Given an admin's deposit above the approval threshold
    customer = signed_in_customer(api)
    account = open_account(customer)
    asked = deposit(admin, account["account_id"], LARGE)
    assert asked.status == 202, asked.body
    assert asked.body["status"] == "PENDING_APPROVAL" and "balance" not in asked.body
    deposit_id = asked.body["deposit_id"]
    # Then no money moved, and it waits in the admins' queue
    assert _balance(customer, account["account_id"]) == {"ledger": 0, "available": 0}
    assert deposit_id in _pending_ids(controller)
    approve = f"/v1/admin/deposits/{deposit_id}/approve"

    # Attack: the admin who asked approves it themselves -> 403, nothing moves
    assert_problem(admin.post(approve, {}), 403, "four_eyes_required")
    # Attack: the customer approves it -> 403 (the authorizer's admin rule)
    assert_problem(customer.post(approve, {}), 403)
    assert _balance(customer, account["account_id"]) == {"ledger": 0, "available": 0}

    # When a second admin approves it
    booked = controller.post(approve, {"reason": "matched the NEFT credit"})
    # Then it is booked once, and leaves the queue
    assert booked.status == 200, booked.body
    assert booked.body["status"] == "BOOKED"
    assert booked.body["balance"] == {"ledger": LARGE, "available": LARGE}
    assert _balance(customer, account["account_id"]) == {"ledger": LARGE, "available": LARGE}
    assert deposit_id not in _pending_ids(controller)
    # And the same approval again answers the same, while a rejection now is refused: decisions stand
    again = controller.post(approve, {})
    assert (again.status, again.body["balance"]) == (200, booked.body["balance"])
    assert_problem(controller.post(f"/v1/admin/deposits/{deposit_id}/reject", {}), 409, "deposit_not_pending")
    assert _balance(customer, account["account_id"])["ledger"] == LARGE


def test_a_rejected_deposit_never_moves_money(api: Callable[..., Any], admin: Any, controller: Any) -> None:
    customer = signed_in_customer(api)
    account = open_account(customer)
    deposit_id = deposit(admin, account["account_id"], LARGE).body["deposit_id"]
    rejected = controller.post(f"/v1/admin/deposits/{deposit_id}/reject", {"reason": "no NEFT credit"})
    assert (rejected.status, rejected.body["status"]) == (200, "REJECTED"), rejected.body
    # Attack: approve it after the rejection, by either admin
    for who in (controller, admin):
        refused = who.post(f"/v1/admin/deposits/{deposit_id}/approve", {})
        assert refused.status in (403, 409), refused.body
    assert _balance(customer, account["account_id"]) == {"ledger": 0, "available": 0}
    assert_problem(
        controller.post(f"/v1/admin/deposits/dep_{'0' * 32}/approve", {}), 404, "deposit_not_found"
    )
    # And the queue lists only what waits: any other status is a validation error (docs/api.md)
    assert_problem(controller.get("/v1/admin/deposits?status=REJECTED"), 422, "validation_failed")


def test_an_admin_cannot_deposit_into_an_account_they_own_at_any_amount(admin: Any) -> None:
    own = open_account(admin)  # admins may hold accounts like anyone
    assert_problem(deposit(admin, own["account_id"], 100), 403, "four_eyes_required")
    assert_problem(deposit(admin, own["account_id"], LARGE), 403, "four_eyes_required")
    assert _balance(admin, own["account_id"]) == {"ledger": 0, "available": 0}


def test_an_admin_cannot_decide_the_review_of_a_transfer_from_their_own_account(
    api: Callable[..., Any], admin: Any, controller: Any
) -> None:
    # Given an admin whose own account (funded by another admin) sends a transfer held for review
    own = open_account(admin)
    assert deposit(controller, own["account_id"], REVIEW_AMOUNT).status == 201
    payee = signed_in_customer(api, device_id="payee-phone")
    destination = open_account(payee)
    transfer_id = _held_for_review(admin, own, destination, controller)
    # Attack: the admin approves their own held transfer -> 403, the saga still waits
    review = f"/v1/admin/fraud/reviews/{transfer_id}"
    assert_problem(admin.post(review, {"decision": "APPROVE", "note": "mine"}), 403, "four_eyes_required")
    assert admin.get(f"/v1/transfers/{transfer_id}").body["status"] == "IN_REVIEW"
    # While the second admin may decide it
    decided = controller.post(review, {"decision": "DECLINE", "note": "second pair of eyes"})
    assert decided.status == 200, decided.body


def test_an_admin_cannot_decide_the_review_of_a_transfer_into_their_own_account(
    api: Callable[..., Any], admin: Any, controller: Any
) -> None:
    sender = signed_in_customer(api)
    source = open_account(sender)
    assert deposit(controller, source["account_id"], REVIEW_AMOUNT).status == 201
    own = open_account(admin)
    transfer_id = _held_for_review(sender, source, own, controller)
    review = f"/v1/admin/fraud/reviews/{transfer_id}"
    assert_problem(admin.post(review, {"decision": "APPROVE", "note": "pay me"}), 403, "four_eyes_required")
    assert controller.post(review, {"decision": "DECLINE", "note": "no"}).status == 200


def test_a_refusal_lands_in_the_audit_log_naming_the_refused_admin(admin: Any, controller: Any) -> None:
    # Given a refused deposit into the admin's own account
    own = open_account(admin)
    assert_problem(deposit(admin, own["account_id"], 100), 403, "four_eyes_required")
    me = admin.get("/v1/me")
    assert me.status == 200, me.body
    # Then the audit log (chained by the audit consumer from the event) holds the refusal
    deadline = time.monotonic() + 60
    while True:
        page = controller.get(
            f"/v1/admin/audit?type=vaultpay.admin.four_eyes_refused&actor={me.body['user_id']}"
        )
        assert page.status == 200, page.body
        mine = [item for item in page.body["items"] if item["subject"] == own["account_id"]]
        if mine:
            break
        assert time.monotonic() < deadline, page.body
        time.sleep(1)
    assert mine[0]["data"] == {"operation": "deposit", "subject": own["account_id"], "reason": "own_account"}

"""OWASP API3:2023 Broken Object Property Level Authorization: writing properties a client does not own
(mass assignment) and reading properties it should not see (excessive data exposure).

Every request body is a `RequestModel` (vaultpay.shared.http: `extra="forbid"`), so a field the contract does
not list is 422; every response is built by an explicit view, so it holds the contract's fields and no more.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from support.bank import (
    PASSWORD,
    SAVINGS,
    assert_problem,
    deposit,
    idempotency_key,
    open_account,
    signed_in_customer,
)

pytestmark = pytest.mark.e2e

# docs/api.md (and the README's additions: `available_after`, a deposit's `deposit_id`).
ME_FIELDS = {"user_id", "email", "full_name", "phone_masked", "role", "created_at"}
ACCOUNT_FIELDS = {
    "account_id",
    "account_number",
    "account_number_masked",
    "type",
    "currency",
    "status",
    "balance",
    "created_at",
}
LISTED_ACCOUNT_FIELDS = ACCOUNT_FIELDS - {"account_number"}
ENTRY_FIELDS = {
    "entry_id",
    "transfer_id",
    "kind",
    "amount",
    "balance_after",
    "available_after",
    "description",
    "created_at",
    "deposit_id",
}
TRANSFER_FIELDS = {
    "transfer_id",
    "status",
    "source_account_id",
    "destination_account_number_masked",
    "amount",
    "currency",
    "description",
    "fraud",
    "failure_reason",
    "created_at",
    "updated_at",
    "steps",
}


def _refused_naming(reply: Any, field: str) -> None:
    assert_problem(reply, 422, "validation_failed")
    assert field in {error["field"] for error in reply.body["errors"]}, reply.body


def test_registering_with_a_property_the_server_owns_is_refused_and_creates_no_one(
    api: Callable[..., Any],
) -> None:
    client = api()
    body = {
        "email": f"mallory.{uuid.uuid4().hex[:10]}@example.com",
        "password": PASSWORD,
        "full_name": "Mallory",
        "phone": "+919876543210",
    }
    for extra in (
        {"role": "admin"},
        {"user_id": "usr_" + "0" * 32},
        {"status": "ACTIVE"},
        {"mfa": {"type": "totp", "secret": "JBSWY3DPEHPK3PXP"}},
    ):
        _refused_naming(client.post("/v1/auth/register", {**body, **extra}, token=None), next(iter(extra)))
    # Nothing was stored: the email is still free
    registered = client.post("/v1/auth/register", body, token=None)
    assert registered.status == 201, registered.body


def test_opening_an_account_cannot_set_its_owner_status_balance_or_number(api: Callable[..., Any]) -> None:
    attacker = signed_in_customer(api, device_id="mass-assigner")
    victim_id = "usr_" + uuid.uuid4().hex
    for extra in (
        {"owner_id": victim_id},
        {"user_id": victim_id},
        {"status": "ACTIVE"},
        {"balance": {"ledger": 10**12, "available": 10**12}},
        {"ledger": 10**12},
        {"account_number": "100000000097"},
        {"account_id": "acc_" + "0" * 32},
    ):
        reply = attacker.post("/v1/accounts", {**SAVINGS, **extra}, headers=idempotency_key())
        _refused_naming(reply, next(iter(extra)))
    # None of them opened anything
    assert attacker.get("/v1/accounts").body["items"] == []


def test_a_transfer_or_a_deposit_cannot_carry_what_the_server_decides(
    api: Callable[..., Any], admin: Any
) -> None:
    client = signed_in_customer(api, device_id="mass-assigner")
    account = open_account(client)
    body = {
        "source_account_id": account["account_id"],
        "destination_account_number": "100000000097",
        "amount": 100,
        "currency": "INR",
    }
    for extra in (
        {"status": "COMPLETED"},
        {"fraud": {"decision": "APPROVE", "score": 0, "reasons": []}},
        {"user_id": "usr_" + "0" * 32},
        {"transfer_id": "tr_" + "0" * 32},
        {"destination_account_id": account["account_id"]},
    ):
        reply = client.post("/v1/transfers", {**body, **extra}, headers=idempotency_key())
        _refused_naming(reply, next(iter(extra)))
    # Not even an admin sets a balance or names the deposit: the ledger does
    for extra in ({"balance": 10**12}, {"deposit_id": "dep_" + "0" * 32}):
        _refused_naming(deposit(admin, account["account_id"], 100, **extra), next(iter(extra)))
    balance = client.get(f"/v1/accounts/{account['account_id']}").body["balance"]
    assert balance == {"ledger": 0, "available": 0}


def test_responses_hold_the_contracts_properties_and_no_more(api: Callable[..., Any], admin: Any) -> None:
    client = signed_in_customer(api, device_id="reader-phone")
    payee = open_account(signed_in_customer(api, device_id="payee-phone"))
    account = open_account(client)
    assert deposit(admin, account["account_id"], 10_000).status == 201
    sent = client.post(
        "/v1/transfers",
        {
            "source_account_id": account["account_id"],
            "destination_account_number": payee["account_number"],
            "amount": 100,
            "currency": "INR",
        },
        headers=idempotency_key(),
    )
    assert sent.status == 202, sent.body

    me = client.get("/v1/me").body
    assert set(me) == ME_FIELDS, me
    assert "9876543210" not in str(me)  # the phone, masked
    assert set(account) == ACCOUNT_FIELDS
    assert set(client.get(f"/v1/accounts/{account['account_id']}").body) == ACCOUNT_FIELDS
    for listed in client.get("/v1/accounts").body["items"]:
        assert set(listed) == LISTED_ACCOUNT_FIELDS, listed
    statement = client.get(f"/v1/accounts/{account['account_id']}/statement").body["items"]
    assert statement, statement
    for entry in statement:
        assert set(entry) <= ENTRY_FIELDS, entry
    for transfer in (sent.body, client.get(f"/v1/transfers/{sent.body['transfer_id']}").body):
        assert set(transfer) == TRANSFER_FIELDS, transfer
        # The payee's full account number is the payee's: the sender sees it masked, like any list
        assert payee["account_number"] not in str(transfer)
    listed = client.get(f"/v1/transfers?account_id={account['account_id']}").body["items"]
    assert payee["account_number"] not in str(listed)


def test_a_customer_sees_the_fraud_decision_but_never_the_risk_score(
    api: Callable[..., Any], admin: Any
) -> None:
    import time

    # Given a customer's transfer the fraud engine has scored
    client = signed_in_customer(api, device_id="scored-phone")
    payee = open_account(signed_in_customer(api, device_id="payee-phone"))
    account = open_account(client)
    assert deposit(admin, account["account_id"], 10_000).status == 201
    body = {
        "source_account_id": account["account_id"],
        "destination_account_number": payee["account_number"],
        "amount": 100,
        "currency": "INR",
    }
    sent = client.post("/v1/transfers", body, headers=idempotency_key())
    assert sent.status == 202, sent.body
    deadline = time.monotonic() + 60
    while True:
        got = client.get(f"/v1/transfers/{sent.body['transfer_id']}").body
        if got.get("fraud") is not None and got["status"] in {"COMPLETED", "DECLINED", "FAILED"}:
            break
        assert time.monotonic() < deadline, got
        time.sleep(0.25)
    # Then the decision and the rules that fired are there, and no score (how far below the limits to stay)
    assert set(got["fraud"]) == {"decision", "reasons"}, got["fraud"]
    listed = client.get(f"/v1/transfers?account_id={account['account_id']}").body["items"]
    assert all("score" not in (item.get("fraud") or {}) for item in listed), listed

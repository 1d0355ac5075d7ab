"""Hostile JSON bodies through the API: never a 5xx, never a second meaning (duplicate keys), on every route.

Before strict parsing, POST /v1/transfers with `"amount"` twice moved the *last* amount, a 5,000-digit integer
and a 5,000-deep nesting answered 500. Each body here is sent to every operation that takes a body, as the
caller it needs (anonymous, customer or admin), so the refusal is the body's, not the authorizer's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.bank import assert_problem, deposit, idempotency_key, open_account, signed_in_customer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = {
    "duplicate key": ('{"email": "a@example.com", "amount": 1, "amount": 2}', 422),
    "5,000-digit integer": ('{"amount": ' + "9" * 5000 + "}", 422),
    "5,000-deep nesting": ("[" * 5000 + "]" * 5000, 422),
    "NaN": ('{"amount": NaN}', 422),
    "70 KiB body": ('{"description": "' + "x" * 70_000 + '"}', 413),
}


def _operations_with_a_body() -> list[tuple[str, str, bool]]:
    document = json.loads((ROOT / "infra" / "openapi" / "openapi.json").read_text())
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                concrete = path.replace("{transfer_id}", "tr_" + "0" * 32)
                found.append((method.upper(), concrete, bool(operation.get("security"))))
    return found


OPERATIONS = _operations_with_a_body()


def test_the_contract_has_operations_with_bodies_to_attack() -> None:
    assert len(OPERATIONS) >= 9, OPERATIONS
    assert ("POST", "/v1/transfers", True) in OPERATIONS


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_body_is_refused_on_every_operation_without_a_5xx(
    name: str, api: Callable[..., Any], admin: Any
) -> None:
    body, status = HOSTILE[name]
    customer = signed_in_customer(api)
    for method, path, protected in OPERATIONS:
        caller = (admin if "/admin/" in path else customer) if protected else api()
        reply = caller.request(
            method,
            path,
            body.encode(),
            headers={"Content-Type": "application/json", **idempotency_key()},
            token="default" if protected else None,
        )
        assert reply.status < 500, (method, path, reply.status, reply.body)
        assert_problem(reply, status, "validation_failed" if status == 422 else "payload_too_large")


def test_a_transfer_with_the_amount_twice_moves_no_money(api: Callable[..., Any], admin: Any) -> None:
    # Given a funded account and a payee
    sender = signed_in_customer(api)
    source = open_account(sender)
    assert deposit(admin, source["account_id"], 10_000_00).status == 201
    payee = open_account(signed_in_customer(api, device_id="payee-phone"))
    # When a transfer body names the amount twice (a proxy reads ₹5, Python's json would read ₹5,000)
    body = (
        json.dumps(
            {"source_account_id": source["account_id"], "destination_account_number": payee["account_number"]}
        )[:-1]
        + ', "amount": 500, "currency": "INR", "amount": 500000}'
    )
    reply = sender.request("POST", "/v1/transfers", body.encode(), headers=idempotency_key())
    # Then it is refused, naming the field, and nothing was held or moved
    assert_problem(reply, 422, "validation_failed")
    assert reply.body["errors"][0]["field"] == "amount"
    time.sleep(0.5)
    balance = sender.get(f"/v1/accounts/{source['account_id']}").body["balance"]
    assert balance == {"ledger": 10_000_00, "available": 10_000_00}
    assert sender.get(f"/v1/transfers?account_id={source['account_id']}").body["items"] == []

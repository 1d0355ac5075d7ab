"""OWASP API4:2023 Unrestricted Resource Consumption: asking for too much in one request.

Pages are capped at 100 items on every list route, a body at 64 KiB (and API Gateway's 10 MB before any
function runs), and every header the API stores or echoes has a length limit. The budgets per account, user
and source address (logins, codes, registrations, transfers) are attacked in
test_api6_sensitive_business_flows.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.bank import SAVINGS, assert_problem, idempotency_key, open_account, signed_in_customer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MAX_PAGE = 100  # docs/api.md: ?limit= 1..100


def _list_operations() -> dict[str, list[str]]:
    """Every GET operation of the OpenAPI document that pages with `limit`: its required query parameters."""
    document = json.loads((ROOT / "infra" / "openapi" / "openapi.json").read_text())
    found = {}
    for path, operations in document["paths"].items():
        parameters = operations.get("get", {}).get("parameters", [])
        if any(p.get("name") == "limit" for p in parameters):
            found[path] = [p["name"] for p in parameters if p.get("in") == "query" and p.get("required")]
    return found


def test_no_list_gives_more_than_a_hundred_items_a_page(api: Callable[..., Any], admin: Any) -> None:
    customer = signed_in_customer(api, device_id="greedy-client")
    account_id = open_account(customer)["account_id"]
    # A webhook of the customer's own, for its deliveries list (never delivered to: no deposit follows)
    hook = customer.post(
        "/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["vaultpay.account.deposited"]}
    )
    assert hook.status == 201, hook.body
    webhook_id = hook.body["webhook_id"]
    operations = _list_operations()
    assert {"/v1/accounts", "/v1/transfers", "/v1/admin/audit"} <= set(operations), operations
    # What a list's required query parameters are given (a new one fails here until it is added)
    values = {"account_id": account_id, "status": "PENDING_APPROVAL"}
    for path, required in sorted(operations.items()):
        caller = admin if path.startswith("/v1/admin") else customer
        url = path.replace("{account_id}", account_id).replace("{webhook_id}", webhook_id) + "?"
        url += "".join(f"{name}={values[name]}&" for name in required)
        # The control: the largest page is served
        assert caller.get(f"{url}limit={MAX_PAGE}").status == 200, path
        for limit in (str(MAX_PAGE + 1), "1" + "0" * 30, "-1"):
            assert_problem(caller.get(f"{url}limit={limit}"), 422, "validation_failed")


def test_a_body_larger_than_the_limit_is_refused_before_it_is_read(api: Callable[..., Any]) -> None:
    anonymous = api()
    # A body just over 64 KiB, to a public route: refused by the function before parsing (413)
    padded = b'{"email": "' + b"a" * (64 * 1024) + b'@example.com"}'
    assert_problem(anonymous.post("/v1/auth/register", padded, token=None), 413, "payload_too_large")
    # A body the size of a file is refused by API Gateway itself: no function is invoked for it
    huge = anonymous.post("/v1/auth/register", b"[" + b"0," * (5 * 1024 * 1024) + b"0]", token=None)
    assert huge.status == 413, huge.body
    assert huge.header("x-amzn-ErrorType") == "RequestTooLargeException", huge.headers


def test_headers_the_api_keeps_or_echoes_have_a_length_limit(api: Callable[..., Any]) -> None:
    client = signed_in_customer(api, device_id="long-headers")
    # The device id (stored per user) and the Idempotency-Key (stored per request) are bounded
    assert_problem(client.get("/v1/me", device="d" * 129), 400, "device_id_required")
    assert_problem(
        client.post("/v1/accounts", SAVINGS, headers={"Idempotency-Key": "k" * 256}),
        400,
        "idempotency_key_required",
    )
    # A correlation id (echoed and logged) of 4 KiB is replaced by one of the API's own
    echoed = client.get("/v1/me", headers={"X-Correlation-Id": "c" * 4096})
    assert echoed.status == 200
    assert len(echoed.header("X-Correlation-Id") or "") <= 128
    # A transfer description (stored and shown on two statements) is at most 140 characters
    account = open_account(client)
    too_long = client.post(
        "/v1/transfers",
        {
            "source_account_id": account["account_id"],
            "destination_account_number": "100000000097",
            "amount": 100,
            "currency": "INR",
            "description": "x" * 141,
        },
        headers=idempotency_key(),
    )
    assert_problem(too_long, 422, "validation_failed")
    assert "description" in {error["field"] for error in too_long.body["errors"]}

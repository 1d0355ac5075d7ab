"""Accounts end to end over HTTP: open, list, read, deposit, statement; BOLA, validation, idempotency."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from support.bank import (
    SAVINGS,
)
from support.bank import (
    assert_problem as _problem,
)
from support.bank import (
    deposit as _deposit,
)
from support.bank import (
    idempotency_key as _key,
)
from support.bank import (
    open_account as _opened,
)
from support.bank import (
    signed_in_customer as _customer,
)

pytestmark = pytest.mark.e2e


def _open(client: Any, body: dict[str, Any] | None = None, *, headers: dict[str, str] | None = None) -> Any:
    return client.post("/v1/accounts", body or SAVINGS, headers=_key() if headers is None else headers)


def _listed(client: Any, expected: int, query: str = "") -> Any:
    """GET /v1/accounts once it shows `expected` accounts (the ByOwner index is eventually consistent)."""
    deadline = time.monotonic() + 10
    while True:
        reply = client.get("/v1/accounts" + query)
        assert reply.status == 200, reply.body
        if len(reply.body["items"]) >= expected or time.monotonic() > deadline:
            return reply
        time.sleep(0.2)


def test_a_customer_opens_lists_and_reads_accounts(api: Callable[..., Any]) -> None:
    client = _customer(api)
    savings = _open(client, SAVINGS)
    current = _open(client, {"type": "CURRENT", "currency": "INR"})

    for reply, account_type in ((savings, "SAVINGS"), (current, "CURRENT")):
        assert reply.status == 201, reply.body
        assert reply.header("Cache-Control") == "no-store"
        assert reply.header("Idempotent-Replayed") is None
        account = reply.body
        assert account["account_id"].startswith("acc_")
        assert (account["type"], account["currency"], account["status"]) == (account_type, "INR", "ACTIVE")
        assert account["balance"] == {"ledger": 0, "available": 0}
        number = account["account_number"]
        assert len(number) == 12 and number.isdigit() and number[0] != "0"
        assert int(number) % 97 == 1  # ISO 7064 MOD 97-10 check digits
        assert account["account_number_masked"] == "XXXXXXXX" + number[-4:]
        assert account["created_at"].endswith("Z")
    assert savings.body["account_number"] != current.body["account_number"]

    listed = _listed(client, 2)
    assert listed.header("Cache-Control") == "no-store"
    assert [a["account_id"] for a in listed.body["items"]] == [
        savings.body["account_id"],
        current.body["account_id"],
    ]  # oldest first
    assert listed.body["next_cursor"] is None
    for item in listed.body["items"]:
        assert "account_number" not in item
        assert item["account_number_masked"].startswith("XXXXXXXX")
    assert savings.body["account_number"] not in json.dumps(listed.body)

    one = client.get(f"/v1/accounts/{savings.body['account_id']}")
    assert one.status == 200, one.body
    assert one.header("Cache-Control") == "no-store"
    assert one.body == savings.body  # the full number again, owner only


def test_the_account_list_pages_with_a_cursor(api: Callable[..., Any]) -> None:
    client = _customer(api)
    opened = [_opened(client)["account_id"] for _ in range(3)]
    _listed(client, 3)
    first = client.get("/v1/accounts?limit=2")
    assert first.status == 200, first.body
    assert first.body["next_cursor"]
    second = client.get(f"/v1/accounts?limit=2&cursor={first.body['next_cursor']}")
    assert second.status == 200, second.body
    assert [a["account_id"] for a in first.body["items"] + second.body["items"]] == opened
    assert second.body["next_cursor"] is None
    _problem(client.get("/v1/accounts?limit=0"), 422, "validation_failed")
    _problem(client.get("/v1/accounts?limit=101"), 422, "validation_failed")
    _problem(client.get("/v1/accounts?cursor=not-a-cursor"), 422, "invalid_cursor")


def test_another_users_account_is_404_exactly_like_an_id_that_does_not_exist(api: Callable[..., Any]) -> None:
    owner, intruder = _customer(api), _customer(api)
    account_id = _opened(owner)["account_id"]
    random_id = "acc_" + uuid.uuid4().hex

    def comparable(reply: Any) -> dict[str, Any]:
        _problem(reply, 404, "account_not_found")
        return {k: v for k, v in reply.body.items() if k != "correlation_id"}

    for suffix in ("", "/statement"):
        theirs = comparable(intruder.get(f"/v1/accounts/{account_id}{suffix}"))
        missing = comparable(intruder.get(f"/v1/accounts/{random_id}{suffix}"))
        malformed = comparable(intruder.get(f"/v1/accounts/not-an-account{suffix}"))
        assert theirs == missing == malformed, suffix
    # The intruder's own list does not show it either
    assert account_id not in json.dumps(intruder.get("/v1/accounts").body)


def test_a_customer_cannot_make_a_deposit(api: Callable[..., Any]) -> None:
    client = _customer(api)
    account_id = _opened(client)["account_id"]
    reply = client.post(
        "/v1/admin/deposits",
        {"account_id": account_id, "amount": 100, "currency": "INR", "reference": "free money"},
        headers=_key(),
    )
    _problem(reply, 403)
    assert client.get(f"/v1/accounts/{account_id}").body["balance"] == {"ledger": 0, "available": 0}


def test_admin_deposits_raise_the_balance_and_the_statement_pages_newest_first(
    api: Callable[..., Any], admin: Any
) -> None:
    client = _customer(api)
    account_id = _opened(client)["account_id"]
    amounts = [100_000, 25_050, 999]
    deposits = []
    for amount in amounts:
        reply = _deposit(admin, account_id, amount)
        assert reply.status == 201, reply.body
        assert reply.header("Cache-Control") == "no-store"
        deposits.append(reply.body)
    last = deposits[-1]
    assert last["deposit_id"].startswith("dep_")
    assert (last["account_id"], last["amount"], last["currency"], last["reference"]) == (
        account_id,
        999,
        "INR",
        "NEFT e2e",
    )
    assert last["balance"] == {"ledger": sum(amounts), "available": sum(amounts)}
    assert len({d["deposit_id"] for d in deposits}) == 3

    account = client.get(f"/v1/accounts/{account_id}").body
    assert account["balance"] == {"ledger": 126_049, "available": 126_049}

    first = client.get(f"/v1/accounts/{account_id}/statement?limit=2")
    assert first.status == 200, first.body
    assert first.header("Cache-Control") == "no-store"
    assert first.body["next_cursor"]
    second = client.get(f"/v1/accounts/{account_id}/statement?limit=2&cursor={first.body['next_cursor']}")
    assert second.status == 200, second.body
    assert second.body["next_cursor"] is None
    entries = first.body["items"] + second.body["items"]
    # Newest first, each with the ledger balance right after it
    assert [e["amount"] for e in entries] == [999, 25_050, 100_000]
    assert [e["balance_after"] for e in entries] == [126_049, 125_050, 100_000]
    assert [e["available_after"] for e in entries] == [126_049, 125_050, 100_000]
    assert {e["kind"] for e in entries} == {"CREDIT"}
    assert [e["deposit_id"] for e in entries] == [d["deposit_id"] for d in reversed(deposits)]
    assert all(e["transfer_id"] is None for e in entries)
    assert len({e["entry_id"] for e in entries}) == 3
    everything = client.get(f"/v1/accounts/{account_id}/statement")
    assert everything.body["items"] == entries
    assert everything.body["next_cursor"] is None
    _problem(client.get(f"/v1/accounts/{account_id}/statement?cursor=bogus"), 422, "invalid_cursor")


@pytest.mark.parametrize(
    "amount",
    [0, -1, 1.5, "100", True, 10**12 + 1, None],
    ids=["0", "-1", "1.5", "str", "bool", "1e12+1", "null"],
)
def test_a_deposit_amount_that_is_not_1_to_10_12_integer_paise_is_422(
    api: Callable[..., Any], admin: Any, amount: Any, request: pytest.FixtureRequest
) -> None:
    account_id = _shared_account(api, request)
    reply = _deposit(admin, account_id, amount)
    _problem(reply, 422, "validation_failed")
    assert [e["field"] for e in reply.body["errors"]] == ["amount"]


def test_deposit_bodies_the_contract_refuses(api: Callable[..., Any], admin: Any) -> None:
    client = _customer(api)
    account_id = _opened(client)["account_id"]
    _problem(_deposit(admin, account_id, 100, currency="USD"), 422, "currency_not_supported")
    _problem(_deposit(admin, account_id, 100, currency="inr"), 422, "validation_failed")
    _problem(_deposit(admin, account_id, 100, fee=0), 422, "validation_failed")
    _problem(_deposit(admin, account_id, 100, reference=""), 422, "validation_failed")
    _problem(_deposit(admin, account_id, 100, reference="x" * 141), 422, "validation_failed")
    _problem(_deposit(admin, "acc_" + uuid.uuid4().hex, 100), 404, "account_not_found")
    missing_key = admin.post(
        "/v1/admin/deposits",
        {"account_id": account_id, "amount": 100, "currency": "INR", "reference": "no key"},
    )
    _problem(missing_key, 400, "idempotency_key_required")
    # Nothing above moved any money
    assert client.get(f"/v1/accounts/{account_id}").body["balance"] == {"ledger": 0, "available": 0}


def test_account_bodies_the_contract_refuses(api: Callable[..., Any]) -> None:
    client = _customer(api)
    _problem(_open(client, {"type": "LOAN", "currency": "INR"}), 422, "validation_failed")
    _problem(_open(client, {"type": "SAVINGS", "currency": "USD"}), 422, "currency_not_supported")
    _problem(_open(client, {**SAVINGS, "owner_id": "usr_someone_else"}), 422, "validation_failed")
    _problem(_open(client, {**SAVINGS, "balance": {"ledger": 10**9}}), 422, "validation_failed")
    _problem(_open(client, {"type": "SAVINGS"}), 422, "validation_failed")
    _problem(_open(client, SAVINGS, headers={}), 400, "idempotency_key_required")
    _problem(_open(client, SAVINGS, headers={"Idempotency-Key": "k" * 256}), 400, "idempotency_key_required")
    assert client.get("/v1/accounts").body["items"] == []


def test_the_same_key_and_body_replays_the_account_and_another_body_is_refused(
    api: Callable[..., Any],
) -> None:
    client, other = _customer(api), _customer(api)
    key = _key()
    first = _open(client, SAVINGS, headers=key)
    again = _open(client, SAVINGS, headers=key)
    assert (first.status, again.status) == (201, 201), (first.body, again.body)
    assert first.header("Idempotent-Replayed") is None
    assert again.header("Idempotent-Replayed") == "true"
    assert again.body == first.body  # the same account, its full number included
    _problem(
        _open(client, {"type": "CURRENT", "currency": "INR"}, headers=key), 422, "idempotency_key_reused"
    )
    # Keys are per user: the same key from someone else opens their own account
    theirs = _open(other, SAVINGS, headers=key)
    assert theirs.status == 201 and theirs.header("Idempotent-Replayed") is None
    assert theirs.body["account_id"] != first.body["account_id"]
    assert len(_listed(client, 1).body["items"]) == 1


def test_the_same_key_sent_concurrently_opens_one_account(api: Callable[..., Any]) -> None:
    client = _customer(api)
    key, clients = _key(), 5
    barrier = threading.Barrier(clients)
    replies: list[Any] = [None] * clients

    def send(index: int) -> None:
        barrier.wait()
        replies[index] = _open(client, SAVINGS, headers=key)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    created = [r for r in replies if r.status == 201 and r.header("Idempotent-Replayed") is None]
    assert len(created) == 1, [(r.status, r.body) for r in replies]
    for reply in replies:
        if reply is created[0]:
            continue
        if reply.status == 201:
            assert reply.header("Idempotent-Replayed") == "true"
            assert reply.body == created[0].body
        else:
            _problem(reply, 409, "request_in_progress")
    time.sleep(1)
    assert len(_listed(client, 1).body["items"]) == 1


def test_a_replayed_deposit_credits_the_account_once(api: Callable[..., Any], admin: Any) -> None:
    client = _customer(api)
    account_id = _opened(client)["account_id"]
    key = _key()
    body = {"account_id": account_id, "amount": 50_000, "currency": "INR", "reference": "retry me"}
    first = admin.post("/v1/admin/deposits", body, headers=key)
    again = admin.post("/v1/admin/deposits", body, headers=key)
    assert (first.status, again.status) == (201, 201), (first.body, again.body)
    assert again.header("Idempotent-Replayed") == "true"
    assert again.body == first.body
    _problem(
        admin.post("/v1/admin/deposits", {**body, "amount": 50_001}, headers=key),
        422,
        "idempotency_key_reused",
    )
    assert client.get(f"/v1/accounts/{account_id}").body["balance"] == {"ledger": 50_000, "available": 50_000}
    assert len(client.get(f"/v1/accounts/{account_id}/statement").body["items"]) == 1


def test_no_table_holds_a_full_account_number_in_plaintext(local_cloud: Any, api: Callable[..., Any]) -> None:
    client = _customer(api)
    key = _key()
    opened = _open(client, SAVINGS, headers=key)
    replayed = _open(client, SAVINGS, headers=key)
    assert replayed.header("Idempotent-Replayed") == "true"
    number = opened.body["account_number"]
    dynamodb = local_cloud.client("dynamodb")
    for table in dynamodb.list_tables()["TableNames"]:
        for page in dynamodb.get_paginator("scan").paginate(TableName=table):
            dump = json.dumps(page["Items"])
            assert number not in dump, f"an account number in plaintext in {table}"
            assert key["Idempotency-Key"] not in dump, f"an Idempotency-Key in plaintext in {table}"


_shared: dict[str, str] = {}


def _shared_account(api: Callable[..., Any], request: pytest.FixtureRequest) -> str:
    """One account for the parametrized validation cases (each would otherwise register a user)."""
    name = request.node.originalname
    if name not in _shared:
        _shared[name] = _opened(_customer(api))["account_id"]
    return _shared[name]


def test_account_events_reach_the_audit_log_through_the_accounts_tables_stream(
    local_cloud: Any, api: Callable[..., Any], admin: Any
) -> None:
    # Given an account opened and funded under one correlation id
    client, correlation_id = _customer(api), f"e2e-{uuid.uuid4().hex}"
    traced = {"X-Correlation-Id": correlation_id}
    opened = client.post("/v1/accounts", SAVINGS, headers={**_key(), **traced})
    assert opened.status == 201, opened.body
    account_id = opened.body["account_id"]
    body = {"account_id": account_id, "amount": 7_500, "currency": "INR", "reference": "traced"}
    assert admin.post("/v1/admin/deposits", body, headers={**_key(), **traced}).status == 201

    # Then both events go outbox -> AccountsTable stream -> relay -> JetStream -> audit log
    expected = {"vaultpay.account.created", "vaultpay.account.deposited"}
    deadline, items = time.monotonic() + 30, []
    while time.monotonic() < deadline:
        reply = admin.get(f"/v1/admin/audit?correlation_id={correlation_id}")
        assert reply.status == 200, reply.body
        items = [i for i in reply.body["items"] if i["type"] in expected]
        if {i["type"] for i in items} == expected:
            break
        time.sleep(0.5)
    assert {i["type"] for i in items} == expected, reply.body
    created = next(i for i in items if i["type"] == "vaultpay.account.created")
    assert created["subject"] == account_id
    assert created["data"]["account_number_masked"] == opened.body["account_number_masked"]
    assert opened.body["account_number"] not in json.dumps(items)

    # And the sweeper is told of every domain table with an outbox, which all exist
    lam = local_cloud.client("lambda")
    variables = lam.get_function_configuration(
        FunctionName=local_cloud.function_name("OutboxSweeperFunction")
    )["Environment"]["Variables"]
    tables = variables["OUTBOX_TABLES"].split(",")
    existing = set(local_cloud.client("dynamodb").list_tables()["TableNames"])
    assert set(tables) <= existing, tables
    assert {name.rpartition("-")[2] for name in tables} == {
        "AuthTable",
        "AccountsTable",
        "TransfersTable",
        "FraudTable",
    }, tables

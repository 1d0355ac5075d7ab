"""OWASP API1:2023 Broken Object Level Authorization: one customer aims at another customer's objects.

Every id a customer can name (an account, a transfer, a page cursor, an Idempotency-Key) is tried by an
intruder who knows the victim's real ids. Each attempt must answer exactly what an id that does not exist
answers (404, same body but the correlation id), so the API neither serves nor confirms the victim's data.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from support.bank import SAVINGS, assert_problem, deposit, idempotency_key, open_account, signed_in_customer
from support.routes import template_routes

pytestmark = pytest.mark.e2e

RUPEE = 100


def _comparable(reply: Any, code: str) -> dict[str, Any]:
    """A 404 problem body without its correlation id (the only part two refusals may differ in)."""
    assert_problem(reply, 404, code)
    return {k: v for k, v in reply.body.items() if k != "correlation_id"}


def _send(client: Any, source_id: str, number: str, amount: int, key: dict[str, str] | None = None) -> Any:
    body = {
        "source_account_id": source_id,
        "destination_account_number": number,
        "amount": amount,
        "currency": "INR",
    }
    return client.post("/v1/transfers", body, headers=key or idempotency_key())


@pytest.fixture
def victim_and_intruder(api: Callable[..., Any]) -> dict[str, Any]:
    """A victim who has sent one transfer to the intruder (the saga declines it: no funds), and the
    intruder with an account of their own."""
    victim = signed_in_customer(api, device_id="victim-phone")
    intruder = signed_in_customer(api, device_id="intruder-laptop")
    source = open_account(victim)
    own = open_account(intruder)
    key = idempotency_key()
    sent = _send(victim, source["account_id"], own["account_number"], 10 * RUPEE, key)
    assert sent.status == 202, sent.body
    return {
        "victim": victim,
        "intruder": intruder,
        "source": source,
        "own": own,
        "transfer_id": sent.body["transfer_id"],
        "transfer_key": key,
    }


def test_another_customers_ids_answer_exactly_like_ids_that_do_not_exist_on_every_customer_route(
    victim_and_intruder: dict[str, Any],
) -> None:
    world = victim_and_intruder
    intruder = world["intruder"]
    # The victim's webhook too (its deliveries and redeliveries are the victim's objects)
    hook = world["victim"].post(
        "/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["vaultpay.account.deposited"]}
    )
    assert hook.status == 201, hook.body
    theirs = {
        "account_id": world["source"]["account_id"],
        "transfer_id": world["transfer_id"],
        "webhook_id": hook.body["webhook_id"],
        "delivery_id": "dlv_" + uuid.uuid4().hex,
    }
    missing = {
        "account_id": "acc_" + uuid.uuid4().hex,
        "transfer_id": "tr_" + uuid.uuid4().hex,
        "webhook_id": "wh_" + uuid.uuid4().hex,
        "delivery_id": "dlv_" + uuid.uuid4().hex,
    }
    # A delivery is looked up under its webhook: another customer's webhook is not found first.
    codes = {
        "account_id": "account_not_found",
        "transfer_id": "transfer_not_found",
        "webhook_id": "webhook_not_found",
        "delivery_id": "webhook_not_found",
    }
    # Every customer route that takes an object id in its path, as the template wires them: a new one is
    # attacked here as soon as it exists (or fails below until this test knows how to fill its id). The
    # intruder is even the payee of the victim's transfer, and still may not read it.
    attacked = []
    for route in template_routes():
        if route.public or route.path.startswith("/v1/admin") or not route.parameters:
            continue
        unknown = set(route.parameters) - set(theirs)
        assert not unknown, f"{route.method} {route.path} takes {unknown}: add it to this attack"
        code = codes[route.parameters[-1]]
        victims = _comparable(intruder.request(route.method, route.concrete(**theirs)), code)
        nobodys = _comparable(intruder.request(route.method, route.concrete(**missing)), code)
        assert victims == nobodys, (route, victims, nobodys)
        attacked.append((route.method, route.path))
    assert ("GET", "/v1/accounts/{account_id}") in attacked
    assert ("GET", "/v1/transfers/{transfer_id}") in attacked
    assert ("DELETE", "/v1/webhooks/{webhook_id}") in attacked

    # The ids that travel in a query or a body: listing the victim's transfers, spending from their account.
    listed = intruder.get(f"/v1/transfers?account_id={theirs['account_id']}")
    assert _comparable(listed, "account_not_found") == _comparable(
        intruder.get(f"/v1/transfers?account_id={missing['account_id']}"), "account_not_found"
    )
    number = world["own"]["account_number"]
    spent = _send(intruder, theirs["account_id"], number, 500 * RUPEE)
    assert _comparable(spent, "account_not_found") == _comparable(
        _send(intruder, missing["account_id"], number, 500 * RUPEE), "account_not_found"
    )
    # And nothing was started in the victim's name: their account shows their own transfer only.
    mine = world["victim"].get(f"/v1/transfers?account_id={theirs['account_id']}")
    assert mine.status == 200, mine.body
    assert [item["transfer_id"] for item in mine.body["items"]] == [world["transfer_id"]]


def test_the_victims_idempotency_keys_replay_nothing_for_the_intruder(
    victim_and_intruder: dict[str, Any],
) -> None:
    world = victim_and_intruder
    victim, intruder = world["victim"], world["intruder"]
    # Given the victim's key and body for a transfer (keys travel in logs and proxies)
    body = {
        "source_account_id": world["source"]["account_id"],
        "destination_account_number": world["own"]["account_number"],
        "amount": 10 * RUPEE,
        "currency": "INR",
    }
    # When the intruder sends the very same request, then it is their own, refused one: not the victim's
    # transfer replayed (a key is scoped to its user, and so is the transfer id derived from it)
    stolen = intruder.post("/v1/transfers", body, headers=world["transfer_key"])
    assert_problem(stolen, 404, "account_not_found")
    assert stolen.header("Idempotent-Replayed") is None
    assert world["transfer_id"] not in str(stolen.body)

    # The same for opening an account: the victim's key opens the intruder an account of their own
    key = idempotency_key()
    mine = victim.post("/v1/accounts", SAVINGS, headers=key)
    assert mine.status == 201, mine.body
    copied = intruder.post("/v1/accounts", SAVINGS, headers=key)
    assert copied.status == 201, copied.body
    assert copied.header("Idempotent-Replayed") is None
    assert copied.body["account_id"] != mine.body["account_id"]
    assert copied.body["account_number"] != mine.body["account_number"]
    assert intruder.get(f"/v1/accounts/{mine.body['account_id']}").status == 404


def _first_page(client: Any, path: str) -> Any:
    """GET `path` (limit=1) once it has a next page (the owner index is eventually consistent)."""
    deadline = time.monotonic() + 10
    while True:
        reply = client.get(path)
        assert reply.status == 200, reply.body
        if reply.body["next_cursor"] or time.monotonic() > deadline:
            assert reply.body["next_cursor"], reply.body
            return reply
        time.sleep(0.2)


def test_the_victims_page_cursors_show_the_intruder_nothing_of_the_victims(
    api: Callable[..., Any], admin: Any
) -> None:
    victim = signed_in_customer(api, device_id="victim-phone")
    intruder = signed_in_customer(api, device_id="intruder-laptop")
    accounts = [open_account(victim) for _ in range(2)]
    for amount in (100, 200):
        assert deposit(admin, accounts[0]["account_id"], amount).status == 201
    own = open_account(intruder)
    # A cursor is opaque, but it is the victim's: the intruder replays it on the same routes
    account_cursor = _first_page(victim, "/v1/accounts?limit=1").body["next_cursor"]
    statement = f"/v1/accounts/{accounts[0]['account_id']}/statement?limit=1"
    statement_cursor = _first_page(victim, statement).body["next_cursor"]

    listed = intruder.get(f"/v1/accounts?limit=100&cursor={account_cursor}")
    seen = str(listed.body)
    assert all(a["account_id"] not in seen and a["account_number"][-4:] not in seen for a in accounts)
    assert listed.status in (200, 422), listed.body
    own_statement = intruder.get(f"/v1/accounts/{own['account_id']}/statement?cursor={statement_cursor}")
    assert own_statement.status in (200, 422), own_statement.body
    assert "entry_id" not in str(own_statement.body.get("items", []))
    assert_problem(
        intruder.get(f"/v1/accounts/{accounts[0]['account_id']}/statement?cursor={statement_cursor}"),
        404,
        "account_not_found",
    )

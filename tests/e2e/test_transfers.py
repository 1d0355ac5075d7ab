"""Transfers end to end over HTTP: the saga through Step Functions, fraud decisions, human review, BOLA."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from support.bank import (
    assert_problem,
    deposit,
    idempotency_key,
    open_account,
    signed_in_customer,
    waiting_review_alert,
)

pytestmark = pytest.mark.e2e

TERMINAL = {"COMPLETED", "DECLINED", "FAILED"}
RUPEE = 100  # paise
# infra/fraud/default-config.json: HIGH_AMOUNT reviews from ₹2,00,000 and declines from ₹10,00,000.
REVIEW_AMOUNT = 2_00_000 * RUPEE
DECLINE_AMOUNT = 10_00_000 * RUPEE


def _funded(api: Callable[..., Any], admin: Any, amount: int) -> tuple[Any, dict[str, Any]]:
    customer = signed_in_customer(api)
    account = open_account(customer)
    reply = deposit(admin, account["account_id"], amount)
    assert reply.status == 201, reply.body
    return customer, account


def _payee(api: Callable[..., Any]) -> tuple[Any, dict[str, Any]]:
    customer = signed_in_customer(api, device_id="payee-phone")
    return customer, open_account(customer)


def _send(client: Any, source: dict[str, Any], destination: dict[str, Any], amount: Any, **extra: Any) -> Any:
    body = {
        "source_account_id": source["account_id"],
        "destination_account_number": destination["account_number"],
        "amount": amount,
        "currency": "INR",
        **extra,
    }
    return client.post("/v1/transfers", body, headers=idempotency_key())


def _settled(
    client: Any, transfer_id: str, until: set[str] = TERMINAL, timeout_s: float = 90
) -> dict[str, Any]:
    """GET the transfer until its status is one of `until`."""
    deadline = time.monotonic() + timeout_s
    while True:
        reply = client.get(f"/v1/transfers/{transfer_id}")
        assert reply.status == 200, reply.body
        if reply.body["status"] in until:
            return dict(reply.body)
        assert time.monotonic() < deadline, reply.body
        time.sleep(0.25)


def _balance(client: Any, account_id: str) -> dict[str, int]:
    reply = client.get(f"/v1/accounts/{account_id}")
    assert reply.status == 200, reply.body
    return dict(reply.body["balance"])


def test_a_transfer_completes_and_moves_the_money_once(api: Callable[..., Any], admin: Any) -> None:
    # Given a customer with ₹1,000 and a payee
    sender, source = _funded(api, admin, 1_000 * RUPEE)
    payee, destination = _payee(api)
    # When the customer sends ₹250
    reply = _send(sender, source, destination, 250 * RUPEE, description="rent share")
    # Then it is accepted at once and completes through the saga
    assert reply.status == 202, reply.body
    accepted = reply.body
    assert accepted["status"] in {"PENDING", "PROCESSING"}
    assert accepted["destination_account_number_masked"].endswith(destination["account_number"][-4:])
    assert destination["account_number"] not in json.dumps(accepted)
    done = _settled(sender, accepted["transfer_id"])
    assert done["status"] == "COMPLETED", done
    assert done["failure_reason"] is None
    assert done["fraud"]["decision"] == "APPROVE"
    assert [step["name"] for step in done["steps"]][-1:] == ["completed"] or done["steps"], done
    # And exactly the amount moved, with nothing left on hold
    assert _balance(sender, source["account_id"]) == {"ledger": 750 * RUPEE, "available": 750 * RUPEE}
    assert _balance(payee, destination["account_id"]) == {"ledger": 250 * RUPEE, "available": 250 * RUPEE}
    # And both statements show it
    debit = sender.get(f"/v1/accounts/{source['account_id']}/statement").body["items"][0]
    assert (debit["kind"], debit["amount"], debit["transfer_id"]) == (
        "DEBIT",
        250 * RUPEE,
        done["transfer_id"],
    )
    credit = payee.get(f"/v1/accounts/{destination['account_id']}/statement").body["items"][0]
    assert (credit["kind"], credit["amount"]) == ("CREDIT", 250 * RUPEE)


def test_the_same_idempotency_key_makes_one_transfer(api: Callable[..., Any], admin: Any) -> None:
    sender, source = _funded(api, admin, 1_000 * RUPEE)
    _payee_client, destination = _payee(api)
    body = {
        "source_account_id": source["account_id"],
        "destination_account_number": destination["account_number"],
        "amount": 100 * RUPEE,
        "currency": "INR",
    }
    key = idempotency_key()
    first = sender.post("/v1/transfers", body, headers=key)
    again = sender.post("/v1/transfers", body, headers=key)
    assert first.status == again.status == 202, (first.body, again.body)
    assert again.header("Idempotent-Replayed") == "true"
    assert again.body["transfer_id"] == first.body["transfer_id"]
    _settled(sender, first.body["transfer_id"])
    assert _balance(sender, source["account_id"])["ledger"] == 900 * RUPEE
    # The same key with another body is refused
    other = sender.post("/v1/transfers", {**body, "amount": 101 * RUPEE}, headers=key)
    assert_problem(other, 422, "idempotency_key_reused")


def test_insufficient_funds_end_declined_and_move_nothing(api: Callable[..., Any], admin: Any) -> None:
    sender, source = _funded(api, admin, 100 * RUPEE)
    _payee_client, destination = _payee(api)
    reply = _send(sender, source, destination, 100 * RUPEE + 1)
    assert reply.status == 202, reply.body
    done = _settled(sender, reply.body["transfer_id"])
    assert (done["status"], done["failure_reason"]) == ("DECLINED", "insufficient_funds")
    assert _balance(sender, source["account_id"]) == {"ledger": 100 * RUPEE, "available": 100 * RUPEE}


def test_a_very_large_transfer_is_declined_by_the_fraud_engine(api: Callable[..., Any], admin: Any) -> None:
    sender, source = _funded(api, admin, DECLINE_AMOUNT)
    _payee_client, destination = _payee(api)
    reply = _send(sender, source, destination, DECLINE_AMOUNT)
    assert reply.status == 202, reply.body
    done = _settled(sender, reply.body["transfer_id"])
    assert (done["status"], done["failure_reason"]) == ("DECLINED", "fraud_declined")
    assert done["fraud"]["decision"] == "DECLINE"
    assert "HIGH_AMOUNT" in done["fraud"]["reasons"]
    assert _balance(sender, source["account_id"]) == {"ledger": DECLINE_AMOUNT, "available": DECLINE_AMOUNT}
    alerts = admin.get("/v1/admin/fraud/alerts?decision=DECLINE")
    assert alerts.status == 200, alerts.body
    assert done["transfer_id"] in {alert["transfer_id"] for alert in alerts.body["items"]}


@pytest.mark.parametrize(("decision", "status"), [("APPROVE", "COMPLETED"), ("DECLINE", "DECLINED")])
def test_a_large_transfer_waits_for_an_admin_who_decides_it(
    api: Callable[..., Any], admin: Any, local_cloud: Any, decision: str, status: str
) -> None:
    # Given a transfer large enough to be held for review
    sender, source = _funded(api, admin, REVIEW_AMOUNT)
    payee, destination = _payee(api)
    reply = _send(sender, source, destination, REVIEW_AMOUNT)
    assert reply.status == 202, reply.body
    transfer_id = reply.body["transfer_id"]
    waiting = _settled(sender, transfer_id, until={"IN_REVIEW"} | TERMINAL)
    assert waiting["status"] == "IN_REVIEW", waiting
    # Then the money is held, not moved
    assert _balance(sender, source["account_id"]) == {"ledger": REVIEW_AMOUNT, "available": 0}
    # And the admin sees it among the alerts, waiting, with the rules that fired and no task token
    alert = waiting_review_alert(admin, transfer_id, timeout_s=10)
    assert "HIGH_AMOUNT" in alert["reasons"]
    assert "token" not in json.dumps(alert).lower()
    # A customer cannot decide it
    assert_problem(
        sender.post(f"/v1/admin/fraud/reviews/{transfer_id}", {"decision": "APPROVE", "note": "me"}), 403
    )
    # When the admin decides
    decided = admin.post(
        f"/v1/admin/fraud/reviews/{transfer_id}", {"decision": decision, "note": "called them"}
    )
    assert decided.status == 200, decided.body
    assert decided.body["transfer_id"] == transfer_id
    # Then the saga resumes and ends as decided
    done = _settled(sender, transfer_id)
    assert done["status"] == status, done
    moved = REVIEW_AMOUNT if decision == "APPROVE" else 0
    assert _balance(sender, source["account_id"]) == {
        "ledger": REVIEW_AMOUNT - moved,
        "available": REVIEW_AMOUNT - moved,
    }
    assert _balance(payee, destination["account_id"])["ledger"] == moved
    if decision == "DECLINE":
        assert done["failure_reason"] == "review_declined"
    # And a second decision is refused
    again = admin.post(f"/v1/admin/fraud/reviews/{transfer_id}", {"decision": decision, "note": "again"})
    assert_problem(again, 409)
    # And the operator reads the whole saga from the Express machine's log: the execution that sent it to
    # review, then the one the review machine (Standard, named after the transfer) started with the decision
    _the_saga_reads_as_two_executions_around_a_review(local_cloud, transfer_id, decision)


def _the_saga_reads_as_two_executions_around_a_review(cloud: Any, transfer_id: str, decision: str) -> None:
    from vaultpay_cli.saga_history import SagaHistory

    sfn = cloud.client("stepfunctions")
    machines = {m["name"]: m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}
    [saga] = [arn for name, arn in machines.items() if name.endswith("-transfer")]
    history = SagaHistory(sfn, cloud.client("logs"), saga)
    assert history.express
    deadline = time.monotonic() + 10  # the last events reach the log as the execution ends
    while True:
        executions = history.of_transfer(transfer_id)
        if (len(executions) == 2 and executions[-1].status != "RUNNING") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    resumed = f"{transfer_id}-{'approved' if decision == 'APPROVE' else 'declined'}"
    assert [(e.name, e.status) for e in executions] == [(transfer_id, "SUCCEEDED"), (resumed, "SUCCEEDED")]
    entered = [
        e["loggedEventDetails"]["name"] for e in executions[0].events if e["type"].endswith("StateEntered")
    ]
    assert entered[-3:] == ["MarkInReview", "StartReview", "InReview"]
    review = sfn.describe_execution(
        executionArn=saga.replace(":stateMachine:", ":execution:") + f"-review:{transfer_id}"
    )
    assert review["status"] == "SUCCEEDED"


def test_a_review_nobody_decides_declines_at_its_timeout(api: Callable[..., Any], admin: Any) -> None:
    # The test cloud runs with ReviewTimeoutSeconds=15 (tests/conftest.py).
    sender, source = _funded(api, admin, REVIEW_AMOUNT)
    _payee_client, destination = _payee(api)
    reply = _send(sender, source, destination, REVIEW_AMOUNT)
    done = _settled(sender, reply.body["transfer_id"], timeout_s=120)
    assert (done["status"], done["failure_reason"]) == ("DECLINED", "review_timeout")
    assert _balance(sender, source["account_id"]) == {"ledger": REVIEW_AMOUNT, "available": REVIEW_AMOUNT}
    late = admin.post(
        f"/v1/admin/fraud/reviews/{done['transfer_id']}", {"decision": "APPROVE", "note": "late"}
    )
    assert_problem(late, 409)


def test_transfers_of_other_users_are_404_in_every_field(api: Callable[..., Any], admin: Any) -> None:
    owner, source = _funded(api, admin, 1_000 * RUPEE)
    intruder, own = _funded(api, admin, 1_000 * RUPEE)
    _payee_client, destination = _payee(api)
    sent = _send(owner, source, destination, 10 * RUPEE)
    assert sent.status == 202, sent.body
    transfer_id = sent.body["transfer_id"]
    # Someone else's source account, transfer or account listing: 404, like things that do not exist
    assert_problem(_send(intruder, source, destination, 10 * RUPEE), 404, "account_not_found")
    assert_problem(intruder.get(f"/v1/transfers/{transfer_id}"), 404, "transfer_not_found")
    assert_problem(intruder.get(f"/v1/transfers/tr_{uuid.uuid4().hex}"), 404, "transfer_not_found")
    assert_problem(intruder.get(f"/v1/transfers?account_id={source['account_id']}"), 404, "account_not_found")
    # While the owner lists it
    listed = owner.get(f"/v1/transfers?account_id={source['account_id']}")
    assert listed.status == 200, listed.body
    assert transfer_id in {item["transfer_id"] for item in listed.body["items"]}
    assert _balance(intruder, own["account_id"])["ledger"] == 1_000 * RUPEE


def test_transfer_bodies_the_contract_refuses(api: Callable[..., Any], admin: Any) -> None:
    sender, source = _funded(api, admin, 1_000 * RUPEE)
    _payee_client, destination = _payee(api)
    number = destination["account_number"]
    typo = number[:-1] + str((int(number[-1]) + 1) % 10)
    unknown_valid = _valid_unknown_number(number)
    for amount in (0, -1, 1.5, "100", True, 10**12 + 1):
        assert_problem(_send(sender, source, destination, amount), 422)
    assert_problem(_send(sender, source, {"account_number": typo}, 100), 422, "invalid_account_number")
    assert_problem(
        _send(sender, source, {"account_number": unknown_valid}, 100), 422, "destination_not_found"
    )
    assert_problem(_send(sender, source, source, 100), 422, "same_account")
    missing_key = sender.post(
        "/v1/transfers",
        {
            "source_account_id": source["account_id"],
            "destination_account_number": number,
            "amount": 100,
            "currency": "INR",
        },
    )
    assert_problem(missing_key, 400, "idempotency_key_required")
    assert _balance(sender, source["account_id"])["ledger"] == 1_000 * RUPEE


def _valid_unknown_number(near: str) -> str:
    """A well-formed account number (check digits right) that no account has."""
    from vaultpay.accounts.model import account_number_problem

    base = int(near[:10])
    for delta in range(1, 1000):
        body = str((base + delta * 7919) % 9_000_000_000 + 1_000_000_000)
        check = 98 - (int(body + "00") % 97)
        candidate = f"{body}{check:02d}"
        if account_number_problem(candidate) is None:
            return candidate
    raise AssertionError("no candidate number")


def test_saga_events_reach_the_audit_log_with_the_requests_correlation_id(
    api: Callable[..., Any], admin: Any
) -> None:
    sender, source = _funded(api, admin, 1_000 * RUPEE)
    _payee_client, destination = _payee(api)
    correlation_id = f"corr-{uuid.uuid4().hex[:12]}"
    reply = sender.post(
        "/v1/transfers",
        {
            "source_account_id": source["account_id"],
            "destination_account_number": destination["account_number"],
            "amount": 10 * RUPEE,
            "currency": "INR",
        },
        headers={**idempotency_key(), "X-Correlation-Id": correlation_id},
    )
    assert reply.status == 202, reply.body
    _settled(sender, reply.body["transfer_id"])
    expected = {
        "vaultpay.transaction.initiated",
        "vaultpay.transaction.debit.requested",
        "vaultpay.fraud.check.requested",
        "vaultpay.fraud.result",
        "vaultpay.transaction.credit.requested",
        "vaultpay.transaction.completed",
    }
    deadline = time.monotonic() + 60
    while True:
        audit = admin.get(f"/v1/admin/audit?correlation_id={correlation_id}&limit=100")
        assert audit.status == 200, audit.body
        seen = {record["type"] for record in audit.body["items"]}
        if expected <= seen or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert expected <= seen, sorted(seen)


def test_after_a_device_mismatch_the_users_next_transfer_scores_device_mismatch(
    api: Callable[..., Any], admin: Any
) -> None:
    # Given a customer whose token was presented from another device (401 device_mismatch, an event)
    sender, source = _funded(api, admin, 1_000 * RUPEE)
    _payee_client, destination = _payee(api)
    assert_problem(sender.get("/v1/me", device="thiefs-laptop"), 401, "device_mismatch")
    # When (once the fraud-workers consumer folded it into her profile) she pays from her own device
    deadline = time.monotonic() + 60
    while True:
        reply = _send(sender, source, destination, 10 * RUPEE)
        assert reply.status == 202, reply.body
        done = _settled(sender, reply.body["transfer_id"], until={"IN_REVIEW"} | TERMINAL)
        # Then DEVICE_MISMATCH fires, as docs/api.md says the fraud engine counts the mismatch
        if "DEVICE_MISMATCH" in (done.get("fraud") or {}).get("reasons", []):
            break
        assert time.monotonic() < deadline, done  # the consumer runs every second at the test time scale
        time.sleep(1)
    assert done["fraud"]["decision"] in {"REVIEW", "DECLINE"}, done

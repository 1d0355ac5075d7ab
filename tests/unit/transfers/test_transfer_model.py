"""The transfer's rules without I/O: ids, the status table of the saga's ops, the view, and the events."""

from __future__ import annotations

import hashlib
import json

import pytest

from vaultpay.transfers.errors import InvalidStepInput, TransferFinal
from vaultpay.transfers.model import (
    Change,
    Op,
    Parties,
    Transfer,
    TransferStatus,
    Unchanged,
    new_transfer,
    parse_status_event,
    plan_status,
    transfer_id_for,
)

pytestmark = pytest.mark.unit

AT = "2026-11-28T12:00:00.000Z"
LATER = "2026-11-28T12:00:01.000Z"
PARTIES = Parties("acc_" + "1" * 32, "acc_" + "2" * 32, "XXXXXXXX5678", "INR")
FRAUD = {
    "decision": "APPROVE",
    "score": 12,
    "reasons": [],
    "rules": [{"rule": "X", "score": 1}],
    "decided_at": AT,
}


def _pending(**changes: object) -> Transfer:
    transfer, _event = new_transfer(
        transfer_id="tr_" + "f" * 32,
        user_id="usr_1",
        parties=PARTIES,
        amount=250_000,
        description="rent",
        correlation_id="corr-1",
        at=AT,
    )
    return Transfer(**{**{f: getattr(transfer, f) for f in transfer.__slots__}, **changes})  # type: ignore[arg-type]


def _op(op: str, **state: object) -> dict[str, object]:
    return {"op": op, "state": {"transfer_id": "tr_" + "f" * 32, "amount": 250_000, **state}}


def _apply(transfer: Transfer, op: str, **state: object) -> Change | Unchanged:
    return plan_status(transfer, parse_status_event(_op(op, **state)), at=LATER)


def _through(*ops: str) -> Transfer:
    transfer = _pending()
    for op in ops:
        decision = _apply(transfer, op, fraud=FRAUD)
        transfer = decision.after if isinstance(decision, Change) else decision.transfer
    return transfer


def test_the_transfer_id_is_derived_from_the_requests_idempotency_scope() -> None:
    scope = "POST /v1/transfers#usr_1#key-1"
    expected = "tr_" + hashlib.sha256(scope.encode()).hexdigest()[:32]
    # Same user and key: the same transfer; another key or user: another transfer
    assert transfer_id_for(scope) == expected == transfer_id_for(scope)
    assert transfer_id_for("POST /v1/transfers#usr_1#key-2") != expected
    assert transfer_id_for("POST /v1/transfers#usr_2#key-1") != expected


def test_a_new_transfer_is_pending_and_announces_itself_without_the_account_number() -> None:
    transfer, event = new_transfer(
        transfer_id="tr_" + "f" * 32, user_id="usr_1", parties=PARTIES, amount=1, description=None,
        correlation_id="corr-1", at=AT,
    )  # fmt: skip
    assert transfer.status is TransferStatus.PENDING
    assert [step.to_json() for step in transfer.steps] == [
        {"name": "initiated", "status": "PENDING", "at": AT}
    ]
    assert event.type == "vaultpay.transaction.initiated"
    assert event.correlation_id == "corr-1"
    assert dict(event.data) == {
        "transfer_id": transfer.transfer_id,
        "user_id": "usr_1",
        "source_account_id": PARTIES.source_account_id,
        "destination_account_id": PARTIES.destination_account_id,
        "amount": 1,
        "currency": "INR",
    }


def test_the_view_is_exactly_the_api_transfer_shape() -> None:
    # Given a transfer the fraud engine approved
    view = _through("processing", "approved").view()
    # Then it has docs/api.md's fields and no others, and the fraud result without its rule details
    assert list(view) == [
        "transfer_id", "status", "source_account_id", "destination_account_number_masked", "amount",
        "currency", "description", "fraud", "failure_reason", "created_at", "updated_at", "steps",
    ]  # fmt: skip
    assert view["fraud"] == {"decision": "APPROVE", "reasons": []}  # never the score to a customer
    assert view["failure_reason"] is None
    assert [s["name"] for s in view["steps"]] == ["initiated", "processing", "approved"]
    assert "destination_account_id" not in json.dumps(view)


def test_only_the_internal_view_shows_the_fraud_score_and_neither_shows_rule_weights() -> None:
    transfer = _through("processing", "approved")
    assert "score" not in json.dumps(transfer.view())
    internal = transfer.view(internal=True)
    assert internal["fraud"] == {"decision": "APPROVE", "reasons": [], "score": 12}
    assert "rules" not in json.dumps(internal)


@pytest.mark.parametrize(
    ("ops", "status", "events"),
    [
        (["processing"], "PROCESSING", ["debit.requested"]),
        (
            ["processing", "approved", "complete"],
            "COMPLETED",
            ["debit.requested", "credit.requested", "completed"],
        ),
        (["processing", "in_review"], "IN_REVIEW", ["debit.requested"]),
        (
            ["processing", "in_review", "approved", "complete"],
            "COMPLETED",
            ["debit.requested", "credit.requested", "completed"],
        ),
        (["processing", "decline"], "DECLINED", ["debit.requested", "declined"]),
        (["processing", "in_review", "decline"], "DECLINED", ["debit.requested", "declined"]),
        (["fail"], "FAILED", ["failed"]),
        (["processing", "fail"], "FAILED", ["debit.requested", "failed"]),
    ],
)
def test_each_saga_path_ends_in_its_status_with_its_events(
    ops: list[str], status: str, events: list[str]
) -> None:
    transfer, seen = _pending(), []
    for op in ops:
        decision = _apply(transfer, op, fraud=FRAUD, failure_reason="fraud_declined")
        assert isinstance(decision, Change), op
        assert (decision.expected_status, decision.expected_version) == (transfer.status, transfer.version)
        seen += [event.type.removeprefix("vaultpay.transaction.") for event in decision.events]
        transfer = decision.after
    assert transfer.status.value == status
    assert seen == events
    assert transfer.version == 1 + len(ops)


@pytest.mark.parametrize("ops", [["processing"], ["processing", "approved"], ["processing", "in_review"]])
def test_repeating_an_op_changes_nothing_and_answers_the_same_view(ops: list[str]) -> None:
    # Given a transfer the op was already applied to (Step Functions delivers a task at least once)
    transfer = _through(*ops)
    # When it comes again
    decision = _apply(transfer, ops[-1], fraud=FRAUD)
    # Then nothing is written and the answer is the transfer as it stands
    assert decision == Unchanged(transfer)


@pytest.mark.parametrize(
    ("final_ops", "same_op"),
    [
        (["processing", "approved", "complete"], "complete"),
        (["processing", "decline"], "decline"),
        (["fail"], "fail"),
    ],
)
def test_a_terminal_transfer_never_changes_again(final_ops: list[str], same_op: str) -> None:
    transfer = _through(*final_ops)
    # The op that ended it is a harmless repeat
    assert _apply(transfer, same_op) == Unchanged(transfer)
    # Every other op is refused as final
    for op in {"processing", "approved", "in_review", "complete", "decline", "fail"} - {same_op}:
        with pytest.raises(TransferFinal):
            _apply(transfer, op)


def test_an_op_out_of_order_is_invalid_step_input() -> None:
    with pytest.raises(InvalidStepInput):
        _apply(_pending(), "complete")
    with pytest.raises(InvalidStepInput):
        _apply(_pending(), "approved")


def test_decline_records_the_sagas_reason_and_the_fraud_result() -> None:
    declined = _apply(
        _through("processing"),
        "decline",
        failure_reason="fraud_declined",
        fraud={**FRAUD, "decision": "DECLINE"},
    )
    assert isinstance(declined, Change)
    assert declined.after.failure_reason == "fraud_declined"
    assert declined.after.view()["fraud"]["decision"] == "DECLINE"
    (event,) = declined.events
    assert dict(event.data) == {
        "transfer_id": declined.after.transfer_id,
        "user_id": "usr_1",
        "failure_reason": "fraud_declined",
        "amount": 250_000,
        "currency": "INR",
    }


def test_a_reason_may_come_as_failure_reason_or_inside_failure() -> None:
    nested = _apply(_through("processing"), "decline", failure={"reason": "review_timeout"})
    assert isinstance(nested, Change)
    assert nested.after.failure_reason == "review_timeout"


def test_fail_after_a_released_hold_reports_the_compensation_then_the_failure() -> None:
    # Given a step failed after funds were held, and the compensation released them
    failed = _apply(
        _through("processing"),
        "fail",
        hold={"amount": 250_000, "status": "HELD"},
        release={"amount": 250_000, "status": "RELEASED"},
        failure={"Error": "AccountNotActive", "Cause": "{...}"},
    )
    # Then the transfer is FAILED for the step's reason, with both events in order
    assert isinstance(failed, Change)
    assert failed.after.failure_reason == "account_not_active"
    assert [e.type for e in failed.events] == [
        "vaultpay.transaction.compensated",
        "vaultpay.transaction.failed",
    ]
    assert dict(failed.events[0].data)["amount"] == 250_000


def test_fail_before_any_hold_reports_only_the_failure_with_a_generic_reason() -> None:
    failed = _apply(
        _pending(), "fail", release={"amount": 0, "status": "RELEASED"}, failure={"Error": "States.Timeout"}
    )
    assert isinstance(failed, Change)
    assert failed.after.failure_reason == "step_failed"
    assert [e.type for e in failed.events] == ["vaultpay.transaction.failed"]


@pytest.mark.parametrize(
    "event",
    [
        None,
        {"op": "explode", "transfer_id": "tr_" + "f" * 32},
        {"op": "processing"},
        {"op": "processing", "state": {"transfer_id": "trf_nope"}},
        {"op": "processing", "state": {"transfer_id": "tr_" + "f" * 32, "amount": 1.5}},
    ],
)
def test_malformed_step_input_is_invalid_step_input(event: object) -> None:
    with pytest.raises(InvalidStepInput):
        parse_status_event(event)


def test_a_state_naming_another_amount_or_source_is_refused() -> None:
    with pytest.raises(InvalidStepInput):
        _apply(_pending(), "processing", amount=1)
    with pytest.raises(InvalidStepInput):
        _apply(_pending(), "processing", source_account_id="acc_" + "9" * 32)


def test_the_flat_input_shape_is_accepted_too() -> None:
    command = parse_status_event({"op": "view", "transfer_id": "tr_" + "f" * 32})
    assert (command.op, command.transfer_id) == (Op.VIEW, "tr_" + "f" * 32)


def test_the_saga_input_carries_what_every_step_needs() -> None:
    saga = _pending(description=None).saga_input(device_id="phone-1")
    assert saga == {
        "transfer_id": "tr_" + "f" * 32,
        "correlation_id": "corr-1",
        "user_id": "usr_1",
        "device_id": "phone-1",
        "source_account_id": PARTIES.source_account_id,
        "destination_account_id": PARTIES.destination_account_id,
        "amount": 250_000,
        "currency": "INR",
        "description": None,
        "created_at": AT,
    }
    # The ledger steps accept it as is
    from vaultpay.accounts.model import parse_step

    assert parse_step(saga, needs_destination=True).destination_account_id == PARTIES.destination_account_id


def test_the_sample_status_events_parse_and_the_sample_body_is_valid() -> None:
    from pathlib import Path

    from vaultpay.accounts.model import account_number_problem

    root = Path(__file__).resolve().parents[3] / "events"
    for name in ("status_processing", "status_decline", "status_view"):
        parse_status_event(json.loads((root / "transfers" / f"{name}.json").read_text()))
    body = json.loads(json.loads((root / "transfers" / "create.json").read_text())["body"])
    assert account_number_problem(body["destination_account_number"]) is None

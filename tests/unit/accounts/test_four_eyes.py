"""Four eyes on deposits: above the threshold nothing moves until a second admin approves (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest
from support.accounts import make_service

from vaultpay.accounts.errors import DepositNotFound, DepositNotPending
from vaultpay.accounts.memory import MemoryLedgerStore
from vaultpay.accounts.model import DepositStatus, four_eyes_problem
from vaultpay.accounts.service import AccountsService
from vaultpay.shared.errors import FourEyesRequired

pytestmark = pytest.mark.unit

THRESHOLD = 10_000_000


@pytest.fixture
def bank() -> tuple[AccountsService, MemoryLedgerStore, str]:
    service, store = make_service(deposit_approval_threshold=THRESHOLD)
    account = service.open_account("user-a", "SAVINGS", "INR", "corr-0").account_id
    return service, store, account


def _types(store: MemoryLedgerStore) -> list[str]:
    return [event.type for event in store.events]


def test_a_deposit_at_the_threshold_is_booked_at_once(bank: Any) -> None:
    service, store, account = bank
    view = service.deposit("admin-1", account, THRESHOLD, "INR", "NEFT", "c-1")
    assert view.status == "BOOKED" and view.balance is not None and view.balance.ledger == THRESHOLD
    assert store.accounts[account].ledger == THRESHOLD


def test_a_deposit_above_the_threshold_moves_no_money_until_a_second_admin_approves(bank: Any) -> None:
    service, store, account = bank
    # Given a deposit one paisa above the threshold
    pending = service.deposit("admin-1", account, THRESHOLD + 1, "INR", "NEFT", "c-1", request_id="r-1")
    # Then it waits, and no balance, shard or deposit total has moved
    assert pending.status == "PENDING_APPROVAL" and pending.balance is None
    assert store.snapshot() == {"customer_total": 0, "settlement_total": 0, "deposits_total": 0}
    assert [d.deposit_id for d in service.pending_deposits(limit=10, cursor=None)[0]] == [pending.deposit_id]
    assert _types(store)[-1] == "vaultpay.account.deposit_approval_requested"
    # And the same request again names the same pending deposit
    again = service.deposit("admin-1", account, THRESHOLD + 1, "INR", "NEFT", "c-2", request_id="r-1")
    assert again.to_json() == pending.to_json()

    # When a second admin approves it
    booked = service.decide_deposit(
        "admin-2", pending.deposit_id, approve=True, reason=None, correlation_id="c"
    )
    # Then it is booked once, against a settlement shard, and leaves the queue
    assert booked.status == "BOOKED" and booked.decided_by == "admin-2" and booked.requested_by == "admin-1"
    assert booked.balance is not None and booked.balance.ledger == THRESHOLD + 1
    assert store.snapshot() == {
        "customer_total": THRESHOLD + 1,
        "settlement_total": -(THRESHOLD + 1),
        "deposits_total": THRESHOLD + 1,
    }
    assert service.pending_deposits(limit=10, cursor=None)[0] == []
    assert _types(store)[-2:] == ["vaultpay.account.deposit_approved", "vaultpay.account.deposited"]
    # And approving again (a retried request) answers the same and moves nothing twice
    repeat = service.decide_deposit(
        "admin-2", pending.deposit_id, approve=True, reason=None, correlation_id="c"
    )
    assert repeat.to_json() == booked.to_json()
    assert store.accounts[account].ledger == THRESHOLD + 1


def test_the_admin_who_asked_cannot_approve_or_reject_and_the_refusal_is_an_event(bank: Any) -> None:
    service, store, account = bank
    pending = service.deposit("admin-1", account, THRESHOLD * 5, "INR", "NEFT", "c-1")
    for approve in (True, False):
        with pytest.raises(FourEyesRequired) as refused:
            service.decide_deposit(
                "admin-1", pending.deposit_id, approve=approve, reason=None, correlation_id="c"
            )
        assert refused.value.status == 403 and refused.value.code == "four_eyes_required"
        event = store.events[-1]
        assert event.type == "vaultpay.admin.four_eyes_refused"
        assert event.actor == "admin-1"
        assert event.data == {
            "operation": "deposit_approval" if approve else "deposit_rejection",
            "subject": pending.deposit_id,
            "reason": "requested_by_same_admin",
        }
    assert store.accounts[account].ledger == 0
    assert store.deposits[pending.deposit_id].status is DepositStatus.PENDING_APPROVAL


def test_an_admin_cannot_deposit_into_or_approve_for_an_account_they_own(bank: Any) -> None:
    service, store, _account = bank
    own = service.open_account("admin-2", "SAVINGS", "INR", "c-0").account_id
    with pytest.raises(FourEyesRequired):
        service.deposit("admin-2", own, 100, "INR", "NEFT", "c-1")  # even a small one
    assert store.events[-1].data["reason"] == "own_account"
    pending = service.deposit("admin-1", own, THRESHOLD + 1, "INR", "NEFT", "c-2")
    with pytest.raises(FourEyesRequired):
        service.decide_deposit("admin-2", pending.deposit_id, approve=True, reason=None, correlation_id="c")
    assert store.accounts[own].ledger == 0
    # A third admin, who neither asked nor owns the account, may
    booked = service.decide_deposit(
        "admin-3", pending.deposit_id, approve=True, reason=None, correlation_id="c"
    )
    assert booked.status == "BOOKED"


def test_a_rejected_deposit_moves_nothing_and_can_never_be_approved(bank: Any) -> None:
    service, store, account = bank
    pending = service.deposit("admin-1", account, THRESHOLD + 1, "INR", "NEFT", "c-1")
    rejected = service.decide_deposit(
        "admin-2", pending.deposit_id, approve=False, reason="no matching NEFT credit", correlation_id="c"
    )
    assert rejected.status == "REJECTED" and rejected.balance is None
    assert store.deposits[pending.deposit_id].decision_reason == "no matching NEFT credit"
    assert _types(store)[-1] == "vaultpay.account.deposit_rejected"
    with pytest.raises(DepositNotPending):
        service.decide_deposit("admin-3", pending.deposit_id, approve=True, reason=None, correlation_id="c")
    with pytest.raises(DepositNotPending):  # nor approved by the admin who rejected it
        service.decide_deposit("admin-2", pending.deposit_id, approve=True, reason=None, correlation_id="c")
    assert store.snapshot() == {"customer_total": 0, "settlement_total": 0, "deposits_total": 0}


def test_an_unknown_or_malformed_deposit_id_is_not_found(bank: Any) -> None:
    service, _store, _account = bank
    for deposit_id in ("dep_" + "0" * 32, "dep_x", "../../etc", ""):
        with pytest.raises(DepositNotFound):
            service.decide_deposit("admin-2", deposit_id, approve=True, reason=None, correlation_id="c")


@pytest.mark.parametrize(
    ("actor", "owner", "requested_by", "problem"),
    [
        ("a", "b", None, None),
        ("a", "a", None, "own_account"),
        ("a", "b", "a", "requested_by_same_admin"),
        ("a", "a", "a", "requested_by_same_admin"),
        ("a", None, "c", None),
    ],
)
def test_four_eyes_rules(
    actor: str, owner: str | None, requested_by: str | None, problem: str | None
) -> None:
    assert four_eyes_problem(actor=actor, account_owner=owner, requested_by=requested_by) == problem

"""The ledger's rules through the accounts service with an in-memory store: no I/O, a fixed clock."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from support.accounts import make_service

from vaultpay.accounts.errors import (
    AccountNotActive,
    AccountNotFound,
    CurrencyMismatch,
    HoldNotFound,
    HoldNotOpen,
    InsufficientFunds,
    InvalidStepInput,
    StepConflict,
)
from vaultpay.accounts.memory import MemoryLedgerStore
from vaultpay.accounts.model import (
    SETTLEMENT_SHARDS,
    AccountStatus,
    EntryKind,
    HoldStatus,
    account_number_problem,
    check_digits,
    new_account_number,
    settlement_shard,
)
from vaultpay.accounts.ports import StaleRead
from vaultpay.accounts.service import AccountsService
from vaultpay.shared.errors import ConcurrentModification, ValidationFailed

pytestmark = pytest.mark.unit


def _step(transfer_id: str, source: str, amount: int, destination: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "transfer_id": transfer_id,
        "source_account_id": source,
        "amount": amount,
        "currency": "INR",
        "correlation_id": "corr-1",
    }
    if destination is not None:
        event["destination_account_id"] = destination
    return event


@pytest.fixture
def bank() -> tuple[AccountsService, MemoryLedgerStore, str, str]:
    service, store = make_service()
    alice = service.open_account("user-a", "SAVINGS", "INR", "corr-0").account_id
    bob = service.open_account("user-b", "CURRENT", "INR", "corr-0").account_id
    service.deposit("admin", alice, 10_000, "INR", "seed", "corr-0")
    return service, store, alice, bob


# ---- account numbers ------------------------------------------------------------------------------------


def test_new_account_numbers_are_twelve_digits_that_pass_their_check() -> None:
    for _ in range(500):
        number = new_account_number()
        assert len(number) == 12 and number.isdigit() and number[0] != "0"
        assert account_number_problem(number) is None


def test_every_single_digit_typo_is_caught() -> None:
    number = new_account_number()
    for position in range(12):
        for digit in "0123456789":
            if digit != number[position]:
                typo = number[:position] + digit + number[position + 1 :]
                assert account_number_problem(typo) is not None, typo


def test_every_adjacent_transposition_is_caught() -> None:
    for _ in range(200):
        number = new_account_number()
        for i in range(11):
            if number[i] != number[i + 1]:
                swapped = number[:i] + number[i + 1] + number[i] + number[i + 2 :]
                assert account_number_problem(swapped) is not None, swapped


def test_check_digits_follow_iso_7064_mod_97_10() -> None:
    # The IBAN scheme: the number read as an integer is 1 modulo 97.
    assert int("1234567890" + check_digits("1234567890")) % 97 == 1
    for bad in ("", "12345", "12345678901a", "\uff11" * 12, "1234567890123"):
        assert account_number_problem(bad) is not None


def test_settlement_shards_spread_deposits_over_every_shard() -> None:
    shards = {settlement_shard(f"dep_{i}") for i in range(2_000)}
    assert shards == {f"settlement-{i:02d}" for i in range(SETTLEMENT_SHARDS)}


# ---- opening and reading accounts ----------------------------------------------------------------------


def test_an_opened_account_shows_its_number_once_in_full_and_stores_it_encrypted() -> None:
    service, store = make_service()
    view = service.open_account("user-a", "SAVINGS", "INR", "corr-1")
    body = view.to_json()
    assert body["account_number"].isdigit() and len(body["account_number"]) == 12
    assert body["account_number_masked"] == "XXXXXXXX" + body["account_number"][-4:]
    assert body["balance"] == {"ledger": 0, "available": 0} and body["status"] == "ACTIVE"
    stored = store.accounts[view.account_id]
    assert body["account_number"] not in stored.number_enc
    (event,) = store.events
    assert event.type == "vaultpay.account.created"
    assert body["account_number"] not in event.data_json()
    listed = service.list_accounts("user-a", limit=10, cursor=None).to_json()["items"]
    assert "account_number" not in listed[0]
    assert service.get_account("user-a", view.account_id).account_number == body["account_number"]
    assert service.account_id_for_number(body["account_number"]) == view.account_id


def test_another_users_account_is_not_found_like_a_missing_one(bank: Any) -> None:
    service, _store, alice, _bob = bank
    for account_id in (alice, "acc_" + "0" * 32, "not-an-id", "../ACCOUNT#x"):
        with pytest.raises(AccountNotFound):
            service.get_account("user-b", account_id)
        with pytest.raises(AccountNotFound):
            service.statement("user-b", account_id, limit=10, cursor=None)


def test_unsupported_currency_and_type_are_refused() -> None:
    service, _ = make_service()
    with pytest.raises(ValidationFailed) as refused:
        service.open_account("u", "SAVINGS", "USD", "c")
    assert refused.value.code == "currency_not_supported"
    with pytest.raises(ValidationFailed):
        service.open_account("u", "LOAN", "INR", "c")


def test_a_mistyped_account_number_is_refused_before_any_lookup() -> None:
    service, _ = make_service()
    with pytest.raises(ValidationFailed) as refused:
        service.account_id_for_number("123456789012")
    assert refused.value.code == "invalid_account_number"


# ---- deposits -------------------------------------------------------------------------------------------


def test_a_deposit_credits_the_customer_and_debits_a_settlement_shard(bank: Any) -> None:
    service, store, alice, _bob = bank
    view = service.deposit("admin", alice, 2_500, "INR", "ref-2", "corr-2")
    assert view.balance.ledger == view.balance.available == 12_500
    assert sum(store.settlement.values()) == -12_500
    assert store.snapshot() == {
        "customer_total": 12_500,
        "settlement_total": -12_500,
        "deposits_total": 12_500,
    }
    newest = service.statement("user-a", alice, limit=1, cursor=None).items[0]
    assert (newest.kind, newest.amount, newest.balance_after, newest.deposit_id) == (
        EntryKind.CREDIT,
        2_500,
        12_500,
        view.deposit_id,
    )


def test_a_repeated_deposit_request_books_one_deposit_and_answers_the_same(bank: Any) -> None:
    # Given a deposit booked for one request (an admin's Idempotency-Key on the deposit route)
    service, store, alice, _bob = bank
    first = service.deposit("admin", alice, 2_500, "INR", "ref", "c-1", request_id="POST /d#admin#k-1")
    # When the same request arrives again after its idempotency record is gone
    again = service.deposit("admin", alice, 2_500, "INR", "ref", "c-2", request_id="POST /d#admin#k-1")
    # Then it names the deposit already booked and no money moved twice
    assert again.to_json() == first.to_json()
    assert store.snapshot()["deposits_total"] == 12_500
    # And the same request id with another amount is a conflict, not a second deposit
    with pytest.raises(StepConflict):
        service.deposit("admin", alice, 9_999, "INR", "ref", "c-3", request_id="POST /d#admin#k-1")
    # While another request is another deposit
    service.deposit("admin", alice, 2_500, "INR", "ref", "c-4", request_id="POST /d#admin#k-2")
    assert store.snapshot()["deposits_total"] == 15_000


@pytest.mark.parametrize("amount", [0, -1, 10**12 + 1, 1.5, True, "100"])
def test_a_deposit_of_an_invalid_amount_is_refused(bank: Any, amount: Any) -> None:
    service, store, alice, _bob = bank
    with pytest.raises(ValidationFailed):
        service.deposit("admin", alice, amount, "INR", "ref", "c")
    assert store.snapshot()["deposits_total"] == 10_000


def test_a_deposit_in_another_currency_than_the_accounts_is_refused() -> None:
    service, _store = make_service()
    service._currencies = frozenset({"INR", "USD"})
    account = service.open_account("u", "SAVINGS", "INR", "c").account_id
    with pytest.raises(CurrencyMismatch):
        service.deposit("admin", account, 1, "USD", "ref", "c")


# ---- the saga steps -------------------------------------------------------------------------------------


def test_reserve_holds_funds_once_whatever_the_number_of_calls(bank: Any) -> None:
    service, store, alice, _bob = bank
    first = service.reserve(_step("t1", alice, 4_000))
    again = service.reserve(_step("t1", alice, 4_000))
    assert first == again and first["status"] == "HELD"
    account = store.accounts[alice]
    assert (account.ledger, account.available) == (10_000, 6_000)
    assert [e.type for e in store.events].count("vaultpay.account.funds.held") == 1


def test_reserve_beyond_the_available_balance_is_insufficient_funds_and_moves_nothing(bank: Any) -> None:
    service, store, alice, _bob = bank
    service.reserve(_step("t1", alice, 6_000))
    with pytest.raises(InsufficientFunds):
        service.reserve(_step("t2", alice, 4_001))
    assert store.accounts[alice].available == 4_000
    assert "t2" not in {h.transfer_id for h in store.holds.values()}


def test_settle_moves_the_held_amount_and_is_idempotent(bank: Any) -> None:
    service, store, alice, bob = bank
    service.reserve(_step("t1", alice, 3_000))
    settled = service.settle(_step("t1", alice, 3_000, bob))
    assert service.settle(_step("t1", alice, 3_000, bob)) == settled
    assert (store.accounts[alice].ledger, store.accounts[alice].available) == (7_000, 7_000)
    assert (store.accounts[bob].ledger, store.accounts[bob].available) == (3_000, 3_000)
    kinds = [e.kind for e in store.entries[alice]]
    assert kinds == [EntryKind.CREDIT, EntryKind.HOLD, EntryKind.DEBIT]
    assert store.holds["t1"].status is HoldStatus.SETTLED


def test_release_gives_the_hold_back_once(bank: Any) -> None:
    service, store, alice, _bob = bank
    service.reserve(_step("t1", alice, 3_000))
    released = service.release(_step("t1", alice, 3_000))
    assert service.release(_step("t1", alice, 3_000)) == released
    assert store.accounts[alice].available == 10_000
    assert [e.kind for e in store.entries[alice]][-1] is EntryKind.RELEASE
    assert len(store.entries[alice]) == 3


def test_a_release_before_the_reserve_leaves_a_tombstone_so_a_late_reserve_holds_nothing(bank: Any) -> None:
    service, store, alice, _bob = bank
    released = service.release(_step("t9", alice, 500))
    assert released["status"] == "RELEASED" and released["amount"] == 0
    late = service.reserve(_step("t9", alice, 500))
    assert late["status"] == "RELEASED"
    assert store.accounts[alice].available == 10_000
    with pytest.raises(HoldNotOpen):
        service.settle(_step("t9", alice, 500, "acc_" + "1" * 32))


def test_settle_after_release_and_release_after_settle_are_refused(bank: Any) -> None:
    service, _store, alice, bob = bank
    service.reserve(_step("t1", alice, 100))
    service.release(_step("t1", alice, 100))
    with pytest.raises(HoldNotOpen):
        service.settle(_step("t1", alice, 100, bob))
    service.reserve(_step("t2", alice, 100))
    service.settle(_step("t2", alice, 100, bob))
    with pytest.raises(HoldNotOpen):
        service.release(_step("t2", alice, 100))


def test_settle_without_a_hold_is_hold_not_found(bank: Any) -> None:
    service, _store, alice, bob = bank
    with pytest.raises(HoldNotFound):
        service.settle(_step("nope", alice, 100, bob))


def test_the_same_transfer_id_with_other_parameters_is_a_step_conflict(bank: Any) -> None:
    service, _store, alice, bob = bank
    service.reserve(_step("t1", alice, 100))
    with pytest.raises(StepConflict):
        service.reserve(_step("t1", alice, 101))
    with pytest.raises(StepConflict):
        service.settle(_step("t1", alice, 999, bob))


def test_settling_into_a_missing_or_frozen_account_is_refused_and_keeps_the_hold(bank: Any) -> None:
    service, store, alice, bob = bank
    service.reserve(_step("t1", alice, 100))
    with pytest.raises(AccountNotFound):
        service.settle(_step("t1", alice, 100, "acc_" + "f" * 32))
    from dataclasses import replace

    store.accounts[bob] = replace(store.accounts[bob], status=AccountStatus.FROZEN)
    with pytest.raises(AccountNotActive):
        service.settle(_step("t1", alice, 100, bob))
    assert store.holds["t1"].status is HoldStatus.HELD


@pytest.mark.parametrize(
    "event",
    [
        {},
        {
            "transfer_id": "t",
            "source_account_id": "acc_x",
            "amount": 1,
            "currency": "INR",
            "correlation_id": "c",
        },
        _step("t", "acc_" + "a" * 32, 0),
        _step("t", "acc_" + "a" * 32, True),
        _step("t", "acc_" + "a" * 32, 1.0),  # type: ignore[arg-type]
        _step("t/../x", "acc_" + "a" * 32, 1),
        _step("t", "acc_" + "a" * 32, 1, "acc_" + "a" * 32),
    ],
)
def test_invalid_step_input_is_refused_before_anything_is_read(event: dict[str, Any]) -> None:
    service, store = make_service()
    step = service.settle if "destination_account_id" in event else service.reserve
    with pytest.raises(InvalidStepInput):
        step(event)
    assert store.commits == 0


def test_a_stale_read_is_re_read_and_replanned() -> None:
    """Given a store that reports one stale read, the movement is planned again on fresh data."""
    service, store = make_service()
    account = service.open_account("u", "SAVINGS", "INR", "c").account_id
    real_commit = store.commit
    calls = {"n": 0}

    def flaky(movement: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise StaleRead("someone else won")
        real_commit(movement)

    store.commit = flaky  # type: ignore[method-assign]
    service.deposit("admin", account, 5, "INR", "r", "c")
    assert calls["n"] == 2 and store.accounts[account].ledger == 5


def test_a_movement_that_keeps_losing_ends_in_concurrent_modification() -> None:
    service, store = make_service()
    account = service.open_account("u", "SAVINGS", "INR", "c").account_id

    def always_stale(_movement: Any) -> None:
        raise StaleRead("lost again")

    store.commit = always_stale  # type: ignore[method-assign]
    with pytest.raises(ConcurrentModification):
        service.deposit("admin", account, 5, "INR", "r", "c")


def test_parallel_reserves_never_overdraw_an_account() -> None:
    """Given ₹100 available and 40 threads each holding ₹10, exactly ten holds succeed."""
    service, store = make_service()
    account = service.open_account("u", "SAVINGS", "INR", "c").account_id
    service.deposit("admin", account, 10_000, "INR", "seed", "c")
    outcomes: list[str] = []
    lock = threading.Lock()

    def reserve(i: int) -> None:
        try:
            service.reserve(_step(f"t{i}", account, 1_000))
            outcome = "held"
        except InsufficientFunds:
            outcome = "refused"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=reserve, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("held") == 10
    assert store.accounts[account].available == 0

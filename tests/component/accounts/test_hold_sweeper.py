"""The hold sweeper on DynamoDB Local: only HELD holds past their expiry are released, through the step."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from support.accounts import FakeCipher, FakeIndex, dynamodb_client
from support.tables import create_table

from vaultpay.accounts.model import HOLD_LIFETIME_S
from vaultpay.accounts.reconcile import reconcile_table
from vaultpay.accounts.service import AccountsService
from vaultpay.accounts.store import DynamoLedgerStore

pytestmark = pytest.mark.component


class SettableClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def bank(dynamodb_endpoint: str) -> tuple[AccountsService, SettableClock, Any, str]:
    client = dynamodb_client(dynamodb_endpoint)
    table = f"accounts-{uuid.uuid4().hex[:8]}"
    create_table(client, "AccountsTable", table)
    clock = SettableClock(1_795_000_000.0)
    service = AccountsService(
        store=DynamoLedgerStore(client, table),
        cipher=FakeCipher(),
        index=FakeIndex(),
        currencies=frozenset({"INR"}),
        clock=clock,
    )
    return service, clock, client, table


def _step(transfer_id: str, source: str, amount: int, destination: str | None = None) -> dict[str, Any]:
    step = {"transfer_id": transfer_id, "source_account_id": source, "amount": amount, "currency": "INR"}
    if destination:
        step["destination_account_id"] = destination
    return {**step, "correlation_id": f"c-{transfer_id}"}


def test_only_expired_held_holds_are_released_and_the_ledger_still_reconciles(bank: Any) -> None:
    service, clock, client, table = bank
    # Given an account with three holds: one settled, one still young, and one its saga abandoned
    alice = service.open_account("alice", "SAVINGS", "INR", "c").account_id
    bob = service.open_account("bob", "SAVINGS", "INR", "c").account_id
    service.deposit("admin", alice, 10_000, "INR", "seed", "c")
    service.reserve(_step("t-settled", alice, 1_000))
    service.settle(_step("t-settled", alice, 1_000, bob))
    service.reserve(_step("t-abandoned", alice, 2_000))
    clock.now += HOLD_LIFETIME_S - 60
    service.reserve(_step("t-young", alice, 3_000))
    # When the sweeper runs after the abandoned hold's expiry
    clock.now += 120
    released = service.release_expired_holds()
    # Then only the abandoned hold was released, as the release step would have
    assert [r["transfer_id"] for r in released] == ["t-abandoned"]
    assert service.get_account("alice", alice).balance.to_json() == {"ledger": 9_000, "available": 6_000}
    # And running it again finds nothing more
    assert service.release_expired_holds() == []
    # And the ledger reconciles (no hold is counted twice, nothing moved that should not)
    report = reconcile_table(client, table)
    assert report.ok, report.violations


def test_a_late_settle_after_the_sweeper_released_is_refused(bank: Any) -> None:
    service, clock, _client, _table = bank
    alice = service.open_account("alice", "SAVINGS", "INR", "c").account_id
    bob = service.open_account("bob", "SAVINGS", "INR", "c").account_id
    service.deposit("admin", alice, 5_000, "INR", "seed", "c")
    service.reserve(_step("t-1", alice, 5_000))
    clock.now += HOLD_LIFETIME_S + 1
    assert len(service.release_expired_holds()) == 1
    # The saga, were it to wake up, cannot settle money that is no longer held
    from vaultpay.accounts.errors import HoldNotOpen

    with pytest.raises(HoldNotOpen):
        service.settle(_step("t-1", alice, 5_000, bob))
    assert service.get_account("alice", alice).balance.to_json() == {"ledger": 5_000, "available": 5_000}

"""Property-based: random sequences of deposits, holds, releases and settlements, repeated and reordered.

A hypothesis state machine drives the accounts service and, beside it, a reference model that is nothing but
arithmetic. After every step the ledger must agree with the reference, and always: money is conserved, each
account's balance is the sum of its postings, available = ledger - open holds, nothing goes negative, and a
repeated step returns what it returned the first time. Run against the in-memory store and against DynamoDB
Local (the real transactions and conditions).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from support.accounts import FakeCipher, FakeIndex, dynamodb_client
from support.clocks import TickingClock
from support.tables import create_table

from vaultpay.accounts.errors import HoldNotFound, HoldNotOpen, InsufficientFunds, StepConflict
from vaultpay.accounts.memory import MemoryLedgerStore
from vaultpay.accounts.model import Account, Entry, EntryKind, Hold, HoldStatus
from vaultpay.accounts.service import AccountsService
from vaultpay.accounts.store import DynamoLedgerStore, _account, _entry, _hold

ACCOUNTS = 3
TRANSFERS = 6
amounts = st.integers(min_value=1, max_value=6_000)


@dataclass
class RefHold:
    source: int
    amount: int
    status: str
    destination: int | None = None
    asked: int = 0  # the amount the first call named (a tombstone holds 0)


class Ledger:
    """Reads one account's item, entries and holds from whichever store backs the service."""

    def __init__(self, store: Any, client: Any = None, table: str = "") -> None:
        self.store, self.client, self.table = store, client, table
        self.holds: dict[str, Hold] = {}

    def watch(self, transfer_ids: list[str]) -> None:
        """Holds live under their transfer's key: read the ones this run can have made."""
        if isinstance(self.store, MemoryLedgerStore):
            return
        for transfer_id in transfer_ids:
            item = self.client.get_item(
                TableName=self.table,
                Key={"pk": {"S": f"HOLD#{transfer_id}"}, "sk": {"S": "HOLD"}},
                ConsistentRead=True,
            ).get("Item")
            if item is not None:
                self.holds[transfer_id] = _hold(item)

    def state(self, account_id: str) -> tuple[Account, list[Entry], list[Hold]]:
        if isinstance(self.store, MemoryLedgerStore):
            holds = [h for h in self.store.holds.values() if h.account_id == account_id]
            return self.store.accounts[account_id], list(self.store.entries[account_id]), holds
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": f"ACCOUNT#{account_id}"}},
            "ConsistentRead": True,
        }
        while True:
            page = self.client.query(**kwargs)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        account = next(_account(i) for i in items if i["sk"]["S"] == "ACCOUNT")
        entries = [_entry(i) for i in items if i["sk"]["S"].startswith("ENTRY#")]
        return account, entries, [h for h in self.holds.values() if h.account_id == account_id]


class LedgerMachine(RuleBasedStateMachine):
    make_store: Any = None  # set per backend below

    @initialize()
    def open_bank(self) -> None:
        store, self.ledger = type(self).make_store()
        self.service = AccountsService(
            store=store,
            cipher=FakeCipher(),
            index=FakeIndex(),
            currencies=frozenset({"INR"}),
            clock=TickingClock(),
            sleep=lambda _s: None,
        )
        self.accounts = [
            self.service.open_account(f"owner-{i}", "SAVINGS", "INR", "corr").account_id
            for i in range(ACCOUNTS)
        ]
        self.run = uuid.uuid4().hex[:8]
        self.ref_ledger = [0] * ACCOUNTS
        self.ref_available = [0] * ACCOUNTS
        self.ref_holds: dict[int, RefHold] = {}
        self.results: dict[tuple[str, int], dict[str, Any]] = {}
        self.deposited = 0

    def _tid(self, t: int) -> str:
        return f"trf-{self.run}-{t}"

    def _event(self, t: int, source: int, amount: int, destination: int | None = None) -> dict[str, Any]:
        event: dict[str, Any] = {
            "transfer_id": self._tid(t),
            "source_account_id": self.accounts[source],
            "amount": amount,
            "currency": "INR",
            "correlation_id": "corr",
        }
        if destination is not None:
            event["destination_account_id"] = self.accounts[destination]
        return event

    def _same(self, step: str, t: int, result: dict[str, Any]) -> None:
        """A step's repeat returns exactly what the step returned the first time it did something."""
        first = self.results.setdefault((step, t), result)
        assert first == result, (step, first, result)

    def _conflicts(self, hold: RefHold, source: int, amount: int) -> bool:
        tombstone = hold.status == "RELEASED" and hold.amount == 0
        return hold.source != source or not (hold.amount == amount or tombstone)

    # ---- rules ----------------------------------------------------------------------------------------

    @rule(account=st.integers(0, ACCOUNTS - 1), amount=amounts)
    def deposit(self, account: int, amount: int) -> None:
        view = self.service.deposit("admin", self.accounts[account], amount, "INR", "ref", "corr")
        self.ref_ledger[account] += amount
        self.ref_available[account] += amount
        self.deposited += amount
        assert view.balance.ledger == self.ref_ledger[account]

    @rule(t=st.integers(0, TRANSFERS - 1), source=st.integers(0, ACCOUNTS - 1), amount=amounts)
    def reserve(self, t: int, source: int, amount: int) -> None:
        hold = self.ref_holds.get(t)
        if hold is not None and self._conflicts(hold, source, amount):
            with pytest.raises(StepConflict):
                self.service.reserve(self._event(t, source, amount))
            return
        if hold is None and self.ref_available[source] < amount:
            with pytest.raises(InsufficientFunds):
                self.service.reserve(self._event(t, source, amount))
            return
        result = self.service.reserve(self._event(t, source, amount))
        if hold is None:
            self.ref_holds[t] = RefHold(source, amount, "HELD")
            self.ref_available[source] -= amount
            self._same("reserve", t, result)
        assert result["status"] == self.ref_holds[t].status

    @rule(t=st.integers(0, TRANSFERS - 1), source=st.integers(0, ACCOUNTS - 1), amount=amounts)
    def release(self, t: int, source: int, amount: int) -> None:
        hold = self.ref_holds.get(t)
        if hold is not None:
            # Mostly the transfer's own parameters (a repeat); sometimes the fuzzed ones (a conflict).
            source, amount = (hold.source, hold.amount or hold.asked) if amount % 4 else (source, amount)
            if self._conflicts(hold, source, amount):
                with pytest.raises(StepConflict):
                    self.service.release(self._event(t, source, amount))
                return
            if hold.status == "SETTLED":
                with pytest.raises(HoldNotOpen):
                    self.service.release(self._event(t, source, amount))
                return
        result = self.service.release(self._event(t, source, amount))
        if hold is None:
            self.ref_holds[t] = RefHold(source, 0, "RELEASED", asked=amount)
        elif hold.status == "HELD":
            hold.status = "RELEASED"
            self.ref_available[hold.source] += hold.amount
        self._same("release", t, result)
        assert result["status"] == "RELEASED"

    @rule(t=st.integers(0, TRANSFERS - 1), destination=st.integers(0, ACCOUNTS - 1), fuzz=st.booleans())
    def settle(self, t: int, destination: int, fuzz: bool) -> None:
        hold = self.ref_holds.get(t)
        source, amount = (hold.source, hold.amount or hold.asked) if hold else (0, 1)
        if fuzz and hold is not None:
            amount += 1
        if destination == source:
            destination = (source + 1) % ACCOUNTS
        if hold is None:
            with pytest.raises(HoldNotFound):
                self.service.settle(self._event(t, source, amount, destination))
            return
        if self._conflicts(hold, source, amount) or (
            hold.status == "SETTLED" and hold.destination != destination
        ):
            with pytest.raises(StepConflict):
                self.service.settle(self._event(t, source, amount, destination))
            return
        if hold.status == "RELEASED":
            with pytest.raises(HoldNotOpen):
                self.service.settle(self._event(t, source, amount, destination))
            return
        result = self.service.settle(self._event(t, source, amount, destination))
        if hold.status == "HELD":
            hold.status, hold.destination = "SETTLED", destination
            self.ref_ledger[source] -= amount
            self.ref_ledger[destination] += amount
            self.ref_available[destination] += amount
        self._same("settle", t, result)
        assert result["status"] == "SETTLED"

    # ---- invariants -----------------------------------------------------------------------------------

    @invariant()
    def the_ledger_agrees_with_the_reference_and_balances_with_its_postings(self) -> None:
        if not hasattr(self, "service"):
            return
        self.ledger.watch([self._tid(t) for t in range(TRANSFERS)])
        for i, account_id in enumerate(self.accounts):
            account, entries, holds = self.ledger.state(account_id)
            assert (account.ledger, account.available) == (self.ref_ledger[i], self.ref_available[i])
            posted = sum(
                e.amount if e.kind is EntryKind.CREDIT else -e.amount
                for e in entries
                if e.kind in (EntryKind.CREDIT, EntryKind.DEBIT)
            )
            assert account.ledger == posted
            held = sum(h.amount for h in holds if h.status is HoldStatus.HELD)
            assert account.available == account.ledger - held
            assert account.available >= 0 and account.ledger >= 0
            seqs = sorted(e.seq for e in entries)
            assert seqs == list(range(1, account.version + 1))
            if entries:
                last = max(entries, key=lambda e: e.seq)
                assert (last.balance_after, last.available_after) == (account.ledger, account.available)
        # Transfers move money between customers; only deposits bring it in.
        assert sum(self.ref_ledger) == self.deposited


def _memory_store() -> tuple[MemoryLedgerStore, Ledger]:
    store = MemoryLedgerStore()
    return store, Ledger(store)


class TestLedgerInMemory(LedgerMachine.TestCase):  # type: ignore[name-defined]
    settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


@pytest.fixture(scope="module")
def dynamo_table(dynamodb_endpoint: str) -> tuple[Any, str]:
    client = dynamodb_client(dynamodb_endpoint)
    create_table(client, "AccountsTable", "accounts-properties")
    return client, "accounts-properties"


@pytest.mark.component
def test_the_ledger_properties_hold_on_dynamodb_local(dynamo_table: tuple[Any, str]) -> None:
    client, table = dynamo_table

    def dynamo_store() -> tuple[DynamoLedgerStore, Ledger]:
        store = DynamoLedgerStore(client, table, sleep=lambda _s: None)
        return store, Ledger(store, client, table)

    machine = type("DynamoLedgerMachine", (LedgerMachine,), {"make_store": staticmethod(dynamo_store)})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=12,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    # Across every example: the settlement shards hold minus every deposit, so all money sums to zero.
    totals = {"customer": 0, "settlement": 0, "deposits": 0}
    for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for item in page["Items"]:
            kind = item["kind"]["S"]
            if kind == "account":
                totals["customer"] += int(item["ledger"]["N"])
            elif kind == "settlement":
                totals["settlement"] += int(item["ledger"]["N"])
            elif kind == "deposit":
                totals["deposits"] += int(item["amount"]["N"])
    assert totals["customer"] + totals["settlement"] == 0
    assert totals["customer"] == totals["deposits"] > 0


LedgerMachine.make_store = staticmethod(_memory_store)

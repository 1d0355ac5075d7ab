"""An in-memory LedgerStore with the DynamoDB store's conditions, for unit and property tests (a fake)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from vaultpay.accounts.model import (
    Account,
    Deposit,
    DepositStatus,
    Entry,
    EntryKind,
    Hold,
    HoldStatus,
    Movement,
)
from vaultpay.accounts.ports import NumberTaken, Page, StaleRead
from vaultpay.shared.events import DomainEvent


@dataclass
class MemoryLedgerStore:
    """Every commit is all-or-nothing under one lock, with the same conditions as the real transaction."""

    accounts: dict[str, Account] = field(default_factory=dict)
    entries: dict[str, list[Entry]] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    numbers: dict[str, str] = field(default_factory=dict)
    deposits: dict[str, Deposit] = field(default_factory=dict)
    settlement: dict[str, int] = field(default_factory=dict)
    settlement_entries: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    events: list[DomainEvent] = field(default_factory=list)
    commits: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def get_account(self, account_id: str) -> Account | None:
        return self.accounts.get(account_id)

    def get_account_and_hold(self, account_id: str, transfer_id: str) -> tuple[Account | None, Hold | None]:
        with self._lock:
            return self.accounts.get(account_id), self.holds.get(transfer_id)

    def expired_holds(self, now_s: int, *, limit: int) -> list[Hold]:
        with self._lock:
            held = [hold for hold in self.open_holds() if hold.hold_expires_at < now_s]
        return sorted(held, key=lambda hold: hold.hold_expires_at)[:limit]

    def get_deposit(self, deposit_id: str) -> Deposit | None:
        return self.deposits.get(deposit_id)

    def account_id_by_number_index(self, number_index: str) -> str | None:
        return self.numbers.get(number_index)

    def pending_deposits(self, *, limit: int, cursor: str | None) -> Page:
        with self._lock:
            waiting = sorted(
                (d for d in self.deposits.values() if d.status is DepositStatus.PENDING_APPROVAL),
                key=lambda d: (d.created_at, d.deposit_id),
            )
        start = int(cursor) if cursor else 0
        items = waiting[start : start + limit]
        more = start + limit < len(waiting)
        return Page(items=items, next_cursor=str(start + limit) if more else None)

    def list_accounts(self, owner_id: str, *, limit: int, cursor: str | None) -> Page:
        mine = sorted(
            (a for a in self.accounts.values() if a.owner_id == owner_id),
            key=lambda a: (a.created_at, a.account_id),
        )
        start = int(cursor) if cursor else 0
        items = mine[start : start + limit]
        more = start + limit < len(mine)
        return Page(items=items, next_cursor=str(start + limit) if more else None)

    def list_entries(self, account_id: str, *, limit: int, cursor: str | None) -> Page:
        newest_first = list(reversed(self.entries.get(account_id, [])))
        start = int(cursor) if cursor else 0
        items = newest_first[start : start + limit]
        more = start + limit < len(newest_first)
        return Page(items=items, next_cursor=str(start + limit) if more else None)

    def create_account(self, account: Account, event: DomainEvent) -> None:
        with self._lock:
            if account.number_index in self.numbers:
                raise NumberTaken("the account number is already claimed")
            self.accounts[account.account_id] = account
            self.numbers[account.number_index] = account.account_id
            self.entries[account.account_id] = []
            self.events.append(event)

    def commit(self, movement: Movement) -> None:
        with self._lock:
            for change in movement.accounts:
                stored = self.accounts.get(change.after.account_id)
                if (
                    stored is None
                    or stored.version != change.before_version
                    or stored.available + change.available_delta < 0
                    or stored.ledger + change.ledger_delta < 0
                ):
                    raise StaleRead("an account moved")
            if movement.hold is not None:
                key = movement.hold.after.transfer_id
                current = self.holds.get(key)
                expected = movement.hold.expected
                if (current is None) != (expected is None) or (
                    current is not None and current.status is not expected
                ):
                    raise StaleRead("the hold moved")
            if movement.deposit is not None:
                stored_deposit = self.deposits.get(movement.deposit.deposit_id)
                expected_status = movement.deposit_expected
                if (stored_deposit is None) != (expected_status is None) or (
                    stored_deposit is not None and stored_deposit.status is not expected_status
                ):
                    raise StaleRead("the deposit changed")
            for change in movement.accounts:
                stored = self.accounts[change.after.account_id]
                self.accounts[change.after.account_id] = replace(
                    stored,
                    ledger=stored.ledger + change.ledger_delta,
                    available=stored.available + change.available_delta,
                    version=change.after.version,
                )
                self.entries.setdefault(change.after.account_id, []).append(change.entry)
            if movement.hold is not None:
                hold = movement.hold.after
                self.holds[hold.transfer_id] = hold
            if movement.settlement is not None:
                posting = movement.settlement
                self.settlement[posting.shard] = self.settlement.get(posting.shard, 0) - posting.amount
                shard_entries = self.settlement_entries.setdefault(posting.shard, [])
                shard_entries.append((posting.deposit_id, posting.amount))
            if movement.deposit is not None:
                self.deposits[movement.deposit.deposit_id] = movement.deposit
            self.events.extend(movement.events)
            self.commits += 1

    def open_holds(self) -> Iterator[Hold]:
        return (hold for hold in self.holds.values() if hold.status is HoldStatus.HELD)

    def posted_balance(self, account_id: str) -> int:
        """Σ CREDIT - Σ DEBIT over the account's entries."""
        total = 0
        for entry in self.entries.get(account_id, []):
            if entry.kind is EntryKind.CREDIT:
                total += entry.amount
            elif entry.kind is EntryKind.DEBIT:
                total -= entry.amount
        return total

    def snapshot(self) -> dict[str, Any]:
        return {
            "customer_total": sum(a.ledger for a in self.accounts.values()),
            "settlement_total": sum(self.settlement.values()),
            "deposits_total": sum(
                d.amount for d in self.deposits.values() if d.status is DepositStatus.BOOKED
            ),
        }

"""What the accounts use cases need from the outside world: the ledger store, the account-number cipher
and blind index, and the two signals a store raises to the service (a stale read, a number already taken).

Implementations: vaultpay.accounts.store (DynamoDB), vaultpay.accounts.memory (in memory, for unit tests),
wired in vaultpay.bootstrap.accounts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from vaultpay.accounts.model import (
    Account,
    Deposit,
    Hold,
    Movement,
)
from vaultpay.shared.events import DomainEvent


class LedgerStore(Protocol):
    def get_account(self, account_id: str) -> Account | None: ...

    def get_account_and_hold(
        self, account_id: str, transfer_id: str
    ) -> tuple[Account | None, Hold | None]: ...

    def account_id_by_number_index(self, number_index: str) -> str | None: ...

    def list_accounts(self, owner_id: str, *, limit: int, cursor: str | None) -> Any: ...

    def list_entries(self, account_id: str, *, limit: int, cursor: str | None) -> Any: ...

    def create_account(self, account: Account, event: DomainEvent) -> None: ...

    def commit(self, movement: Movement) -> None: ...

    def get_deposit(self, deposit_id: str) -> Deposit | None: ...

    def pending_deposits(self, *, limit: int, cursor: str | None) -> Any: ...

    def expired_holds(self, now_s: int, *, limit: int) -> list[Hold]: ...


class Cipher(Protocol):
    def encrypt(self, plaintext: str, *, context: Mapping[str, str]) -> str: ...

    def decrypt(self, blob: str, *, context: Mapping[str, str]) -> str: ...


class Index(Protocol):
    def of(self, kind: str, value: str) -> str: ...


class StaleRead(Exception):
    """What a movement was planned on changed before it committed: re-read and plan again."""


class NumberTaken(Exception):
    """The generated account number's blind index is already claimed (draw another number)."""


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Any]
    next_cursor: str | None

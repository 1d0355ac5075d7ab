"""Fakes of the transfers service's ports (accounts' resolver, the saga) and a service built on them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from support.clocks import TickingClock
from vaultpay.shared.ratelimit import FakeCounterStore, RateLimiter
from vaultpay.transfers.adapters import party_error
from vaultpay.transfers.memory import MemoryTransferStore
from vaultpay.transfers.model import Parties
from vaultpay.transfers.service import TransfersService

OWNER = "usr_" + "a" * 32
SOURCE = "acc_" + "1" * 32
DESTINATION = "acc_" + "2" * 32
NUMBER = "400012345678"


class AccountsResolver:
    """Accounts' resolver as the transfers domain sees it: answers from a fixed book of accounts."""

    def __init__(self, accounts: Mapping[str, tuple[str, str, str]] | None = None) -> None:
        # account id -> (owner, account number, currency)
        self.accounts = dict(
            accounts or {SOURCE: (OWNER, "400099990020", "INR"), DESTINATION: ("usr_b", NUMBER, "INR")}
        )
        self.calls = 0

    def resolve(
        self, *, owner_id: str, source_account_id: str, destination_account_number: str, currency: str
    ) -> Parties:
        self.calls += 1
        source = self.accounts.get(source_account_id)
        if source is None or source[0] != owner_id:
            raise party_error({"code": "account_not_found", "message": "No such account."})
        found = [a for a, (_o, n, _c) in self.accounts.items() if n == destination_account_number]
        if not found:
            raise party_error({"code": "destination_not_found", "message": "No account has this number."})
        if found[0] == source_account_id:
            raise party_error(
                {"code": "same_account", "message": "Same account.", "field": "destination_account_number"}
            )
        if source[2] != currency or self.accounts[found[0]][2] != currency:
            raise party_error(
                {"code": "currency_mismatch", "message": "Currencies differ.", "field": "currency"}
            )
        return Parties(source_account_id, found[0], "XXXXXXXX" + destination_account_number[-4:], currency)

    def owns(self, *, owner_id: str, account_id: str) -> bool:
        account = self.accounts.get(account_id)
        return account is not None and account[0] == owner_id


@dataclass
class Saga:
    """Step Functions as the transfers domain sees it: one execution per name, ever."""

    executions: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    starts: int = 0

    def start(self, name: str, saga_input: Mapping[str, Any]) -> bool:
        self.starts += 1
        if name in self.executions:
            return False
        self.executions[name] = dict(saga_input)
        return True


def make_transfers_service(
    *, resolver: AccountsResolver | None = None, limit_store: FakeCounterStore | None = None
) -> tuple[TransfersService, MemoryTransferStore, Saga]:
    store, saga = MemoryTransferStore(), Saga()
    service = TransfersService(
        store=store,
        parties=resolver or AccountsResolver(),
        saga=saga,
        currencies=frozenset({"INR"}),
        limiter=RateLimiter(limit_store or FakeCounterStore()),
        clock=TickingClock(),
        sleep=lambda _s: None,
    )
    return service, store, saga

"""What the transfers use cases need from the outside world: the transfer store, the parties resolver (the
accounts domain's internal Lambda), the saga starter (Step Functions), and the two signals the store raises
to the service (the transfer already exists, the transfer changed since it was read).

Implementations: vaultpay.transfers.store, vaultpay.transfers.adapters, vaultpay.transfers.memory; wired in
vaultpay.bootstrap.transfers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

# The amount limits are re-exported: the create route's body model states them.
from vaultpay.transfers.model import (
    Parties,
    Transfer,
    TransferPage,
    TransferStatus,
)


class TransferStore(Protocol):
    def get(self, transfer_id: str) -> Transfer | None: ...

    def list_by_source(self, source_account_id: str, *, limit: int, cursor: str | None) -> TransferPage: ...

    def create(self, transfer: Transfer, event: Any) -> None: ...

    def save(
        self,
        transfer: Transfer,
        *,
        expected_status: TransferStatus,
        expected_version: int,
        events: tuple[Any, ...],
    ) -> None: ...


class PartyResolver(Protocol):
    """The accounts domain's answer about a transfer's parties (docs/transfers-contract.md)."""

    def resolve(
        self, *, owner_id: str, source_account_id: str, destination_account_number: str, currency: str
    ) -> Parties:
        """Both parties, or the party error (AccountNotFound, DestinationNotFound, SameAccount, ...)."""
        ...

    def owns(self, *, owner_id: str, account_id: str) -> bool: ...


class SagaStarter(Protocol):
    def start(self, name: str, saga_input: Mapping[str, Any]) -> bool:
        """Starts the execution `name`; False when it already exists (a repeat), never a second run."""
        ...


class TransferExists(Exception):
    """A transfer with this id is already stored (a repeat of the same POST, or a race with it)."""


class StaleTransfer(Exception):
    """The transfer changed since it was read: re-read and plan again."""

"""An in-memory TransferStore with the DynamoDB store's conditions, for unit tests (a fake)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from vaultpay.shared.events import DomainEvent
from vaultpay.transfers.model import Transfer, TransferPage, TransferStatus
from vaultpay.transfers.ports import StaleTransfer, TransferExists


@dataclass
class MemoryTransferStore:
    """Every write is all-or-nothing under one lock, conditioned as the real transaction is."""

    transfers: dict[str, Transfer] = field(default_factory=dict)
    events: list[DomainEvent] = field(default_factory=list)
    writes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def get(self, transfer_id: str) -> Transfer | None:
        with self._lock:
            return self.transfers.get(transfer_id)

    def list_by_source(self, source_account_id: str, *, limit: int, cursor: str | None) -> TransferPage:
        with self._lock:
            sent = sorted(
                (t for t in self.transfers.values() if t.source_account_id == source_account_id),
                key=lambda t: (t.created_at, t.transfer_id),
                reverse=True,
            )
        start = int(cursor) if cursor else 0
        items = sent[start : start + limit]
        more = start + limit < len(sent)
        return TransferPage(items=items, next_cursor=str(start + limit) if more else None)

    def create(self, transfer: Transfer, event: DomainEvent) -> None:
        with self._lock:
            if transfer.transfer_id in self.transfers:
                raise TransferExists(transfer.transfer_id)
            self.transfers[transfer.transfer_id] = transfer
            self.events.append(event)
            self.writes += 1

    def save(
        self,
        transfer: Transfer,
        *,
        expected_status: TransferStatus,
        expected_version: int,
        events: tuple[DomainEvent, ...],
    ) -> None:
        with self._lock:
            stored = self.transfers.get(transfer.transfer_id)
            if stored is None or stored.status is not expected_status or stored.version != expected_version:
                raise StaleTransfer(transfer.transfer_id)
            self.transfers[transfer.transfer_id] = transfer
            self.events.extend(events)
            self.writes += 1

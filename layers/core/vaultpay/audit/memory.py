"""An in-memory AuditStore with the DynamoDB store's semantics, for unit tests and dry runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from vaultpay.audit.model import (
    GENESIS_HASH,
    AppendOutcome,
    AuditEntry,
    AuditFilter,
    AuditRecord,
    ChainHead,
    MalformedRecord,
    QueryPosition,
    RecordPage,
)


class InMemoryAuditStore:
    """One chain in a list; appends are atomic per call, like one transaction per batch."""

    def __init__(self) -> None:
        self.chain: list[AuditRecord | MalformedRecord] = []
        self.markers: set[str] = set()
        self._lock = threading.Lock()

    def head(self) -> ChainHead:
        with self._lock:
            return self._head()

    def _head(self) -> ChainHead:
        for item in reversed(self.chain):
            if isinstance(item, AuditRecord):
                return ChainHead(item.seq, item.hash)
        return ChainHead(0, GENESIS_HASH)

    def append(self, entries: Sequence[AuditEntry]) -> list[AppendOutcome]:
        with self._lock:
            outcomes = []
            head = self._head()
            for entry in entries:
                if entry.audit_id in self.markers:
                    outcomes.append(AppendOutcome.duplicate_of(entry.audit_id))
                    continue
                record = entry.chain(head.seq + 1, head.hash)
                self.chain.append(record)
                self.markers.add(entry.audit_id)
                head = ChainHead(record.seq, record.hash)
                outcomes.append(AppendOutcome.appended(record))
            return outcomes

    def records(self) -> Iterator[AuditRecord | MalformedRecord]:
        with self._lock:
            snapshot = list(self.chain)
        yield from snapshot

    def query(self, query: AuditFilter, *, limit: int, after: QueryPosition | None = None) -> RecordPage:
        with self._lock:
            records = [r for r in self.chain if isinstance(r, AuditRecord) and _matches(r, query)]
        records.sort(key=lambda r: (r.occurred_at, r.seq), reverse=True)
        if after is not None:
            records = [r for r in records if (r.occurred_at, r.seq) < (after.occurred_at, after.seq)]
        page = records[:limit]
        more = len(records) > limit
        return RecordPage(page, QueryPosition(page[-1].occurred_at, page[-1].seq) if more else None)


def _matches(record: AuditRecord, query: AuditFilter) -> bool:
    return (
        (query.correlation_id is None or record.correlation_id == query.correlation_id)
        and (query.actor is None or record.actor == query.actor)
        and (query.type is None or record.type == query.type)
        and (query.occurred_from is None or record.occurred_at >= query.occurred_from)
        and (query.occurred_to is None or record.occurred_at < query.occurred_to)
    )

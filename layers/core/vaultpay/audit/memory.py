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
    chain_of,
)


class InMemoryAuditStore:
    """`chains` chains in lists (`chain` is chain 0's); appends are atomic per call, like one transaction."""

    def __init__(self, chains: int = 1) -> None:
        self.logs: dict[int, list[AuditRecord | MalformedRecord]] = {k: [] for k in range(chains)}
        self.markers: set[str] = set()
        self._chains = chains
        self._lock = threading.Lock()

    @property
    def chain(self) -> list[AuditRecord | MalformedRecord]:
        return self.logs[0]

    @property
    def chains(self) -> int:
        return self._chains

    def chains_written(self) -> int:
        with self._lock:
            return max(self._chains, max(self.logs) + 1)

    def head(self, chain: int = 0) -> ChainHead:
        with self._lock:
            return self._head(chain)

    def _head(self, chain: int) -> ChainHead:
        for item in reversed(self.logs.get(chain, [])):
            if isinstance(item, AuditRecord):
                return ChainHead(item.seq, item.hash)
        return ChainHead(0, GENESIS_HASH)

    def append(self, entries: Sequence[AuditEntry]) -> list[AppendOutcome]:
        with self._lock:
            outcomes = []
            for entry in entries:
                if entry.audit_id in self.markers:
                    outcomes.append(AppendOutcome.duplicate_of(entry.audit_id))
                    continue
                chain = chain_of(entry.audit_id, self._chains)
                head = self._head(chain)
                record = entry.chain(head.seq + 1, head.hash, chain)
                self.logs.setdefault(chain, []).append(record)
                self.markers.add(entry.audit_id)
                outcomes.append(AppendOutcome.appended(record))
            return outcomes

    def records(self, chain: int = 0) -> Iterator[AuditRecord | MalformedRecord]:
        with self._lock:
            snapshot = list(self.logs.get(chain, []))
        yield from snapshot

    def query(self, query: AuditFilter, *, limit: int, after: QueryPosition | None = None) -> RecordPage:
        with self._lock:
            records = [
                r
                for log in self.logs.values()
                for r in log
                if isinstance(r, AuditRecord) and _matches(r, query)
            ]
        records.sort(key=_position, reverse=True)
        if after is not None:
            records = [r for r in records if _position(r) < (after.occurred_at, after.seq, after.chain)]
        page = records[:limit]
        more = len(records) > limit
        position = QueryPosition(page[-1].occurred_at, page[-1].seq, page[-1].chain) if more else None
        return RecordPage(page, position)


def _position(record: AuditRecord) -> tuple[str, int, int]:
    # The DynamoDB store's `at` order: time, then seq, then chain.
    return (record.occurred_at, record.seq, record.chain)


def _matches(record: AuditRecord, query: AuditFilter) -> bool:
    return (
        (query.correlation_id is None or record.correlation_id == query.correlation_id)
        and (query.actor is None or record.actor == query.actor)
        and (query.type is None or record.type == query.type)
        and (query.occurred_from is None or record.occurred_at >= query.occurred_from)
        and (query.occurred_to is None or record.occurred_at < query.occurred_to)
    )

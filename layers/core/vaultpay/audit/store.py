"""The AuditTable adapter: N hash chains in DynamoDB, appended only by conditional puts, never updated.

Items (keys `pk`/`sk`, both strings; no TTL: audit records never expire; no stream: nothing consumes it):

- record of chain k: pk `CHAIN` for chain 0, `CHAIN#<k>` for k > 0; sk `SEQ#<seq, 20 digits>`; the
  record's fields (`data` as its canonical JSON text), `at`, and `chain` (a number, only when k > 0).
- idempotency marker: pk `EVENT#<event id>`, sk `EVENT`; `seq` (and `chain` when k > 0) of its record.
- layout: pk `CHAINS`, sk `<N, 4 digits>`, one per number of chains the table has been written with
  (none for N = 1), so that verify walks every chain the table has ever had, whatever N is now.

Chain 0's keys are the single chain's keys from before the log had chains: a table written then is a log
of one chain, and reads and verifies as it did.

`at` is `<occurred_at>#<seq, 20 digits>`, followed by `#<chain, 3 digits>` for k > 0: time order, ties
broken by seq and then chain, unique in the table. Four GSIs, projection ALL (a query never reads the base
table), each with range key `at`: `ByTime` (hash `pk`, so one partition per chain; markers have no `at`,
so only records are in it), `ByCorrelation` (`correlation_id`), `ByActor` (`actor`), `ByType` (`type`).

An event's chain is `chain_of(event id, N)` (vaultpay.audit.model). An append is, per chain, one
TransactWriteItems of, per record, a Put of the record conditioned on `attribute_not_exists(pk)` at the
chain's next seq, and a Put of the event's marker under the same condition. Two writers that read the same
head both aim at the same seq and only one commits: the other re-reads the head and retries, so a chain
never forks and never has a gap. Markers are one key space for all chains: a redelivered event fails its
marker's condition whatever chain it is aimed at (N may have changed since) and is reported as a
duplicate, so it never gets a second record. The only operations used are Query, PutItem and
TransactWriteItems of Puts (IAM: dynamodb:Query and dynamodb:PutItem).

Why chains in their own partitions: every hash covers the one before, so the appends of one chain are
serial by nature. DynamoDB gives one partition key at most 1,000 write units a second, the newest records
of a chain always land in the same partition (split-for-heat cannot spread an ever-increasing sort key),
and a transactional write of an item of up to 1 KB costs 2 units, so one chain takes at most ~500
records/s on AWS (its ByTime partition has the same shape). N chains take N times that, and N writers
that would collide on one head mostly miss each other (bench/audit_shard_bench.py). The price: each chain
is verified on its own, one checkpoint signs all N heads (vaultpay.audit.checkpoints), and a time-ordered
listing reads N ByTime partitions and merges them (the other indexes are keyed by the filter, not by the
chain, and read one partition as before). N can be raised at any time; lowered, the chains above it
stop growing and are still verified, but time listings no longer read them.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from vaultpay.audit.errors import AuditChainCorrupt, AuditWriteRejected
from vaultpay.audit.model import (
    GENESIS_HASH,
    MAX_CHAINS,
    AppendOutcome,
    AuditEntry,
    AuditFilter,
    AuditRecord,
    ChainHead,
    MalformedRecord,
    QueryPosition,
    RecordPage,
    canonical_json,
    chain_of,
    loads_strict,
)
from vaultpay.shared.dynamo import Table
from vaultpay.shared.dynamo.table import ConditionFailed
from vaultpay.shared.errors import ConcurrentModification, ConfigurationError

CHAIN_PK = "CHAIN"
LAYOUT_PK = "CHAINS"
MARKER_SK = "EVENT"
INDEX_BY_TIME = "ByTime"
INDEX_BY_CORRELATION = "ByCorrelation"
INDEX_BY_ACTOR = "ByActor"
INDEX_BY_TYPE = "ByType"

# Two items per entry; TransactWriteItems takes at most 100 items and 4 MB (entries are at most 64 KB of
# data, so 25 of them stay far below).
ENTRIES_PER_TRANSACTION = 25
# Each lost race means another writer made progress, so the bound only stops a writer starved for long.
_MAX_APPEND_ATTEMPTS = 30
# A filtered query reads at most this many index pages per request: reads stay cheap and bounded, and
# the caller gets a cursor to go on with (a page may then hold fewer than `limit` records).
_MAX_QUERY_CALLS = 5
_FILTERED_QUERY_PAGE = 100


def chain_pk(chain: int) -> str:
    return CHAIN_PK if chain == 0 else f"{CHAIN_PK}#{chain}"


def record_sk(seq: int) -> str:
    return f"SEQ#{seq:020d}"


def marker_pk(audit_id: str) -> str:
    return f"EVENT#{audit_id}"


def at_key(occurred_at: str, seq: int, chain: int = 0) -> str:
    return f"{occurred_at}#{seq:020d}" if chain == 0 else f"{occurred_at}#{seq:020d}#{chain:03d}"


def table_definition(table_name: str) -> dict[str, Any]:
    """CreateTable arguments for an audit table, as `ops audit replay --create-table` makes one: the
    template's AuditTable (tests/component/test_template_tables.py holds the two equal)."""
    indexes = {
        INDEX_BY_TIME: "pk",
        INDEX_BY_CORRELATION: "correlation_id",
        INDEX_BY_ACTOR: "actor",
        INDEX_BY_TYPE: "type",
    }
    attributes = ["pk", "sk", "at", "correlation_id", "actor", "type"]
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": name, "AttributeType": "S"} for name in attributes],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": index,
                "KeySchema": [
                    {"AttributeName": hash_key, "KeyType": "HASH"},
                    {"AttributeName": "at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
            for index, hash_key in indexes.items()
        ],
    }


class DynamoDBAuditStore:
    """The audit log's `chains` chains in one DynamoDB table (layout in the module docstring). Thread-safe."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        chains: int = 1,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if not 1 <= chains <= MAX_CHAINS:
            raise ConfigurationError(f"invalid settings: AUDIT_CHAINS must be 1 to {MAX_CHAINS}")
        # A write DynamoDB refuses as invalid is about its items (AuditWriteRejected); botocore has retried
        # throttling already, and a lost race is retried by re-reading the head, not by the helper.
        self._db = Table(client, table_name, rejected=AuditWriteRejected)
        self._table = table_name
        self._sleep = sleep
        self._jitter = jitter
        self._chains = chains
        self._lock = threading.Lock()
        # The head of each chain this store last wrote or read. A warm writer usually still holds the true
        # head and saves a read per batch; when it does not, its conditional put fails and it reads again.
        self._heads: dict[int, ChainHead] = {}
        # Set at the first lost race: another writer shares the chains, so a remembered head is likely
        # stale (it moved when anyone else appended to that chain) and a failed transaction costs more
        # than the read it would save. From then on each transaction reads its chain's head first.
        self._contended = False
        self._layout_recorded = chains == 1

    @property
    def chains(self) -> int:
        """How many chains this store appends to (and lists by time)."""
        return self._chains

    def chains_written(self) -> int:
        """How many chains the table has had at most: the larger of this store's N and every N the table
        was written with (its layout items), so that a verify never skips a chain N no longer reaches."""
        response = self._db.query(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": LAYOUT_PK}},
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        items = response.get("Items") or []
        recorded = 1
        if items:
            text = str(items[0].get("sk", {}).get("S", ""))
            recorded = int(text) if text.isdigit() else MAX_CHAINS
        return max(self._chains, min(recorded, MAX_CHAINS))

    # ---- appends -------------------------------------------------------------------------------------

    def head(self, chain: int = 0) -> ChainHead:
        """The newest record of `chain`, read with strong consistency (a stale head only costs a retry)."""
        response = self._db.query(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": chain_pk(chain)}},
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
            ProjectionExpression="seq, #hash",
            ExpressionAttributeNames={"#hash": "hash"},
        )
        items = response.get("Items") or []
        if not items:
            head = ChainHead(0, GENESIS_HASH)
        else:
            try:
                head = ChainHead(_integer(items[0]["seq"]), str(items[0]["hash"]["S"]))
            except (KeyError, TypeError, ValueError):
                raise AuditChainCorrupt(
                    f"the newest record of chain {chain} of {self._table} is unreadable"
                ) from None
        with self._lock:
            self._heads[chain] = head
        return head

    def append(self, entries: Sequence[AuditEntry]) -> list[AppendOutcome]:
        """Appends the entries in order, each at most once per event id, and returns one outcome each.

        Raises TransientError or ConcurrentModification (nothing of the failed transaction was written;
        earlier transactions of a long list may have been) and AuditWriteRejected (DynamoDB refuses the
        items themselves)."""
        # The same event twice in one list: a transaction may not touch one marker twice, and the second
        # copy is a duplicate anyway.
        unique: dict[str, AuditEntry] = {}
        for entry in entries:
            unique.setdefault(entry.audit_id, entry)
        by_chain: dict[int, list[AuditEntry]] = {}
        for entry in unique.values():
            by_chain.setdefault(chain_of(entry.audit_id, self._chains), []).append(entry)
        if by_chain:
            self._record_layout()
        outcomes: dict[str, AppendOutcome] = {}
        # One transaction touches one chain: a writer holding a stale head of one chain then loses only
        # that chain's round, and writers on different chains never contend.
        for chain, ordered in sorted(by_chain.items()):
            for start in range(0, len(ordered), ENTRIES_PER_TRANSACTION):
                chunk = ordered[start : start + ENTRIES_PER_TRANSACTION]
                for outcome in self._append_chunk(chunk, chain):
                    outcomes[outcome.audit_id] = outcome
        result: list[AppendOutcome] = []
        reported: set[str] = set()
        for entry in entries:
            first = entry.audit_id not in reported
            result.append(outcomes[entry.audit_id] if first else AppendOutcome.duplicate_of(entry.audit_id))
            reported.add(entry.audit_id)
        return result

    def _record_layout(self) -> None:
        """Once per store: the table keeps a layout item for this N (an existing one is left as it is)."""
        if self._layout_recorded:
            return
        item = {"pk": {"S": LAYOUT_PK}, "sk": {"S": f"{self._chains:04d}"}}
        # A failed condition means an earlier writer with the same N wrote it: the table already says so.
        with contextlib.suppress(ConditionFailed):
            self._db.call(
                "PutItem", TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
        self._layout_recorded = True

    def _append_chunk(self, chunk: Sequence[AuditEntry], chain: int) -> list[AppendOutcome]:
        remaining = list(chunk)
        outcomes: list[AppendOutcome] = []
        attempt = 0
        while remaining:
            with self._lock:
                head = None if self._contended else self._heads.get(chain)
            if head is None:
                head = self.head(chain)
            records = []
            prev_hash = head.hash
            for offset, entry in enumerate(remaining):
                record = entry.chain(head.seq + 1 + offset, prev_hash, chain)
                records.append(record)
                prev_hash = record.hash
            reasons = self._transact(records)
            if reasons is None:
                with self._lock:
                    self._heads[chain] = ChainHead(records[-1].seq, records[-1].hash)
                outcomes.extend(AppendOutcome.appended(r) for r in records)
                return outcomes
            # Items are [record 1, marker 1, record 2, marker 2, ...] and reasons follow their order.
            codes = reasons
            duplicates = {
                records[index // 2].audit_id
                for index, code in enumerate(codes)
                if index % 2 == 1 and code == "ConditionalCheckFailed"
            }
            chain_moved = any(code == "ConditionalCheckFailed" for code in codes[0::2])
            outcomes.extend(AppendOutcome.duplicate_of(audit_id) for audit_id in sorted(duplicates))
            remaining = [entry for entry in remaining if entry.audit_id not in duplicates]
            if chain_moved or not duplicates:
                # Only a round without progress counts: dropping a duplicate is progress.
                attempt += 1
                if attempt >= _MAX_APPEND_ATTEMPTS:
                    raise ConcurrentModification(f"could not append to {self._table} in {attempt} attempts")
                with self._lock:
                    self._heads.pop(chain, None)
                    self._contended = True
                # Lost a race (or a TransactionConflict): back off a little, with jitter, so that the
                # writers do not collide again in lock step.
                self._sleep(self._jitter() * min(0.2, 0.002 * 2**attempt))
        return outcomes

    def _transact(self, records: Sequence[AuditRecord]) -> Sequence[str | None] | None:
        """Writes the records and their markers in one transaction; None on success, else the reasons."""
        items: list[dict[str, Any]] = []
        for record in records:
            for item in (record_item(record), marker_item(record)):
                items.append(
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": item,
                            # The only way any item of this table is ever written: never over another.
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    }
                )
        cancellation = self._db.transact_once(items)
        if cancellation is None:
            return None
        if cancellation.code != "TransactionCanceledException":
            raise self._db.cancelled(cancellation) from cancellation.cause
        reasons = (
            cancellation.reasons if len(cancellation.reasons) == len(items) else ("Unknown",) * len(items)
        )
        if "ValidationError" in reasons:
            raise AuditWriteRejected(
                f"DynamoDB rejected an audit item: {cancellation.code}"
            ) from cancellation.cause
        return reasons

    # ---- reads ---------------------------------------------------------------------------------------

    def records(self, chain: int = 0) -> Iterator[AuditRecord | MalformedRecord]:
        """Every record of `chain` in seq order, page by page. Strongly consistent: verify must not mistake
        a replica that lags for a broken chain."""
        request: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": chain_pk(chain)}},
            "ConsistentRead": True,
        }
        while True:
            response = self._db.query(**request)
            for item in response.get("Items") or []:
                yield record_from_item(item)
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            request["ExclusiveStartKey"] = last

    def query(self, query: AuditFilter, *, limit: int, after: QueryPosition | None = None) -> RecordPage:
        """Records matching `query`, newest first, at most `limit`, continuing after `after`.

        The most selective equality filter picks the index (correlation id, then actor, then type, else
        ByTime); the time range is always part of the key condition; other equalities filter the index's
        items. Index reads are eventually consistent: a record appended a moment ago may be missing.
        Without an equality filter, each chain's ByTime partition is read and the pages merged."""
        index, hash_name, hash_value = _choose_index(query)
        if index == INDEX_BY_TIME and self._chains > 1:
            return self._query_by_time(query, limit=limit, after=after)
        names = {"#h": hash_name}
        values: dict[str, Any] = {":h": {"S": hash_value}}
        condition = "#h = :h"
        if query.occurred_from is not None or query.occurred_to is not None:
            names["#at"] = "at"
        if query.occurred_from is not None and query.occurred_to is not None:
            # BETWEEN is inclusive, but `at` of a record at exactly `occurred_to` is "<to>#<seq>", which
            # sorts after "<to>": the range is half-open, [from, to).
            condition += " AND #at BETWEEN :from AND :to"
            values[":from"] = {"S": query.occurred_from}
            values[":to"] = {"S": query.occurred_to}
        elif query.occurred_from is not None:
            condition += " AND #at >= :from"
            values[":from"] = {"S": query.occurred_from}
        elif query.occurred_to is not None:
            condition += " AND #at < :to"
            values[":to"] = {"S": query.occurred_to}
        filters = []
        for number, (name, value) in enumerate(_residual_filters(query, hash_name)):
            names[f"#f{number}"] = name
            values[f":f{number}"] = {"S": value}
            filters.append(f"#f{number} = :f{number}")
        request: dict[str, Any] = {
            "IndexName": index,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
        }
        if filters:
            request["FilterExpression"] = " AND ".join(filters)
        if after is not None:
            start = {
                "pk": {"S": chain_pk(after.chain)},
                "sk": {"S": record_sk(after.seq)},
                "at": {"S": at_key(after.occurred_at, after.seq, after.chain)},
            }
            start[hash_name] = {"S": hash_value}
            request["ExclusiveStartKey"] = start
        collected: list[AuditRecord] = []
        for call in range(1, _MAX_QUERY_CALLS + 1):
            # Unfiltered, ask for one more than the page needs: that one says whether a next page exists.
            request["Limit"] = _FILTERED_QUERY_PAGE if filters else limit + 1 - len(collected)
            response = self._db.query(**request)
            for item in response.get("Items") or []:
                record = record_from_item(item)
                # A malformed item is skipped here and reported by verify, which is where it belongs.
                if isinstance(record, AuditRecord):
                    collected.append(record)
            if len(collected) > limit:
                page = collected[:limit]
                return RecordPage(page, _position_of_record(page[-1]))
            last = response.get("LastEvaluatedKey")
            if not last:
                return RecordPage(collected, None)
            if call == _MAX_QUERY_CALLS:
                return RecordPage(collected, _position_of(last))
            request["ExclusiveStartKey"] = last
        return RecordPage(collected, None)  # unreachable: the loop returns on its last call

    def _query_by_time(self, query: AuditFilter, *, limit: int, after: QueryPosition | None) -> RecordPage:
        """The newest records of every chain in the time range, merged: each chain's ByTime partition gives
        its newest `limit + 1` below the cursor, and the union holds the log's newest `limit + 1`."""
        lower = query.occurred_from
        # `to` is exclusive by construction (no `at` equals a bare time); the cursor's own `at` is not, and
        # is dropped from the results instead (at most one record, in one chain, has it).
        uppers = [query.occurred_to] if query.occurred_to is not None else []
        after_at = None if after is None else at_key(after.occurred_at, after.seq, after.chain)
        if after_at is not None:
            uppers.append(after_at)
        upper = min(uppers) if uppers else None
        values: dict[str, Any] = {}
        condition = "pk = :pk"
        if lower is not None and upper is not None:
            condition += " AND #at BETWEEN :from AND :to"
            values[":from"], values[":to"] = {"S": lower}, {"S": upper}
        elif lower is not None:
            condition += " AND #at >= :from"
            values[":from"] = {"S": lower}
        elif upper is not None:
            condition += " AND #at <= :to"
            values[":to"] = {"S": upper}
        merged: list[tuple[str, AuditRecord]] = []
        cut_at: list[str] = []  # where a chain's answer stopped short of what was asked (1 MB pages)
        for chain in range(self._chains):
            wanted = limit + 2  # the cursor's own record may come back too
            request: dict[str, Any] = {
                "IndexName": INDEX_BY_TIME,
                "KeyConditionExpression": condition,
                "ExpressionAttributeValues": {":pk": {"S": chain_pk(chain)}, **values},
                "ScanIndexForward": False,
                "Limit": wanted,
            }
            if values:
                request["ExpressionAttributeNames"] = {"#at": "at"}
            response = self._db.query(**request)
            items = response.get("Items") or []
            for item in items:
                at = str(item.get("at", {}).get("S", ""))
                record = record_from_item(item)
                if at != after_at and isinstance(record, AuditRecord):
                    merged.append((at, record))
            if response.get("LastEvaluatedKey") and len(items) < wanted and items:
                cut_at.append(str(items[-1].get("at", {}).get("S", "")))
        merged.sort(key=lambda pair: pair[0], reverse=True)
        # Below a chain's short answer, that chain may hold records not read yet: the page stops there.
        floor = max(cut_at, default="")
        kept = [record for at, record in merged if at >= floor]
        page = kept[:limit]
        more = len(kept) > limit or bool(cut_at and page)
        return RecordPage(page, _position_of_record(page[-1]) if more and page else None)


# ---- items -------------------------------------------------------------------------------------------


def record_item(record: AuditRecord) -> dict[str, Any]:
    """A record as a DynamoDB item. `data` is kept as its canonical JSON text: DynamoDB numbers would come
    back as Decimals, and the text is exactly what the hash covers."""
    item = {
        "pk": {"S": chain_pk(record.chain)},
        "sk": {"S": record_sk(record.seq)},
        "at": {"S": at_key(record.occurred_at, record.seq, record.chain)},
        "audit_id": {"S": record.audit_id},
        "seq": {"N": str(record.seq)},
        "occurred_at": {"S": record.occurred_at},
        "type": {"S": record.type},
        "actor": {"S": record.actor},
        "correlation_id": {"S": record.correlation_id},
        "subject": {"S": record.subject},
        "data": {"S": canonical_json(record.data).decode("utf-8")},
        "prev_hash": {"S": record.prev_hash},
        "hash": {"S": record.hash},
    }
    if record.chain:
        item["chain"] = {"N": str(record.chain)}
    return item


def marker_item(record: AuditRecord) -> dict[str, Any]:
    """The event's idempotency marker. It carries no `at` or filter attribute, so no index holds it."""
    item = {"pk": {"S": marker_pk(record.audit_id)}, "sk": {"S": MARKER_SK}, "seq": {"N": str(record.seq)}}
    if record.chain:
        item["chain"] = {"N": str(record.chain)}
    return item


def record_from_item(item: dict[str, Any]) -> AuditRecord | MalformedRecord:
    """A stored record, or what is wrong with it. The key and the `at` index key are checked against the
    record's own fields too: the hash does not cover them, so an edit there is caught here."""
    seq: int | None = None
    audit_id: str | None = None
    try:
        audit_id = item["audit_id"]["S"]
        seq = _integer(item["seq"])
        chain = _integer(item["chain"]) if "chain" in item else 0
        if not 0 <= chain < MAX_CHAINS:
            raise ValueError("not a chain")
        fields = {
            name: item[name]["S"]
            for name in ("occurred_at", "type", "actor", "correlation_id", "subject", "prev_hash", "hash")
        }
        data = loads_strict(item["data"]["S"])
    except (KeyError, TypeError, ValueError) as exc:
        return MalformedRecord(seq, audit_id, f"unreadable item ({type(exc).__name__})")
    if not isinstance(data, dict):
        return MalformedRecord(seq, audit_id, "data is not a JSON object")
    if item.get("sk", {}).get("S") != record_sk(seq):
        return MalformedRecord(seq, audit_id, "the item's key does not match its seq")
    if item.get("at", {}).get("S") != at_key(fields["occurred_at"], seq, chain):
        return MalformedRecord(seq, audit_id, "the item's time index key does not match occurred_at")
    if item.get("pk", {}).get("S", chain_pk(chain)) != chain_pk(chain):
        return MalformedRecord(seq, audit_id, "the item is stored under another chain's key")
    return AuditRecord(audit_id=str(audit_id), seq=seq, data=data, chain=chain, **fields)


def _integer(attribute: dict[str, Any]) -> int:
    text = attribute["N"]
    if not isinstance(text, str) or not text.lstrip("-").isdigit():
        raise ValueError("not an integer")
    return int(text)


def _choose_index(query: AuditFilter) -> tuple[str, str, str]:
    if query.correlation_id is not None:
        return INDEX_BY_CORRELATION, "correlation_id", query.correlation_id
    if query.actor is not None:
        return INDEX_BY_ACTOR, "actor", query.actor
    if query.type is not None:
        return INDEX_BY_TYPE, "type", query.type
    return INDEX_BY_TIME, "pk", CHAIN_PK


def _residual_filters(query: AuditFilter, hash_name: str) -> list[tuple[str, str]]:
    given = [("correlation_id", query.correlation_id), ("actor", query.actor), ("type", query.type)]
    return [(name, value) for name, value in given if value is not None and name != hash_name]


def _position_of(key: dict[str, Any]) -> QueryPosition:
    occurred_at, seq, *chain = str(key["at"]["S"]).split("#")
    return QueryPosition(occurred_at, int(seq), int(chain[0]) if chain else 0)


def _position_of_record(record: AuditRecord) -> QueryPosition:
    return QueryPosition(record.occurred_at, record.seq, record.chain)

"""The audit table on DynamoDB Local: idempotent appends, no fork under concurrency, queries, tampering."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from vaultpay.audit.errors import AuditChainCorrupt
from vaultpay.audit.model import APPENDED, DUPLICATE, AuditEntry, AuditFilter, AuditRecord, ChainHead
from vaultpay.audit.service import AuditQueryRequest, AuditService
from vaultpay.audit.store import DynamoDBAuditStore, record_sk
from vaultpay.shared.errors import ConfigurationError

from .conftest import AuditTable, dynamodb_client

pytestmark = pytest.mark.component


def entry(
    n: int, *, actor: str = "usr_01", correlation_id: str = "c-1", kind: str = "deposited"
) -> AuditEntry:
    return AuditEntry(
        audit_id=f"evt-{n:05d}",
        occurred_at=f"2026-11-28T10:{n // 60 % 60:02d}:{n % 60:02d}.000Z",
        type=f"vaultpay.account.{kind}",
        actor=actor,
        correlation_id=correlation_id,
        subject=f"acc_{n}",
        data={"amount": n, "note": "ünïcode ✓"},
    )


def chain_of(table: AuditTable) -> list[AuditRecord]:
    records = list(table.store().records())
    assert all(isinstance(r, AuditRecord) for r in records)
    return [r for r in records if isinstance(r, AuditRecord)]


class RecordingClient:
    """Passes calls through to a boto3 client and remembers which operations the store used."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.operations: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        self.operations.add(name)
        return getattr(self.client, name)


# ---- appends -----------------------------------------------------------------------------------------


def test_an_event_appended_twice_has_one_record_and_one_marker(audit_table: AuditTable) -> None:
    # Given a store that records which DynamoDB operations it calls
    client = RecordingClient(dynamodb_client(audit_table.endpoint))
    store = DynamoDBAuditStore(client, audit_table.name)

    # When the same event is appended, then appended again (a redelivery)
    first = store.append([entry(1)])
    again = store.append([entry(1)])

    # Then there is one record, linked to the genesis, and the second append says duplicate
    assert [o.status for o in first + again] == [APPENDED, DUPLICATE]
    records = chain_of(audit_table)
    assert [r.seq for r in records] == [1]
    assert records[0].data == {"amount": 1, "note": "ünïcode ✓"}
    assert sorted(item["pk"]["S"] for item in audit_table.items()) == ["CHAIN", "EVENT#evt-00001"]
    # And only Query and TransactWriteItems (Puts) were used: nothing that updates or deletes
    assert client.operations == {"query", "transact_write_items"}


def test_a_batch_with_an_already_recorded_event_appends_the_others_in_order(audit_table: AuditTable) -> None:
    store = audit_table.store()
    store.append([entry(2)])

    outcomes = store.append([entry(1), entry(2), entry(3), entry(1)])

    assert [o.status for o in outcomes] == [APPENDED, DUPLICATE, APPENDED, DUPLICATE]
    assert [(r.seq, r.audit_id) for r in chain_of(audit_table)] == [
        (1, "evt-00002"),
        (2, "evt-00001"),
        (3, "evt-00003"),
    ]
    assert AuditService(store).verify().ok


def test_a_long_batch_spans_several_transactions_without_a_gap(audit_table: AuditTable) -> None:
    outcomes = audit_table.store().append([entry(n) for n in range(1, 61)])

    assert all(o.status == APPENDED for o in outcomes)
    assert [r.seq for r in chain_of(audit_table)] == list(range(1, 61))


def test_concurrent_appenders_make_one_linear_chain_with_no_fork_and_no_gap(audit_table: AuditTable) -> None:
    # Given two writers (separate stores, as two Lambda containers) with stale heads from the start
    writers = [audit_table.store(), audit_table.store()]
    for writer in writers:
        writer.head()
    per_writer = 60
    errors: list[BaseException] = []
    start = threading.Barrier(len(writers))

    def write(index: int, store: DynamoDBAuditStore) -> None:
        try:
            start.wait()
            base = index * per_writer
            for batch in range(0, per_writer, 3):
                store.append([entry(base + n) for n in range(batch, batch + 3)])
        except BaseException as exc:  # a thread's failure must fail the test
            errors.append(exc)

    # When both append at the same time
    threads = [threading.Thread(target=write, args=(i, s)) for i, s in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    # Then every event has exactly one record and the chain is one line: seq 1..n, every link intact
    assert errors == []
    records = chain_of(audit_table)
    assert [r.seq for r in records] == list(range(1, 2 * per_writer + 1))
    assert sorted(r.audit_id for r in records) == sorted(entry(n).audit_id for n in range(2 * per_writer))
    assert AuditService(audit_table.store()).verify().ok


def test_concurrent_appenders_of_the_same_events_record_each_once(audit_table: AuditTable) -> None:
    # Given two consumers that were both handed the same events (a redelivery while the first still ran)
    writers = [audit_table.store() for _ in range(3)]
    start = threading.Barrier(len(writers))
    errors: list[BaseException] = []

    def write(store: DynamoDBAuditStore) -> None:
        try:
            start.wait()
            for batch in range(0, 30, 5):
                store.append([entry(n) for n in range(batch, batch + 5)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s,)) for s in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert errors == []
    records = chain_of(audit_table)
    assert len(records) == 30
    assert len({r.audit_id for r in records}) == 30
    assert AuditService(audit_table.store()).verify().ok


def test_a_missing_table_is_a_configuration_error(dynamodb_endpoint: str) -> None:
    store = DynamoDBAuditStore(dynamodb_client(dynamodb_endpoint), "no-such-AuditTable")

    with pytest.raises(ConfigurationError):
        store.append([entry(1)])


def test_an_unreadable_head_stops_appends(audit_table: AuditTable) -> None:
    audit_table.store().append([entry(1)])
    audit_table.client.put_item(
        TableName=audit_table.name,
        Item={"pk": {"S": "CHAIN"}, "sk": {"S": record_sk(2)}, "seq": {"S": "two"}},
    )

    with pytest.raises(AuditChainCorrupt):
        audit_table.store().append([entry(2)])


# ---- tamper evidence in the table itself -------------------------------------------------------------


def test_a_record_overwritten_in_the_table_is_found_by_verify(audit_table: AuditTable) -> None:
    # Given a chain, and an attacker with PutItem who overwrites record 3 with a different amount
    store = audit_table.store()
    store.append([entry(n) for n in range(1, 6)])
    item = next(i for i in audit_table.items() if i["sk"]["S"] == record_sk(3))
    item["data"] = {"S": '{"amount":300000,"note":"ünïcode ✓"}'}
    audit_table.client.put_item(TableName=audit_table.name, Item=item)

    # When the chain is verified
    result = AuditService(store).verify()

    # Then record 3 is named, and the two before it are still trusted
    assert not result.ok
    assert result.records_checked == 3
    assert result.first_bad_record is not None
    assert (result.first_bad_record.seq, result.first_bad_record.reason) == (3, "hash_mismatch")


def test_an_index_key_edited_to_hide_a_record_from_time_queries_is_found_by_verify(
    audit_table: AuditTable,
) -> None:
    store = audit_table.store()
    store.append([entry(n) for n in range(1, 4)])
    item = next(i for i in audit_table.items() if i["sk"]["S"] == record_sk(2))
    item["at"] = {"S": "1999-01-01T00:00:00.000Z#" + "2".zfill(20)}
    audit_table.client.put_item(TableName=audit_table.name, Item=item)

    result = AuditService(store).verify()

    assert result.first_bad_record is not None
    assert (result.first_bad_record.seq, result.first_bad_record.reason) == (2, "malformed")


def test_the_head_is_the_newest_record(audit_table: AuditTable) -> None:
    store = audit_table.store()
    assert store.head() == ChainHead(0, "0" * 64)
    outcomes = store.append([entry(1), entry(2)])

    record = outcomes[-1].record
    assert record is not None
    assert audit_table.store().head() == ChainHead(2, record.hash)


# ---- queries -----------------------------------------------------------------------------------------


@pytest.fixture
def filled(audit_table: AuditTable) -> AuditService:
    """12 records: actors usr_01/usr_02 alternate, correlation ids c-0/c-1/c-2 rotate, types vary."""
    audit_table.store().append(
        [
            entry(
                n,
                actor=f"usr_0{1 + n % 2}",
                correlation_id=f"c-{n % 3}",
                kind="created" if n % 4 == 0 else "deposited",
            )
            for n in range(1, 13)
        ]
    )
    return AuditService(audit_table.store())


def seqs(service: AuditService, **filters: Any) -> list[int]:
    return [r.seq for r in service.query(AuditQueryRequest(**filters)).items]


def test_queries_filter_by_correlation_actor_type_and_time_newest_first(filled: AuditService) -> None:
    assert seqs(filled) == list(range(12, 0, -1))
    assert seqs(filled, correlation_id="c-1") == [10, 7, 4, 1]
    assert seqs(filled, actor="usr_01") == [12, 10, 8, 6, 4, 2]
    assert seqs(filled, type="vaultpay.account.created") == [12, 8, 4]
    assert seqs(filled, actor="usr_01", type="vaultpay.account.created") == [12, 8, 4]
    assert seqs(filled, correlation_id="c-0", actor="usr_02") == [9, 3]
    # from is inclusive and to exclusive: [10:00:03, 10:00:06)
    window = {"occurred_from": "2026-11-28T10:00:03Z", "occurred_to": "2026-11-28T15:30:06+05:30"}
    assert seqs(filled, **window) == [5, 4, 3]
    assert seqs(filled, occurred_from="2026-11-28T10:00:10.000Z") == [12, 11, 10]
    assert seqs(filled, occurred_to="2026-11-28T10:00:02.000Z") == [1]
    assert seqs(filled, actor="usr_02", **window) == [5, 3]
    assert seqs(filled, actor="nobody") == []


@pytest.mark.parametrize(
    "filters",
    [{}, {"actor": "usr_01"}, {"actor": "usr_01", "type": "vaultpay.account.deposited"}],
)
def test_cursor_paging_visits_every_match_once_in_order(
    filled: AuditService, filters: dict[str, Any]
) -> None:
    expected = seqs(filled, **filters)
    seen: list[int] = []
    cursor = None
    for _ in range(20):
        page = filled.query(AuditQueryRequest(limit=2, cursor=cursor, **filters))
        assert len(page.items) <= 2
        seen.extend(r.seq for r in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break

    assert seen == expected


def test_the_store_query_reads_a_bounded_number_of_pages(audit_table: AuditTable) -> None:
    # Given 150 records of which only the oldest matches a residual filter
    store = audit_table.store()
    store.append([entry(n, actor="usr_01" if n == 1 else "usr_02", kind="created") for n in range(1, 151)])
    client = RecordingClient(dynamodb_client(audit_table.endpoint))
    calls = 0
    original = client.client.query

    def counting_query(**request: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(**request)

    client.client.query = counting_query
    reader = DynamoDBAuditStore(client, audit_table.name)

    # When a type + actor query walks the type index
    page = reader.query(AuditFilter(type="vaultpay.account.created", actor="usr_01"), limit=5)

    # Then it stops within its read budget, having found the match
    assert [r.seq for r in page.records] == [1]
    assert calls <= 5

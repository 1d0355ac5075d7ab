"""The sharded audit log on DynamoDB Local: a table written with the single-chain layout still verifies and
grows as chain 0, concurrent writers over N chains, time pages merged across chains, and tampering."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from vaultpay.audit.model import APPENDED, DUPLICATE, AuditEntry, AuditRecord, build_chain, canonical_json
from vaultpay.audit.service import AuditQueryRequest, AuditService
from vaultpay.audit.store import DynamoDBAuditStore, record_item, record_sk

from .conftest import AuditTable, dynamodb_client

pytestmark = pytest.mark.component


def entry(n: int, *, tag: str = "evt") -> AuditEntry:
    return AuditEntry(
        audit_id=f"{tag}-{n:05d}",
        occurred_at=f"2026-12-07T10:{n // 60 % 60:02d}:{n % 60:02d}.{n % 7:03d}Z",
        type="vaultpay.account.deposited",
        actor=f"usr_{n % 3}",
        correlation_id=f"corr-{n % 4}",
        subject=f"acc_{n}",
        data={"amount": n},
    )


def store(table: AuditTable, chains: int) -> DynamoDBAuditStore:
    return DynamoDBAuditStore(dynamodb_client(table.endpoint), table.name, chains=chains)


def old_layout_items(entries: list[AuditEntry]) -> list[dict[str, object]]:
    """The items of the single-chain store as it wrote them before the log had chains, spelled out here
    rather than produced by today's code, so that this test keeps meaning what it says."""
    items: list[dict[str, object]] = []
    for record in build_chain(entries):
        items.append(
            {
                "pk": {"S": "CHAIN"},
                "sk": {"S": f"SEQ#{record.seq:020d}"},
                "at": {"S": f"{record.occurred_at}#{record.seq:020d}"},
                "audit_id": {"S": record.audit_id},
                "seq": {"N": str(record.seq)},
                "occurred_at": {"S": record.occurred_at},
                "type": {"S": record.type},
                "actor": {"S": record.actor},
                "correlation_id": {"S": record.correlation_id},
                "subject": {"S": record.subject},
                "data": {"S": canonical_json(record.data).decode()},
                "prev_hash": {"S": record.prev_hash},
                "hash": {"S": record.hash},
            }
        )
        items.append(
            {"pk": {"S": f"EVENT#{record.audit_id}"}, "sk": {"S": "EVENT"}, "seq": {"N": str(record.seq)}}
        )
    return items


def test_a_table_written_with_one_chain_verifies_and_grows_as_chain_0_of_four(
    audit_table: AuditTable,
) -> None:
    # Given a table written with the single-chain layout of before
    old = [entry(n, tag="old") for n in range(6)]
    for item in old_layout_items(old):
        audit_table.client.put_item(TableName=audit_table.name, Item=item)
    before = AuditService(store(audit_table, 1)).verify()
    assert before.ok and before.records_checked == 6

    # When the log is spread over 4 chains, the old events come again and new ones arrive
    service = AuditService(store(audit_table, 4))
    again = service.append_entries(old)
    new = service.append_entries([entry(n) for n in range(30)])

    # Then no old event has a second record, whatever chain it would go to now
    assert {o.status for o in again} == {DUPLICATE}
    assert {o.status for o in new} == {APPENDED}
    # And the old chain is chain 0, unchanged, with the new records of chain 0 linked after it
    chain_0 = [r for r in store(audit_table, 4).records(0) if isinstance(r, AuditRecord)]
    assert [r.audit_id for r in chain_0[:6]] == [e.audit_id for e in old]
    assert [r.hash for r in chain_0[:6]] == [r.hash for r in build_chain(old)]
    # And the whole log verifies: every chain on its own, every record counted once
    result = service.verify()
    assert result.ok, result.first_bad_record
    assert result.records_checked == 36
    assert [c.chain for c in result.chains] == [0, 1, 2, 3]
    assert all(c.records_checked for c in result.chains)


def test_a_store_of_one_chain_still_verifies_every_chain_the_table_has_had(audit_table: AuditTable) -> None:
    # Given a log written over 4 chains
    AuditService(store(audit_table, 4)).append_entries([entry(n) for n in range(20)])

    # When it is verified by a store told of one chain (an operator's CLI, or N lowered)
    result = AuditService(store(audit_table, 1)).verify()

    # Then the layout item the writers left makes it walk all 4
    assert result.ok and result.records_checked == 20
    assert len(result.chains) == 4


def test_concurrent_writers_over_four_chains_leave_no_fork_no_gap_and_one_record_per_event(
    audit_table: AuditTable,
) -> None:
    # Given 4 writers, each with its own store, appending 100 events between them one by one
    errors: list[BaseException] = []

    def write(index: int) -> None:
        writer = store(audit_table, 4)
        try:
            for n in range(index, 100, 4):
                writer.append([entry(n)])
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors

    # Then every chain verifies and every event has exactly one record
    result = AuditService(store(audit_table, 4)).verify()
    assert result.ok and result.records_checked == 100
    ids = [
        r.audit_id
        for chain in range(4)
        for r in store(audit_table, 4).records(chain)
        if isinstance(r, AuditRecord)
    ]
    assert sorted(ids) == sorted(entry(n).audit_id for n in range(100))


def test_time_pages_merge_every_chain_newest_first(audit_table: AuditTable) -> None:
    # Given 50 records over 4 chains, some sharing a millisecond
    service = AuditService(store(audit_table, 4))
    service.append_entries([entry(n) for n in range(50)])
    everything = [
        r for chain in range(4) for r in store(audit_table, 4).records(chain) if isinstance(r, AuditRecord)
    ]
    newest_first = sorted(everything, key=lambda r: (r.occurred_at, r.seq, r.chain), reverse=True)

    # When they are listed by time, 7 a page, with and without a time range
    for query, expected in (
        ({}, newest_first),
        (
            {"occurred_from": "2026-12-07T10:00:10Z", "occurred_to": "2026-12-07T10:00:40Z"},
            [r for r in newest_first if "2026-12-07T10:00:10" <= r.occurred_at < "2026-12-07T10:00:40"],
        ),
    ):
        seen: list[AuditRecord] = []
        cursor = None
        while True:
            page = service.query(AuditQueryRequest(limit=7, cursor=cursor, **query))
            assert len(page.items) <= 7
            seen.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break

        # Then every record comes exactly once, in the log's time order
        assert [(r.chain, r.seq) for r in seen] == [(r.chain, r.seq) for r in expected], query


def test_pages_of_one_correlation_id_cross_chains(audit_table: AuditTable) -> None:
    service = AuditService(store(audit_table, 4))
    service.append_entries([entry(n) for n in range(40)])
    seen: list[AuditRecord] = []
    cursor = None
    while True:
        page = service.query(AuditQueryRequest(correlation_id="corr-1", limit=3, cursor=cursor))
        seen.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(r.audit_id for r in seen) == [entry(n).audit_id for n in range(40) if n % 4 == 1]
    assert len({r.chain for r in seen}) > 1


def test_a_record_copied_into_another_chains_partition_is_caught(audit_table: AuditTable) -> None:
    # Given a log over 4 chains
    four = store(audit_table, 4)
    AuditService(four).append_entries([entry(n) for n in range(20)])
    victim = next(r for r in four.records(2) if isinstance(r, AuditRecord))
    # When a writer of the table puts chain 2's first record over chain 1's first
    item = record_item(victim)
    item["pk"] = {"S": "CHAIN#1"}
    audit_table.client.put_item(TableName=audit_table.name, Item=item)

    # Then verify reports it in chain 1
    result = AuditService(store(audit_table, 4)).verify()
    assert not result.ok
    bad = result.first_bad_record
    assert bad is not None and (bad.chain, bad.seq) == (1, 1)
    assert result.to_dict()["first_bad_record"]["chain"] == 1
    assert (
        audit_table.client.get_item(
            TableName=audit_table.name, Key={"pk": {"S": "CHAIN#1"}, "sk": {"S": record_sk(1)}}
        )["Item"]["audit_id"]["S"]
        == victim.audit_id
    )


def test_records_of_two_chains_at_the_same_time_and_seq_are_paged_one_by_one(audit_table: AuditTable) -> None:
    # Given two records in chains 0 and 1 with the same time, seq and correlation id
    from vaultpay.audit.model import chain_of

    picks = [next(n for n in range(100) if chain_of(entry(n).audit_id, 2) == k) for k in (0, 1)]
    same = [
        dataclasses.replace(entry(n), occurred_at="2026-12-07T10:00:00.000Z", correlation_id="c")
        for n in picks
    ]
    service = AuditService(store(audit_table, 2))
    service.append_entries(same)

    # When they are listed one a page, by time and by correlation id
    for query in ({}, {"correlation_id": "c"}):
        first = service.query(AuditQueryRequest(limit=1, **query))
        second = service.query(AuditQueryRequest(limit=1, cursor=first.next_cursor, **query))

        # Then each comes once, chain 1's first, and the cursor tells them apart
        assert [(r.chain, r.seq) for r in first.items + second.items] == [(1, 1), (0, 1)], query
        assert (
            second.next_cursor is None
            or not service.query(AuditQueryRequest(limit=1, cursor=second.next_cursor, **query)).items
        )

"""Reconciliation over hand-built AccountsTable items: a clean ledger passes, each corruption is named."""

from __future__ import annotations

import threading
from collections.abc import Generator
from typing import Any

import pytest

from vaultpay.accounts.reconcile import (
    LEDGER_ATTRIBUTES,
    ReconcileReport,
    reconcile,
    reconcile_table,
    scan_table,
)

pytestmark = pytest.mark.unit

OWNER = "usr_0123456789abcdef0123456789abcdef"
NUMBER = "123456789012"
NUMBER_INDEX = "f00dfeedcafebabe" * 4


def account_id(n: int) -> str:
    return f"acc_{n:032x}"


def av(value: Any) -> dict[str, str]:
    """One value as DynamoDB's low-level API carries it (numbers are strings: never floats)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(value)
    return {"N": str(value)} if isinstance(value, int) else {"S": value}


class Ledger:
    """Writes items exactly as docs/accounts-contract.md lays them out, keeping the books straight, so a test
    starts from a clean ledger and then breaks one thing by hand."""

    def __init__(self, *, shards: int = 2) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.shards = [f"settlement-{n:02d}" for n in range(shards)]
        for shard in self.shards:
            self.put(
                f"ACCOUNT#{shard}",
                "ACCOUNT",
                kind="settlement",
                type="SETTLEMENT",
                currency="INR",
                ledger=0,
                available=0,
                version=0,
            )
        self.deposits = 0

    # ---- raw items ----
    def put(self, pk: str, sk: str, **attributes: Any) -> None:
        self.items[(pk, sk)] = {"pk": pk, "sk": sk, **attributes}

    def get(self, pk: str, sk: str) -> dict[str, Any]:
        return self.items[(pk, sk)]

    def account(self, account: str) -> dict[str, Any]:
        return self.get(f"ACCOUNT#{account}", "ACCOUNT")

    def delete(self, pk: str, sk: str) -> None:
        del self.items[(pk, sk)]

    def raw(self) -> list[dict[str, Any]]:
        return [{name: av(value) for name, value in item.items()} for item in self.items.values()]

    def report(self) -> ReconcileReport:
        return reconcile(self.raw())

    # ---- what the service does ----
    def open(self, n: int) -> str:
        account = account_id(n)
        self.put(
            f"ACCOUNT#{account}",
            "ACCOUNT",
            kind="account",
            owner_id=OWNER,
            created_sk=f"2026-11-28T10:00:00Z#{account}",
            type="SAVINGS",
            currency="INR",
            status="ACTIVE",
            number_enc="ciphertext-of-" + NUMBER,
            number_index=NUMBER_INDEX,
            number_last4=NUMBER[-4:],
            ledger=0,
            available=0,
            version=0,
            created_at="2026-11-28T10:00:00Z",
        )
        self.put(f"ACCTNUM#{NUMBER_INDEX}{n}", "ACCTNUM", kind="number", account_id=account)
        return account

    def post(
        self, account: str, entry_kind: str, amount: int, *, ledger: int, available: int, **refs: str
    ) -> None:
        item = self.account(account)
        item["ledger"] += ledger
        item["available"] += available
        item["version"] += 1
        seq = item["version"]
        self.put(
            f"ACCOUNT#{account}",
            f"ENTRY#{seq:012d}",
            kind="entry",
            entry_id=f"ent_{account}_{seq}",
            seq=seq,
            entry_kind=entry_kind,
            amount=amount,
            balance_after=item["ledger"],
            available_after=item["available"],
            description="test",
            created_at="2026-11-28T10:00:00Z",
            **refs,
        )

    def deposit(self, account: str, amount: int, *, settlement: bool = True) -> str:
        self.deposits += 1
        deposit_id = f"dep_{self.deposits:032x}"
        self.post(account, "CREDIT", amount, ledger=amount, available=amount, deposit_id=deposit_id)
        if settlement:
            shard = self.shards[self.deposits % len(self.shards)]
            self.put(
                f"ACCOUNT#{shard}",
                f"ENTRY#D{deposit_id}",
                kind="entry",
                entry_kind="DEBIT",
                amount=amount,
                deposit_id=deposit_id,
                created_at="2026-11-28T10:00:00Z",
            )
            self.get(f"ACCOUNT#{shard}", "ACCOUNT")["ledger"] -= amount
            self.get(f"ACCOUNT#{shard}", "ACCOUNT")["available"] -= amount
            self.get(f"ACCOUNT#{shard}", "ACCOUNT")["version"] += 1
        self.put(
            f"DEPOSIT#{deposit_id}",
            "DEPOSIT",
            kind="deposit",
            account_id=account,
            amount=amount,
            currency="INR",
            reference="test",
            actor="usr_admin",
            settlement_shard=self.shards[self.deposits % len(self.shards)],
            created_at="2026-11-28T10:00:00Z",
        )
        self.put(f"OUTBOX#evt-{deposit_id}", "OUTBOX", kind="outbox", type="vaultpay.account.deposited")
        return deposit_id

    def hold(self, account: str, transfer_id: str, amount: int) -> None:
        self.post(account, "HOLD", amount, ledger=0, available=-amount, transfer_id=transfer_id)
        self.put(
            f"HOLD#{transfer_id}",
            "HOLD",
            kind="hold",
            account_id=account,
            amount=amount,
            currency="INR",
            status="HELD",
            held_at="2026-11-28T10:00:00Z",
            hold_expires_at=1_796_000_000,
        )

    def release(self, account: str, transfer_id: str) -> None:
        hold = self.get(f"HOLD#{transfer_id}", "HOLD")
        hold["status"] = "RELEASED"
        self.post(
            account, "RELEASE", hold["amount"], ledger=0, available=hold["amount"], transfer_id=transfer_id
        )

    def settle(self, source: str, destination: str, transfer_id: str) -> None:
        hold = self.get(f"HOLD#{transfer_id}", "HOLD")
        hold["status"] = "SETTLED"
        hold["destination_account_id"] = destination
        amount = hold["amount"]
        self.post(source, "DEBIT", amount, ledger=-amount, available=0, transfer_id=transfer_id)
        self.post(destination, "CREDIT", amount, ledger=amount, available=amount, transfer_id=transfer_id)

    def tombstone(self, account: str, transfer_id: str) -> None:
        """What release writes when the reserve never ran: no entry, amount 0."""
        self.put(
            f"HOLD#{transfer_id}",
            "HOLD",
            kind="hold",
            account_id=account,
            amount=0,
            currency="INR",
            status="RELEASED",
            released_at="2026-11-28T10:00:00Z",
            hold_expires_at=0,
        )


@pytest.fixture
def books() -> tuple[Ledger, str, str]:
    """Two accounts after deposits, a settled transfer, a released one, an open hold and a tombstone."""
    ledger = Ledger()
    asha, ravi = ledger.open(1), ledger.open(2)
    ledger.deposit(asha, 100_000)
    ledger.deposit(ravi, 5_000)
    ledger.hold(asha, "trf_1", 30_000)
    ledger.settle(asha, ravi, "trf_1")
    ledger.hold(asha, "trf_2", 1_000)
    ledger.release(asha, "trf_2")
    ledger.hold(ravi, "trf_3", 2_500)
    ledger.tombstone(asha, "trf_4")
    return ledger, asha, ravi


def checks(report: ReconcileReport) -> set[str]:
    return {v.check for v in report.violations}


def test_a_clean_ledger_passes_with_its_totals(books: tuple[Ledger, str, str]) -> None:
    ledger, _, _ = books

    report = ledger.report()

    assert report.violations == ()
    assert report.ok
    assert (report.accounts_checked, report.settlement_shards, report.deposits_checked) == (2, 2, 2)
    assert report.entries_checked == 8 + 2  # 8 on the accounts, one per deposit on the shards
    assert (report.holds_checked, report.open_holds, report.open_hold_amount) == (4, 1, 2_500)
    assert report.total_customer_ledger == report.total_deposits == 105_000
    assert report.total_customer_available == 105_000 - 2_500
    assert report.total_settlement == -105_000
    assert report.currencies == ("INR",)


def test_an_empty_table_is_clean() -> None:
    report = reconcile([])

    assert report.ok
    assert report.accounts_checked == report.total_deposits == 0


def test_amounts_beyond_float_precision_reconcile_exactly() -> None:
    # Given amounts whose sum a float would round (2^53 + 1 is not a double)
    ledger = Ledger(shards=1)
    account = ledger.open(1)
    ledger.deposit(account, 2**53)
    ledger.deposit(account, 1)

    report = ledger.report()

    assert report.ok, report.violations
    assert report.total_customer_ledger == 2**53 + 1


def test_an_off_by_one_balance_is_named_with_expected_and_actual(books: tuple[Ledger, str, str]) -> None:
    ledger, asha, _ = books
    ledger.account(asha)["ledger"] += 1
    ledger.account(asha)["available"] += 1

    report = ledger.report()

    posting = next(v for v in report.violations if v.check == "ledger_ne_postings")
    assert (posting.account_id, posting.expected, posting.actual) == (asha, 70_000, 70_001)
    assert checks(report) == {
        "ledger_ne_postings",
        "balance_after_ne_ledger",
        "available_after_ne_available",
        "money_not_conserved",
        "deposits_mismatch",
    }
    assert not report.ok


def test_a_missing_entry_is_a_seq_gap(books: tuple[Ledger, str, str]) -> None:
    # Given the HOLD entry (seq 2) of asha is gone: it moved no ledger money, so the balances still agree
    ledger, asha, _ = books
    ledger.delete(f"ACCOUNT#{asha}", f"ENTRY#{2:012d}")

    report = ledger.report()

    assert checks(report) == {"seq_gap", "transfer_postings_mismatch"}
    gap = next(v for v in report.violations if v.check == "seq_gap")
    assert gap.account_id == asha
    assert "lack seq 2" in gap.detail
    transfer = next(v for v in report.violations if v.check == "transfer_postings_mismatch")
    assert "trf_1 (SETTLED)" in transfer.detail


def test_a_missing_last_entry_leaves_the_version_ahead(books: tuple[Ledger, str, str]) -> None:
    ledger, _, ravi = books
    version = ledger.account(ravi)["version"]
    ledger.delete(f"ACCOUNT#{ravi}", f"ENTRY#{version:012d}")  # the HOLD of trf_3

    report = ledger.report()

    assert "version_ne_last_seq" in checks(report)
    assert "seq_gap" not in checks(report)


def test_a_hold_not_counted_in_available_is_caught(books: tuple[Ledger, str, str]) -> None:
    ledger, _, ravi = books
    ledger.account(ravi)["available"] = ledger.account(ravi)["ledger"]  # as if trf_3 held nothing

    report = ledger.report()

    violation = next(v for v in report.violations if v.check == "available_ne_ledger_minus_holds")
    assert (violation.account_id, violation.expected, violation.actual) == (ravi, 32_500, 35_000)
    assert checks(report) == {"available_ne_ledger_minus_holds", "available_after_ne_available"}


def test_a_negative_available_balance_is_a_violation_even_when_consistent() -> None:
    # Given holds worth more than the ledger (the reserve's condition was bypassed), books otherwise straight
    ledger = Ledger(shards=1)
    account = ledger.open(1)
    ledger.deposit(account, 1_000)
    ledger.hold(account, "trf_1", 1_500)

    report = ledger.report()

    assert checks(report) == {"negative_available"}
    assert report.violations[0].actual == -500


def test_money_created_out_of_nothing_breaks_conservation() -> None:
    # Given a CREDIT with no DEBIT anywhere: the account's own books agree with themselves
    ledger = Ledger(shards=1)
    account = ledger.open(1)
    ledger.deposit(account, 1_000)
    ledger.post(account, "CREDIT", 700, ledger=700, available=700, transfer_id="trf_from_nowhere")

    report = ledger.report()

    assert checks(report) == {"money_not_conserved", "deposits_mismatch", "posting_without_hold"}
    conserved = next(v for v in report.violations if v.check == "money_not_conserved")
    assert (conserved.account_id, conserved.expected, conserved.actual) == ("", 0, 700)


def test_a_deposit_without_its_settlement_side_is_named() -> None:
    ledger = Ledger(shards=1)
    account = ledger.open(1)
    ledger.deposit(account, 1_000)
    deposit_id = ledger.deposit(account, 250, settlement=False)

    report = ledger.report()

    assert checks(report) == {
        "deposit_missing_settlement_entry",
        "money_not_conserved",
        "settlement_ne_deposits",
    }
    missing = next(v for v in report.violations if v.check == "deposit_missing_settlement_entry")
    assert deposit_id in missing.detail
    shards = next(v for v in report.violations if v.check == "settlement_ne_deposits")
    assert (shards.expected, shards.actual) == (1_250, 1_000)


@pytest.mark.parametrize("status", ["PENDING_APPROVAL", "REJECTED"])
def test_a_deposit_waiting_for_approval_or_rejected_counts_for_nothing_and_must_have_no_entry(
    status: str,
) -> None:
    # Given a booked deposit, and a deposit recorded but not booked (four eyes)
    ledger = Ledger(shards=1)
    account = ledger.open(1)
    ledger.deposit(account, 1_000)
    ledger.put(
        "DEPOSIT#dep_" + "f" * 32,
        "DEPOSIT",
        kind="deposit",
        account_id=account,
        amount=10**9,
        currency="INR",
        reference="big",
        actor="usr_admin",
        settlement_shard=ledger.shards[0],
        created_at="2026-11-28T10:00:00Z",
        status=status,
    )
    # Then the books balance: the unbooked deposit is in no total
    report = ledger.report()
    assert report.ok, report.violations
    assert report.total_deposits == 1_000
    # But a CREDIT naming it (money moved without the approval) is named
    ledger.post(account, "CREDIT", 10**9, ledger=10**9, available=10**9, deposit_id="dep_" + "f" * 32)
    assert "unbooked_deposit_posted" in checks(ledger.report())


@pytest.mark.parametrize("literal", ["1.5", "100.01", "NaN", "Infinity", "12abc"])
def test_a_number_that_is_not_an_integer_is_a_violation_not_a_float(literal: str) -> None:
    ledger = Ledger(shards=1)
    account = ledger.open(1)
    ledger.deposit(account, 1_000)
    items = ledger.raw()
    entry = next(i for i in items if i["sk"]["S"] == f"ENTRY#{1:012d}")
    entry["amount"] = {"N": literal}

    report = reconcile(items)

    (violation,) = [v for v in report.violations if v.check == "non_integer_number"]
    assert violation.account_id == account
    assert "amount" in violation.detail
    # The sums that needed the amount are not guessed at: no second, meaningless ledger violation.
    assert "ledger_ne_postings" not in checks(report)


def test_a_settlement_shard_above_zero_is_a_violation() -> None:
    ledger = Ledger(shards=1)
    shard = ledger.get("ACCOUNT#settlement-00", "ACCOUNT")
    shard["ledger"] = shard["available"] = 10

    report = ledger.report()

    assert {"positive_settlement_ledger", "ledger_ne_postings", "money_not_conserved"} <= checks(report)


def test_an_open_hold_of_nothing_is_invalid_but_a_released_tombstone_is_not() -> None:
    ledger = Ledger(shards=1)
    account = ledger.open(1)
    ledger.deposit(account, 1_000)
    ledger.tombstone(account, "trf_released_before_reserve")
    ledger.put(
        "HOLD#trf_zero", "HOLD", kind="hold", account_id=account, amount=0, currency="INR", status="HELD"
    )

    report = ledger.report()

    assert checks(report) == {"invalid_hold_amount"}
    assert "trf_zero" in report.violations[0].detail


def test_entries_and_holds_without_an_account_are_orphans(books: tuple[Ledger, str, str]) -> None:
    ledger, _, ravi = books
    ledger.delete(f"ACCOUNT#{ravi}", "ACCOUNT")

    report = ledger.report()

    assert {"orphan_entry", "orphan_hold", "orphan_deposit"} <= checks(report)
    assert {v.account_id for v in report.violations if v.check.startswith("orphan_")} == {ravi}


def test_a_lone_released_tombstone_needs_no_account() -> None:
    ledger = Ledger(shards=1)
    ledger.tombstone(account_id(9), "trf_never_reserved")

    assert ledger.report().ok


def test_a_deposit_credited_with_another_amount_is_named(books: tuple[Ledger, str, str]) -> None:
    ledger, asha, _ = books
    deposit = next(i for i in ledger.items.values() if i["kind"] == "deposit" and i["account_id"] == asha)
    deposit["amount"] += 1

    report = ledger.report()

    mismatch = [v for v in report.violations if v.check == "deposit_amount_mismatch"]
    assert {(v.expected, v.actual) for v in mismatch} == {(100_001, 100_000)}
    assert len(mismatch) == 2  # the CREDIT and the shard's DEBIT
    assert "deposits_mismatch" in checks(report)


def test_an_unknown_item_kind_is_reported_and_outbox_and_number_items_are_not(
    books: tuple[Ledger, str, str],
) -> None:
    ledger, _, _ = books
    ledger.put("MYSTERY#1", "MYSTERY", kind="mystery")

    report = ledger.report()

    assert checks(report) == {"unknown_item_kind"}


def test_no_violation_detail_carries_an_account_number_or_owner_id(books: tuple[Ledger, str, str]) -> None:
    # Given a ledger broken in many ways at once, including its number items
    ledger, asha, ravi = books
    ledger.account(asha)["ledger"] = "not a number"
    ledger.account(ravi)["available"] = -1
    ledger.put(f"ACCTNUM#{NUMBER_INDEX}", "ACCTNUM", kind="numbr", account_id=asha)
    ledger.delete(f"ACCOUNT#{asha}", f"ENTRY#{1:012d}")

    report = ledger.report()

    assert len(report.violations) >= 4
    text = repr(report.to_dict())
    for secret in (NUMBER, NUMBER[-4:], NUMBER_INDEX, OWNER):
        assert secret not in text


def test_the_report_as_a_dict_bounds_the_list_but_not_the_count() -> None:
    ledger = Ledger(shards=1)
    for n in range(5):
        ledger.account(ledger.open(n))["ledger"] = 1

    body = ledger.report().to_dict(max_violations=3)

    assert body["ok"] is False
    assert body["violation_count"] > 3
    assert len(body["violations"]) == 3
    assert body["violations_truncated"] is True


# ---- scan_table, with a fake client --------------------------------------------------------------------


class FakeScanClient:
    """Serves `pages_per_segment` one-item pages per segment, as DynamoDB's Scan would; records calls."""

    def __init__(self, segments: int, pages_per_segment: int, fail_segment: int | None = None) -> None:
        self.segments = segments
        self.pages = pages_per_segment
        self.fail_segment = fail_segment
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def scan(self, **request: Any) -> dict[str, Any]:
        with self.lock:
            self.requests.append(request)
        segment = request["Segment"]
        if segment == self.fail_segment:
            raise RuntimeError("ProvisionedThroughputExceededException")
        page = int(request.get("ExclusiveStartKey", {}).get("page", {}).get("N", "0"))
        response: dict[str, Any] = {"Items": [{"pk": {"S": f"ITEM#{segment}-{page}"}}]}
        if page + 1 < self.pages:
            response["LastEvaluatedKey"] = {"page": {"N": str(page + 1)}}
        return response


def test_scan_reads_every_segment_to_its_last_page_consistently() -> None:
    client = FakeScanClient(segments=3, pages_per_segment=4)

    items = list(scan_table(client, "vaultpay-AccountsTable", segments=3, attributes=LEDGER_ATTRIBUTES))

    assert sorted(i["pk"]["S"] for i in items) == sorted(f"ITEM#{s}-{p}" for s in range(3) for p in range(4))
    assert len(client.requests) == 12
    first = client.requests[0]
    assert first["TableName"] == "vaultpay-AccountsTable"
    assert (first["ConsistentRead"], first["TotalSegments"]) == (True, 3)
    assert {r["Segment"] for r in client.requests} == {0, 1, 2}
    assert set(first["ExpressionAttributeNames"].values()) == set(LEDGER_ATTRIBUTES)
    assert "owner_id" not in first["ExpressionAttributeNames"].values()


def test_a_failed_segment_raises_in_the_caller() -> None:
    client = FakeScanClient(segments=4, pages_per_segment=50, fail_segment=2)

    with pytest.raises(RuntimeError, match="ProvisionedThroughput"):
        list(scan_table(client, "t", segments=4))


def test_a_caller_that_stops_early_stops_the_scan() -> None:
    client = FakeScanClient(segments=2, pages_per_segment=10_000)
    scan = scan_table(client, "t", segments=2)
    assert isinstance(scan, Generator)

    next(scan)
    scan.close()

    assert len(client.requests) < 100


class ChangingTable:
    """A table whose n-th full scan returns the n-th snapshot (the last one from then on), in segment 0."""

    def __init__(self, *snapshots: list[dict[str, Any]]) -> None:
        self.snapshots = snapshots
        self.scans = 0

    def scan(self, **request: Any) -> dict[str, Any]:
        if request["Segment"] != 0:
            return {"Items": []}
        self.scans += 1
        return {"Items": self.snapshots[min(self.scans, len(self.snapshots)) - 1]}


def test_a_clean_table_is_scanned_once(books: tuple[Ledger, str, str]) -> None:
    ledger, _, _ = books
    table = ChangingTable(ledger.raw())

    report = reconcile_table(table, "t", segments=2)

    assert (report.ok, report.scans, table.scans) == (True, 1, 1)


def test_a_violation_seen_mid_movement_is_not_confirmed_by_the_second_scan(
    books: tuple[Ledger, str, str],
) -> None:
    # Given a first scan that read asha's account item before a deposit committed and its entry after
    ledger, asha, _ = books
    before = ledger.raw()
    ledger.deposit(asha, 700)
    after = ledger.raw()
    torn = [i for i in after if i["sk"]["S"] != "ACCOUNT" or i["pk"]["S"] != f"ACCOUNT#{asha}"]
    torn += [i for i in before if i["sk"]["S"] == "ACCOUNT" and i["pk"]["S"] == f"ACCOUNT#{asha}"]
    assert not reconcile(torn).ok
    table = ChangingTable(torn, after)

    report = reconcile_table(table, "t", segments=2)

    assert report.ok
    assert (report.scans, table.scans) == (2, 2)
    assert report.total_deposits == 105_700


def test_a_violation_found_by_both_scans_is_reported(books: tuple[Ledger, str, str]) -> None:
    ledger, asha, _ = books
    ledger.account(asha)["ledger"] += 1
    table = ChangingTable(ledger.raw())

    report = reconcile_table(table, "t", segments=2)

    assert report.scans == 2
    assert "ledger_ne_postings" in checks(report)
    assert report.to_dict()["scans"] == 2


def test_a_settlement_credited_to_another_account_than_its_hold_names_is_caught(
    books: tuple[Ledger, str, str],
) -> None:
    ledger, _, ravi = books
    carol = ledger.open(3)
    ledger.get("HOLD#trf_1", "HOLD")["destination_account_id"] = carol

    report = ledger.report()

    assert checks(report) == {"transfer_postings_mismatch"}
    assert f"CREDIT 30000 on {ravi}" in report.violations[0].detail


def test_a_settled_transfer_without_its_credit_is_caught() -> None:
    # Given a settle that debited the source and lost the destination's side
    ledger = Ledger(shards=1)
    asha, ravi = ledger.open(1), ledger.open(2)
    ledger.deposit(asha, 1_000)
    ledger.hold(asha, "trf_1", 400)
    ledger.settle(asha, ravi, "trf_1")
    ledger.delete(f"ACCOUNT#{ravi}", f"ENTRY#{1:012d}")
    ledger.account(ravi).update(ledger=0, available=0, version=0)

    report = ledger.report()

    assert checks(report) == {"transfer_postings_mismatch", "money_not_conserved", "deposits_mismatch"}


def test_a_deposit_debited_to_another_shard_than_it_names_is_caught() -> None:
    ledger = Ledger(shards=2)
    ledger.deposit(ledger.open(1), 1_000)
    deposit = next(i for i in ledger.items.values() if i["kind"] == "deposit")
    deposit["settlement_shard"] = "settlement-07"

    report = ledger.report()

    assert checks(report) == {"deposit_shard_mismatch"}


def test_a_shard_version_that_does_not_count_its_entries_is_caught() -> None:
    ledger = Ledger(shards=1)
    ledger.deposit(ledger.open(1), 1_000)
    ledger.get("ACCOUNT#settlement-00", "ACCOUNT")["version"] = 2

    report = ledger.report()

    assert checks(report) == {"version_ne_entry_count"}

"""Ledger reconciliation: checks every AccountsTable item against the double-entry rules of the contract.

`reconcile` is pure and reads raw DynamoDB items (low-level attribute-value maps), so the scheduled Lambda,
the `vaultpay ops reconcile` command and the tests feed it the same thing; `scan_table` produces them from a
client it is given (boto3 is never imported here). Numbers are read as exact integers: a number with a
fraction is a violation of its own, never rounded and never a float.

The checks (docs/accounts-contract.md "Signs" and "AccountsTable items"), by the name a violation carries:

- every customer account: `ledger_ne_postings` (ledger = Σ CREDIT - Σ DEBIT of its entries),
  `available_ne_ledger_minus_holds` (available = ledger - Σ HELD holds), `negative_available`,
  `negative_ledger`, `seq_gap` (entries are seq 1..n without a hole), `version_ne_last_seq`,
  `balance_after_ne_ledger` / `available_after_ne_available` (the last entry's running balances);
- every settlement shard: `ledger_ne_postings` (ledger = -Σ DEBIT), `positive_settlement_ledger`,
  `available_ne_ledger`, `version_ne_entry_count`, `unexpected_entry_kind`;
- every deposit: one CREDIT on its account and one DEBIT on its shard, both of its amount
  (`deposit_missing_credit`, `deposit_missing_settlement_entry`, `deposit_posted_twice`,
  `deposit_amount_mismatch`, `deposit_account_mismatch`, `deposit_shard_mismatch`,
  `posting_without_deposit`); a deposit pending approval or rejected has no entry at all
  (`unbooked_deposit_posted`);
- every transfer: the entries its hold's status calls for, no more (`transfer_postings_mismatch`: HELD is
  one HOLD; RELEASED a HOLD and a RELEASE, or nothing for a tombstone; SETTLED a HOLD and a DEBIT on the
  source and a CREDIT on the destination), and no entry of a transfer without a hold
  (`posting_without_hold`);
- per currency: `money_not_conserved` (Σ ledger of accounts and shards = 0), `deposits_mismatch`
  (Σ customer ledgers = Σ deposits), `settlement_ne_deposits` (-Σ shards = Σ deposits);
- every item: `missing_attribute`, `non_integer_number`, `unknown_item_kind`, `bad_item_key`,
  `unknown_entry_kind`, `nonpositive_entry_amount`, `entry_key_mismatch`, `invalid_hold_amount`,
  `unknown_hold_status`, `hold_on_settlement`, `orphan_entry`, `orphan_hold`, `orphan_deposit`.

Details name account, transfer and deposit ids, sequence numbers and currencies only: never an account
number, its blind index or an owner id (the scan does not even read those attributes).
"""

from __future__ import annotations

import queue
import re
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, cast

from vaultpay.shared import dynamo as ddb

# The attributes reconciliation reads: a scan projected on these moves less data and never reads an
# account number (encrypted or not), its blind index or an owner id.
LEDGER_ATTRIBUTES: tuple[str, ...] = (
    "pk",
    "sk",
    "kind",
    "currency",
    "ledger",
    "available",
    "version",
    "seq",
    "entry_kind",
    "amount",
    "balance_after",
    "available_after",
    "status",
    "transfer_id",
    "deposit_id",
    "account_id",
    "destination_account_id",
    "settlement_shard",
)

ACCOUNT_PREFIX = "ACCOUNT#"
DEPOSIT_PREFIX = "DEPOSIT#"
HOLD_PREFIX = "HOLD#"
_ENTRY_SK = re.compile(r"ENTRY#(\d{12})")
_SETTLEMENT_ENTRY_SK = re.compile(r"ENTRY#D(.+)")
_SETTLEMENT_ID = re.compile(r"settlement-\d{2}")
_ENTRY_KINDS = frozenset({"HOLD", "RELEASE", "DEBIT", "CREDIT"})
_HOLD_STATUSES = frozenset({"HELD", "RELEASED", "SETTLED"})
_IGNORED_KINDS = frozenset({"outbox", "number"})
_MISSING_SEQS_SHOWN = 10


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: `account_id` is "" for a rule over the whole ledger (a currency's totals)."""

    account_id: str
    check: str
    expected: int | None
    actual: int | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "check": self.check,
            "expected": self.expected,
            "actual": self.actual,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """What one reconciliation saw (amounts in minor units, summed over currencies) and what it found."""

    accounts_checked: int
    settlement_shards: int
    entries_checked: int
    holds_checked: int
    open_holds: int
    open_hold_amount: int
    deposits_checked: int
    total_customer_ledger: int
    total_customer_available: int
    total_settlement: int
    total_deposits: int
    currencies: tuple[str, ...]
    violations: tuple[Violation, ...]
    scans: int = 1  # 2 when the violations were confirmed by a second scan (see `confirm`)

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self, *, max_violations: int | None = None) -> dict[str, Any]:
        """JSON-ready; `max_violations` bounds the list (a Lambda response is limited), never the count."""
        shown = self.violations if max_violations is None else self.violations[:max_violations]
        return {
            "ok": self.ok,
            "accounts_checked": self.accounts_checked,
            "settlement_shards": self.settlement_shards,
            "entries_checked": self.entries_checked,
            "holds_checked": self.holds_checked,
            "open_holds": self.open_holds,
            "open_hold_amount": self.open_hold_amount,
            "deposits_checked": self.deposits_checked,
            "total_customer_ledger": self.total_customer_ledger,
            "total_customer_available": self.total_customer_available,
            "total_settlement": self.total_settlement,
            "total_deposits": self.total_deposits,
            "currencies": list(self.currencies),
            "violation_count": len(self.violations),
            "violations": [v.to_dict() for v in shown],
            "violations_truncated": len(shown) < len(self.violations),
            "scans": self.scans,
        }


# ---- what the scan accumulates ---------------------------------------------------------------------------


@dataclass(slots=True)
class _AccountItem:
    settlement: bool
    currency: str | None
    ledger: int | None
    available: int | None
    version: int | None


@dataclass(slots=True)
class _Postings:
    """Everything found under one `ACCOUNT#<id>` partition other than the account item itself."""

    credits: int = 0
    debits: int = 0
    held: int = 0
    open_holds: int = 0
    entries: int = 0
    holds: int = 0
    seqs: set[int] = field(default_factory=set)
    last_seq: int = 0
    last_balance_after: int | None = None
    last_available_after: int | None = None
    # An amount that could not be read makes the sums unknown: the checks that need them are skipped (the
    # unreadable number is a violation already) instead of reporting a difference that means nothing.
    sums_unknown: bool = False
    holds_unknown: bool = False


@dataclass(slots=True)
class _DepositTrail:
    amount: int | None = None
    account_id: str | None = None
    currency: str | None = None
    seen: bool = False
    shard: str | None = None
    booked: bool = True  # PENDING_APPROVAL and REJECTED deposits move no money
    credits: list[tuple[str, int | None]] = field(default_factory=list)  # (account id, amount)
    debits: list[tuple[str, int | None]] = field(default_factory=list)  # (shard id, amount)


Posting = tuple[str, str, int]  # (account id, entry kind, amount)


@dataclass(slots=True)
class _TransferTrail:
    account_id: str = ""
    amount: int | None = None
    status: str | None = None
    destination: str | None = None
    seen: bool = False
    readable: bool = True  # every entry of the transfer had a kind and an amount
    postings: list[Posting] = field(default_factory=list)


class _Reconciler:
    def __init__(self) -> None:
        self.violations: list[Violation] = []
        self.accounts: dict[str, _AccountItem] = {}
        self.postings: defaultdict[str, _Postings] = defaultdict(_Postings)
        self.deposits: defaultdict[str, _DepositTrail] = defaultdict(_DepositTrail)
        self.transfers: defaultdict[str, _TransferTrail] = defaultdict(_TransferTrail)
        self.entries = 0
        self.holds = 0

    def flag(
        self, account_id: str, check: str, detail: str, expected: int | None = None, actual: int | None = None
    ) -> None:
        self.violations.append(Violation(account_id, check, expected, actual, detail))

    # ---- reading attributes ----
    def text(self, item: Mapping[str, Any], name: str, owner: str, what: str) -> str | None:
        value = ddb.str_attr(item, name)
        if value is not None:
            return value
        self.flag(owner, "missing_attribute", f"{what}: no string attribute {name!r}")
        return None

    def number(self, item: Mapping[str, Any], name: str, owner: str, what: str) -> int | None:
        value = item.get(name)
        raw = value.get("N") if isinstance(value, Mapping) else None
        if not isinstance(raw, str):
            self.flag(owner, "missing_attribute", f"{what}: no number attribute {name!r}")
            return None
        try:
            return ddb.exact_int(raw, name)
        except ValueError:
            self.flag(owner, "non_integer_number", f"{what}: {name} is {raw!r}, not an integer")
            return None

    # ---- one item ----
    def add(self, item: Mapping[str, Any]) -> None:
        pk = ddb.str_attr(item, "pk") or ""
        sk = ddb.str_attr(item, "sk") or ""
        kind = ddb.str_attr(item, "kind")
        owner = pk[len(ACCOUNT_PREFIX) :] if pk.startswith(ACCOUNT_PREFIX) else ""
        if kind in _IGNORED_KINDS:
            return
        if kind in ("account", "settlement"):
            self.add_account(item, kind, pk, sk, owner)
        elif kind == "entry":
            self.add_entry(item, pk, sk, owner)
        elif kind == "hold":
            self.add_hold(item, pk, sk)
        elif kind == "deposit":
            self.add_deposit(item, pk, sk)
        else:
            self.flag(owner, "unknown_item_kind", f"item {_key_shape(pk, sk)} has kind {kind!r}")

    def add_account(self, item: Mapping[str, Any], kind: str, pk: str, sk: str, owner: str) -> None:
        settlement = kind == "settlement"
        if not owner or sk != "ACCOUNT" or settlement != bool(_SETTLEMENT_ID.fullmatch(owner)):
            self.flag(owner, "bad_item_key", f"{kind} item has key {_key_shape(pk, sk)}")
            return
        what = f"{kind} item"
        self.accounts[owner] = _AccountItem(
            settlement=settlement,
            currency=self.text(item, "currency", owner, what),
            ledger=self.number(item, "ledger", owner, what),
            available=self.number(item, "available", owner, what),
            version=self.number(item, "version", owner, what),
        )

    def add_entry(self, item: Mapping[str, Any], pk: str, sk: str, owner: str) -> None:
        self.entries += 1
        if not owner:
            self.flag("", "bad_item_key", f"entry item has key {_key_shape(pk, sk)}")
            return
        postings = self.postings[owner]
        postings.entries += 1
        what = f"entry {sk}"
        entry_kind = self.text(item, "entry_kind", owner, what)
        amount = self.number(item, "amount", owner, what)
        if amount is None:
            postings.sums_unknown = True
        elif amount <= 0:
            self.flag(owner, "nonpositive_entry_amount", f"{what}: amount must be > 0", 1, amount)
        if entry_kind not in _ENTRY_KINDS:
            if entry_kind is not None:
                self.flag(owner, "unknown_entry_kind", f"{what}: entry_kind {entry_kind!r}")
            postings.sums_unknown = True
        if entry_kind == "CREDIT" and amount is not None:
            postings.credits += amount
        elif entry_kind == "DEBIT" and amount is not None:
            postings.debits += amount
        if _SETTLEMENT_ID.fullmatch(owner):
            self.add_settlement_entry(item, owner, sk, entry_kind, amount)
        else:
            self.add_customer_entry(item, owner, sk, entry_kind, amount, postings)

    def add_settlement_entry(
        self, item: Mapping[str, Any], owner: str, sk: str, entry_kind: str | None, amount: int | None
    ) -> None:
        match = _SETTLEMENT_ENTRY_SK.fullmatch(sk)
        if match is None:
            self.flag(owner, "bad_item_key", f"settlement entry has key {_key_shape('ACCOUNT#', sk)}")
            return
        if entry_kind is not None and entry_kind != "DEBIT":
            self.flag(owner, "unexpected_entry_kind", f"entry {sk}: a settlement shard only takes DEBIT")
        deposit_id = ddb.str_attr(item, "deposit_id")
        if deposit_id != match.group(1):
            self.flag(owner, "entry_key_mismatch", f"entry {sk}: deposit_id {deposit_id!r} is not the key's")
        self.deposits[match.group(1)].debits.append((owner, amount))

    def add_customer_entry(
        self,
        item: Mapping[str, Any],
        owner: str,
        sk: str,
        entry_kind: str | None,
        amount: int | None,
        postings: _Postings,
    ) -> None:
        match = _ENTRY_SK.fullmatch(sk)
        what = f"entry {sk}"
        if match is None:
            self.flag(owner, "bad_item_key", f"entry item has key {_key_shape('ACCOUNT#', sk)}")
            postings.sums_unknown = True
            return
        seq = int(match.group(1))
        if "seq" in item:
            stored = self.number(item, "seq", owner, what)
            if stored is not None and stored != seq:
                self.flag(owner, "entry_key_mismatch", f"{what}: seq attribute differs", seq, stored)
        balance_after = self.number(item, "balance_after", owner, what)
        available_after = self.number(item, "available_after", owner, what)
        postings.seqs.add(seq)
        if seq > postings.last_seq:
            postings.last_seq = seq
            postings.last_balance_after = balance_after
            postings.last_available_after = available_after
        deposit_id = ddb.str_attr(item, "deposit_id")
        if deposit_id is not None and entry_kind == "CREDIT":
            self.deposits[deposit_id].credits.append((owner, amount))
        transfer_id = ddb.str_attr(item, "transfer_id")
        if transfer_id is not None:
            trail = self.transfers[transfer_id]
            if entry_kind is None or amount is None:
                trail.readable = False
            else:
                trail.postings.append((owner, entry_kind, amount))

    def add_hold(self, item: Mapping[str, Any], pk: str, sk: str) -> None:
        self.holds += 1
        transfer_id = pk[len(HOLD_PREFIX) :] if pk.startswith(HOLD_PREFIX) else ""
        if not transfer_id or sk != "HOLD":
            self.flag("", "bad_item_key", f"hold item has key {_key_shape(pk, sk)}")
            return
        what = f"hold of transfer {transfer_id}"
        owner = self.text(item, "account_id", "", what) or ""
        status = self.text(item, "status", owner, what)
        amount = self.number(item, "amount", owner, what)
        trail = self.transfers[transfer_id]
        trail.seen, trail.account_id, trail.amount, trail.status = True, owner, amount, status
        trail.destination = ddb.str_attr(item, "destination_account_id")
        if _SETTLEMENT_ID.fullmatch(owner):
            self.flag(owner, "hold_on_settlement", f"{what}: a settlement shard holds nothing")
        postings = self.postings[owner]
        if status not in _HOLD_STATUSES:
            if status is not None:
                self.flag(owner, "unknown_hold_status", f"{what}: status {status!r}")
            postings.holds_unknown = True
        if amount is None:
            postings.holds_unknown = True
        elif amount < 0 or (amount == 0 and status != "RELEASED"):
            self.flag(owner, "invalid_hold_amount", f"{what}: {status} with amount {amount}", None, amount)
        if status == "RELEASED" and amount == 0:
            # A tombstone: release ran before (or instead of) the reserve, for whatever source account the
            # saga named. It holds no money and needs no account.
            return
        postings.holds += 1
        if status == "HELD" and amount is not None:
            postings.held += amount
            postings.open_holds += 1

    def add_deposit(self, item: Mapping[str, Any], pk: str, sk: str) -> None:
        deposit_id = pk[len(DEPOSIT_PREFIX) :] if pk.startswith(DEPOSIT_PREFIX) else ""
        if not deposit_id or sk != "DEPOSIT":
            self.flag("", "bad_item_key", f"deposit item has key {_key_shape(pk, sk)}")
            return
        what = f"deposit {deposit_id}"
        trail = self.deposits[deposit_id]
        trail.seen = True
        trail.account_id = self.text(item, "account_id", "", what)
        trail.amount = self.number(item, "amount", trail.account_id or "", what)
        trail.currency = self.text(item, "currency", trail.account_id or "", what)
        trail.shard = ddb.str_attr(item, "settlement_shard")
        trail.booked = (ddb.str_attr(item, "status") or "BOOKED") == "BOOKED"

    # ---- after the last item ----
    def report(self) -> ReconcileReport:
        self.check_orphans()
        for account_id, account in sorted(self.accounts.items()):
            postings = self.postings.get(account_id) or _Postings()
            if account.settlement:
                self.check_settlement(account_id, account, postings)
            else:
                self.check_customer(account_id, account, postings)
        deposit_totals = self.check_deposits()
        self.check_transfers()
        self.check_totals(deposit_totals)
        customers = [a for a in self.accounts.values() if not a.settlement]
        shards = [a for a in self.accounts.values() if a.settlement]
        customer_postings = [
            self.postings[i] for i, a in self.accounts.items() if not a.settlement and i in self.postings
        ]
        currencies = {a.currency for a in self.accounts.values() if a.currency}
        currencies.update(d.currency for d in self.deposits.values() if d.seen and d.currency)
        return ReconcileReport(
            accounts_checked=len(customers),
            settlement_shards=len(shards),
            entries_checked=self.entries,
            holds_checked=self.holds,
            open_holds=sum(p.open_holds for p in customer_postings),
            open_hold_amount=sum(p.held for p in customer_postings),
            deposits_checked=sum(1 for d in self.deposits.values() if d.seen),  # booked or not
            total_customer_ledger=sum(a.ledger or 0 for a in customers),
            total_customer_available=sum(a.available or 0 for a in customers),
            total_settlement=sum(a.ledger or 0 for a in shards),
            total_deposits=sum(d.amount or 0 for d in self.deposits.values() if d.seen and d.booked),
            currencies=tuple(sorted(currencies)),
            violations=tuple(sorted(self.violations, key=lambda v: (v.account_id, v.check, v.detail))),
        )

    def check_orphans(self) -> None:
        for account_id, postings in sorted(self.postings.items()):
            if account_id in self.accounts:
                continue
            if postings.entries:
                self.flag(account_id, "orphan_entry", f"{postings.entries} entries, and no account item")
            if postings.holds:
                self.flag(account_id, "orphan_hold", f"{postings.holds} holds, and no account item")

    def check_customer(self, account_id: str, account: _AccountItem, postings: _Postings) -> None:
        ledger, available, version = account.ledger, account.available, account.version
        if ledger is not None and not postings.sums_unknown:
            expected = postings.credits - postings.debits
            if ledger != expected:
                detail = "ledger is not sum(CREDIT) - sum(DEBIT)"
                self.flag(account_id, "ledger_ne_postings", detail, expected, ledger)
        if ledger is not None and available is not None and not postings.holds_unknown:
            expected = ledger - postings.held
            if available != expected:
                detail = f"available is not ledger - open holds ({postings.open_holds})"
                self.flag(account_id, "available_ne_ledger_minus_holds", detail, expected, available)
        if available is not None and available < 0:
            self.flag(account_id, "negative_available", "available balance below zero", 0, available)
        if ledger is not None and ledger < 0:
            self.flag(account_id, "negative_ledger", "ledger balance below zero", 0, ledger)
        last = postings.last_seq
        missing = [seq for seq in range(1, last + 1) if seq not in postings.seqs]
        if missing:
            shown = ", ".join(map(str, missing[:_MISSING_SEQS_SHOWN]))
            more = len(missing) - _MISSING_SEQS_SHOWN
            detail = f"entries 1..{last} lack seq {shown}" + (f" and {more} more" if more > 0 else "")
            self.flag(account_id, "seq_gap", detail, last, len(postings.seqs))
        if version is not None and version != last:
            self.flag(account_id, "version_ne_last_seq", "version is not the last entry's seq", version, last)
        balance_after, available_after = postings.last_balance_after, postings.last_available_after
        if last and None not in (ledger, balance_after) and balance_after != ledger:
            detail = f"entry seq {last}: balance_after is not the ledger"
            self.flag(account_id, "balance_after_ne_ledger", detail, ledger, balance_after)
        if last and None not in (available, available_after) and available_after != available:
            detail = f"entry seq {last}: available_after is not the available balance"
            self.flag(account_id, "available_after_ne_available", detail, available, available_after)

    def check_settlement(self, account_id: str, account: _AccountItem, postings: _Postings) -> None:
        ledger, available = account.ledger, account.available
        if ledger is not None and not postings.sums_unknown:
            expected = postings.credits - postings.debits
            if ledger != expected:
                detail = "shard ledger is not -sum(DEBIT)"
                self.flag(account_id, "ledger_ne_postings", detail, expected, ledger)
        if ledger is not None and ledger > 0:
            detail = "a settlement shard is never above zero"
            self.flag(account_id, "positive_settlement_ledger", detail, 0, ledger)
        if ledger is not None and available is not None and available != ledger:
            detail = "a shard's available is its ledger"
            self.flag(account_id, "available_ne_ledger", detail, ledger, available)
        if account.version is not None and account.version != postings.entries:
            detail = "a shard's version counts its DEBIT entries"
            self.flag(account_id, "version_ne_entry_count", detail, postings.entries, account.version)

    def check_deposits(self) -> dict[str, int]:
        """Each deposit's two sides; returns Σ deposit amounts per currency."""
        totals: defaultdict[str, int] = defaultdict(int)
        for deposit_id, trail in sorted(self.deposits.items()):
            what = f"deposit {deposit_id}"
            if not trail.seen:
                for account_id, _ in trail.credits + trail.debits:
                    detail = f"an entry names {what}, which does not exist"
                    self.flag(account_id, "posting_without_deposit", detail)
                continue
            owner = trail.account_id or ""
            if not trail.booked:
                for account_id, _ in trail.credits + trail.debits:
                    detail = f"{what} is not booked (pending or rejected) but has an entry"
                    self.flag(account_id, "unbooked_deposit_posted", detail)
                continue
            if trail.currency is not None and trail.amount is not None:
                totals[trail.currency] += trail.amount
            if trail.account_id is not None and trail.account_id not in self.accounts:
                self.flag(owner, "orphan_deposit", f"{what} names an account that does not exist")
            for side, postings, missing in (
                ("CREDIT", trail.credits, "deposit_missing_credit"),
                ("DEBIT", trail.debits, "deposit_missing_settlement_entry"),
            ):
                if not postings:
                    self.flag(owner, missing, f"{what} has no {side} entry", trail.amount, None)
                elif len(postings) > 1:
                    detail = f"{what} has {len(postings)} {side} entries"
                    self.flag(owner, "deposit_posted_twice", detail, 1, len(postings))
                for _, amount in postings:
                    if trail.amount is not None and amount is not None and amount != trail.amount:
                        detail = f"{what}: {side} entry amount differs"
                        self.flag(owner, "deposit_amount_mismatch", detail, trail.amount, amount)
            for account_id, _ in trail.credits:
                if trail.account_id is not None and account_id != trail.account_id:
                    self.flag(owner, "deposit_account_mismatch", f"{what} is credited to {account_id}")
            for shard, _ in trail.debits:
                if trail.shard is not None and shard != trail.shard:
                    self.flag(shard, "deposit_shard_mismatch", f"{what} names {trail.shard}, not this shard")
        return totals

    def check_transfers(self) -> None:
        """Each transfer's entries are exactly what its hold's status says happened."""
        for transfer_id, trail in sorted(self.transfers.items()):
            what = f"transfer {transfer_id}"
            if not trail.seen:
                for account_id in sorted({account for account, _, _ in trail.postings}):
                    self.flag(
                        account_id, "posting_without_hold", f"entries of {what}, which has no hold item"
                    )
                continue
            if not trail.readable or trail.amount is None or trail.status not in _HOLD_STATUSES:
                continue  # an unreadable attribute is a violation already
            source, amount = trail.account_id, trail.amount
            expected: list[Posting] = []
            if amount > 0:
                expected.append((source, "HOLD", amount))
            if trail.status == "RELEASED" and amount > 0:
                expected.append((source, "RELEASE", amount))
            elif trail.status == "SETTLED":
                expected += [(source, "DEBIT", amount), (trail.destination or "?", "CREDIT", amount)]
            if sorted(expected) != sorted(trail.postings):
                detail = f"{what} ({trail.status}) has entries {_postings(trail.postings)}, " + (
                    f"not {_postings(expected)}"
                )
                self.flag(source, "transfer_postings_mismatch", detail, len(expected), len(trail.postings))

    def check_totals(self, deposits: Mapping[str, int]) -> None:
        customers: defaultdict[str, int] = defaultdict(int)
        shards: defaultdict[str, int] = defaultdict(int)
        for account in self.accounts.values():
            if account.currency is None or account.ledger is None:
                continue
            (shards if account.settlement else customers)[account.currency] += account.ledger
        for currency in sorted(set(customers) | set(shards) | set(deposits)):
            customer, shard, deposited = customers[currency], shards[currency], deposits.get(currency, 0)
            if customer + shard != 0:
                detail = f"{currency}: sum(ledger) over accounts and settlement shards is not 0"
                self.flag("", "money_not_conserved", detail, 0, customer + shard)
            if customer != deposited:
                detail = f"{currency}: sum(customer ledgers) is not sum(deposits)"
                self.flag("", "deposits_mismatch", detail, deposited, customer)
            if -shard != deposited:
                detail = f"{currency}: -sum(settlement shards) is not sum(deposits)"
                self.flag("", "settlement_ne_deposits", detail, deposited, -shard)


def _postings(postings: Iterable[Posting]) -> str:
    return (
        "[" + ", ".join(f"{kind} {amount} on {account}" for account, kind, amount in sorted(postings)) + "]"
    )


def _key_shape(pk: str, sk: str) -> str:
    """The key with the partition's id hidden (in a number item it is a blind index); the account id is the
    violation's own field. Sort keys hold no personal data (sequence numbers, transfer and deposit ids)."""
    return f"{pk.split('#', 1)[0]}#.../{sk[:80]}"


def reconcile(items: Iterable[Mapping[str, Any]]) -> ReconcileReport:
    """Checks the whole table's items (in any order) and reports totals and every violation found."""
    reconciler = _Reconciler()
    for item in items:
        reconciler.add(item)
    return reconciler.report()


def confirm(first: ReconcileReport, second: ReconcileReport) -> ReconcileReport:
    """The second scan's report, keeping only the violations the first one also found.

    A Scan is no snapshot: a movement that commits while the scan runs can be seen half (an account item
    read before it, the account's new entry after; a transfer's source before, its destination after), which
    looks like a broken balance or money appearing. Such a violation is usually gone on a second scan, while
    one in the stored data is found again, by the same account and check. Under steady traffic the totals
    (`money_not_conserved`, ...) can be caught mid-transfer in both scans: those need a quiet moment, or
    the alarm's several evaluation periods, to tell apart.
    """
    seen = {(v.account_id, v.check) for v in first.violations}
    kept = tuple(v for v in second.violations if (v.account_id, v.check) in seen)
    return replace(second, violations=kept, scans=first.scans + second.scans)


def reconcile_table(client: Any, table_name: str, *, segments: int = 4) -> ReconcileReport:
    """Scans and reconciles the table; when something is wrong, scans again and keeps what is found twice."""

    def once() -> ReconcileReport:
        return reconcile(scan_table(client, table_name, segments=segments, attributes=LEDGER_ATTRIBUTES))

    report = once()
    return report if report.ok else confirm(report, once())


# ---- reading the table -------------------------------------------------------------------------------------

_DONE = object()


def scan_table(
    client: Any,
    table_name: str,
    *,
    segments: int = 4,
    attributes: Sequence[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every item of the table, read by a parallel, strongly consistent Scan of `segments` segments.

    `client` is a boto3 DynamoDB client (thread-safe; the caller makes it). Pages are handed over through a
    bounded queue, so memory holds a few pages, not the table. A failed page raises here, in the caller.
    """
    if segments < 1:
        raise ValueError("segments must be at least 1")
    request: dict[str, Any] = {"TableName": table_name, "ConsistentRead": True, "TotalSegments": segments}
    if attributes:
        names = {f"#a{i}": name for i, name in enumerate(attributes)}
        request["ProjectionExpression"] = ", ".join(names)
        request["ExpressionAttributeNames"] = names
    pages: queue.Queue[object] = queue.Queue(maxsize=2 * segments)
    stop = threading.Event()

    def hand_over(page: object) -> bool:
        while not stop.is_set():
            try:
                pages.put(page, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read_segment(segment: int) -> None:
        try:
            page_request = {**request, "Segment": segment}
            while not stop.is_set():
                response = client.scan(**page_request)
                if not hand_over(response.get("Items", [])):
                    return
                last_key = response.get("LastEvaluatedKey")
                if not last_key:
                    return
                page_request["ExclusiveStartKey"] = last_key
        except Exception as exc:
            hand_over(exc)
        finally:
            hand_over(_DONE)

    with ThreadPoolExecutor(max_workers=segments, thread_name_prefix="reconcile-scan") as pool:
        for segment in range(segments):
            pool.submit(read_segment, segment)
        try:
            running = segments
            while running:
                page = pages.get()
                if page is _DONE:
                    running -= 1
                elif isinstance(page, Exception):
                    raise page
                else:
                    yield from cast("list[dict[str, Any]]", page)
        finally:
            # Stops the other segments when the caller gives up or a page failed (each ends its current call).
            stop.set()

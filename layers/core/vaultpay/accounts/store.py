"""The accounts table: accounts, entries, holds, deposits and outbox items (docs/accounts-contract.md).

The ledger talks to DynamoDB through the low-level client rather than PynamoDB models: every movement is one
hand-built `TransactWriteItems` whose conditions are the whole point (the version read, `available >= amount`,
the hold's status), whose cancellation reasons must be read item by item, and whose consumed capacity the
benchmarks report (PynamoDB's TransactWrite discards the response). docs/persistence.md has the rule; the
calls, retries and error translation are vaultpay.shared.dynamo's `Table`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from vaultpay.accounts.model import (
    OPEN_HOLD_SHARDS,
    Account,
    AccountChange,
    AccountStatus,
    AccountType,
    Deposit,
    DepositStatus,
    Entry,
    EntryKind,
    Hold,
    HoldStatus,
    Movement,
    open_hold_shard,
)
from vaultpay.accounts.ports import NumberTaken, Page, StaleRead
from vaultpay.shared import dynamo as ddb
from vaultpay.shared.errors import ConcurrentModification, ConfigurationError
from vaultpay.shared.events import DomainEvent

BY_OWNER_INDEX = "ByOwner"
OPEN_HOLDS_INDEX = "OpenHolds"
DEPOSIT_APPROVALS_INDEX = "DepositApprovals"
# Only a PENDING_APPROVAL deposit carries `approval_queue` (this value), which puts it in the sparse index.
APPROVAL_QUEUE = "PENDING_APPROVAL"


# ---- attribute values ------------------------------------------------------------------------------------


def _account(item: Mapping[str, Any]) -> Account:
    return Account(
        account_id=item["pk"]["S"].removeprefix("ACCOUNT#"),
        owner_id=item["owner_id"]["S"],
        type=AccountType(item["type"]["S"]),
        currency=item["currency"]["S"],
        status=AccountStatus(item["status"]["S"]),
        number_index=item["number_index"]["S"],
        number_enc=item["number_enc"]["S"],
        number_last4=item["number_last4"]["S"],
        ledger=ddb.int_attr(item, "ledger"),
        available=ddb.int_attr(item, "available"),
        version=ddb.int_attr(item, "version"),
        created_at=item["created_at"]["S"],
    )


def _hold(item: Mapping[str, Any]) -> Hold:
    return Hold(
        transfer_id=item["pk"]["S"].removeprefix("HOLD#"),
        account_id=item["account_id"]["S"],
        amount=ddb.int_attr(item, "amount"),
        currency=item["currency"]["S"],
        status=HoldStatus(item["status"]["S"]),
        held_at=item["held_at"]["S"],
        hold_expires_at=ddb.int_attr(item, "hold_expires_at"),
        destination_account_id=ddb.str_attr(item, "destination_account_id"),
        released_at=ddb.str_attr(item, "released_at"),
        settled_at=ddb.str_attr(item, "settled_at"),
    )


def _entry(item: Mapping[str, Any]) -> Entry:
    return Entry(
        account_id=item["pk"]["S"].removeprefix("ACCOUNT#"),
        seq=ddb.int_attr(item, "seq"),
        entry_id=item["entry_id"]["S"],
        kind=EntryKind(item["entry_kind"]["S"]),
        amount=ddb.int_attr(item, "amount"),
        balance_after=ddb.int_attr(item, "balance_after"),
        available_after=ddb.int_attr(item, "available_after"),
        description=item["description"]["S"],
        created_at=item["created_at"]["S"],
        transfer_id=ddb.str_attr(item, "transfer_id"),
        deposit_id=ddb.str_attr(item, "deposit_id"),
    )


def _account_item(account: Account) -> dict[str, Any]:
    return {
        "pk": ddb.s(f"ACCOUNT#{account.account_id}"),
        "sk": ddb.s("ACCOUNT"),
        "kind": ddb.s("account"),
        "owner_id": ddb.s(account.owner_id),
        "created_sk": ddb.s(f"{account.created_at}#{account.account_id}"),
        "type": ddb.s(account.type.value),
        "currency": ddb.s(account.currency),
        "status": ddb.s(account.status.value),
        "number_index": ddb.s(account.number_index),
        "number_enc": ddb.s(account.number_enc),
        "number_last4": ddb.s(account.number_last4),
        "ledger": ddb.n(account.ledger),
        "available": ddb.n(account.available),
        "version": ddb.n(account.version),
        "created_at": ddb.s(account.created_at),
    }


def _entry_item(entry: Entry) -> dict[str, Any]:
    item = {
        "pk": ddb.s(f"ACCOUNT#{entry.account_id}"),
        "sk": ddb.s(f"ENTRY#{entry.seq:012d}"),
        "kind": ddb.s("entry"),
        "entry_id": ddb.s(entry.entry_id),
        "seq": ddb.n(entry.seq),
        "entry_kind": ddb.s(entry.kind.value),
        "amount": ddb.n(entry.amount),
        "balance_after": ddb.n(entry.balance_after),
        "available_after": ddb.n(entry.available_after),
        "description": ddb.s(entry.description),
        "created_at": ddb.s(entry.created_at),
    }
    if entry.transfer_id is not None:
        item["transfer_id"] = ddb.s(entry.transfer_id)
    if entry.deposit_id is not None:
        item["deposit_id"] = ddb.s(entry.deposit_id)
    return item


def _hold_item(hold: Hold) -> dict[str, Any]:
    item = {
        "pk": ddb.s(f"HOLD#{hold.transfer_id}"),
        "sk": ddb.s("HOLD"),
        "kind": ddb.s("hold"),
        "account_id": ddb.s(hold.account_id),
        "amount": ddb.n(hold.amount),
        "currency": ddb.s(hold.currency),
        "status": ddb.s(hold.status.value),
        "held_at": ddb.s(hold.held_at),
        "hold_expires_at": ddb.n(hold.hold_expires_at),
    }
    for name in ("destination_account_id", "released_at", "settled_at"):
        value = getattr(hold, name)
        if value is not None:
            item[name] = ddb.s(value)
    if hold.status is HoldStatus.HELD:
        # Only a HELD hold is in the sparse OpenHolds index; settling or releasing replaces the item
        # without this attribute, which takes it out (the hold sweeper finds expired ones there).
        item["open_hold_shard"] = ddb.s(open_hold_shard(hold.transfer_id))
    return item


def _deposit_item(deposit: Deposit) -> dict[str, Any]:
    item = {
        "pk": ddb.s(f"DEPOSIT#{deposit.deposit_id}"),
        "sk": ddb.s("DEPOSIT"),
        "kind": ddb.s("deposit"),
        "account_id": ddb.s(deposit.account_id),
        "amount": ddb.n(deposit.amount),
        "currency": ddb.s(deposit.currency),
        "reference": ddb.s(deposit.reference),
        "actor": ddb.s(deposit.actor),
        "settlement_shard": ddb.s(deposit.settlement_shard),
        "created_at": ddb.s(deposit.created_at),
        "ledger_after": ddb.n(deposit.ledger_after),
        "available_after": ddb.n(deposit.available_after),
        "status": ddb.s(deposit.status.value),
    }
    for name in ("decided_by", "decided_at", "decision_reason"):
        value = getattr(deposit, name)
        if value is not None:
            item[name] = ddb.s(value)
    if deposit.status is DepositStatus.PENDING_APPROVAL:
        item["approval_queue"] = ddb.s(APPROVAL_QUEUE)
        item["created_sk"] = ddb.s(f"{deposit.created_at}#{deposit.deposit_id}")
    return item


def _deposit(item: Mapping[str, Any]) -> Deposit:
    return Deposit(
        deposit_id=item["pk"]["S"].removeprefix("DEPOSIT#"),
        account_id=item["account_id"]["S"],
        amount=ddb.int_attr(item, "amount"),
        currency=item["currency"]["S"],
        reference=item["reference"]["S"],
        actor=item["actor"]["S"],
        created_at=item["created_at"]["S"],
        settlement_shard=item["settlement_shard"]["S"],
        ledger_after=ddb.int_attr(item, "ledger_after"),
        available_after=ddb.int_attr(item, "available_after"),
        # Written before four-eyes approval existed: every such deposit was booked when written.
        status=DepositStatus(ddb.str_attr(item, "status") or DepositStatus.BOOKED.value),
        decided_by=ddb.str_attr(item, "decided_by"),
        decided_at=ddb.str_attr(item, "decided_at"),
        decision_reason=ddb.str_attr(item, "decision_reason"),
    )


# ---- the store -------------------------------------------------------------------------------------------


class DynamoLedgerStore:
    """The LedgerStore port on the accounts table."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not table_name:
            raise ConfigurationError("the accounts table name is not configured")
        self._db = ddb.Table(client, table_name, sleep=sleep)
        self._table = table_name
        # Write units of the last committed transaction (ReturnConsumedCapacity), for metrics and benchmarks.
        self.last_write_units: float = 0.0

    # ---- reads ----------------------------------------------------------------------------------------

    def get_account(self, account_id: str) -> Account | None:
        item = self._get(f"ACCOUNT#{account_id}", "ACCOUNT")
        return _account(item) if item is not None and ddb.str_attr(item, "kind") == "account" else None

    def get_account_and_hold(self, account_id: str, transfer_id: str) -> tuple[Account | None, Hold | None]:
        """The account and its hold for a transfer, read consistently in one round trip."""
        keys = [
            {"pk": ddb.s(f"ACCOUNT#{account_id}"), "sk": ddb.s("ACCOUNT")},
            # The hold is keyed by the transfer alone: a transfer id reused with another account is seen.
            {"pk": ddb.s(f"HOLD#{transfer_id}"), "sk": ddb.s("HOLD")},
        ]
        found = {item["pk"]["S"]: item for item in self._db.batch_get(keys)}
        account_item = found.get(f"ACCOUNT#{account_id}")
        hold_item = found.get(f"HOLD#{transfer_id}")
        account = (
            _account(account_item)
            if account_item is not None and ddb.str_attr(account_item, "kind") == "account"
            else None
        )
        return account, (_hold(hold_item) if hold_item is not None else None)

    def get_deposit(self, deposit_id: str) -> Deposit | None:
        item = self._get(f"DEPOSIT#{deposit_id}", "DEPOSIT")
        return _deposit(item) if item is not None else None

    def pending_deposits(self, *, limit: int, cursor: str | None) -> Page:
        """Deposits waiting for a second admin, oldest first, from the sparse DepositApprovals index."""
        params: dict[str, Any] = {
            "IndexName": DEPOSIT_APPROVALS_INDEX,
            "KeyConditionExpression": "approval_queue = :q",
            "ExpressionAttributeValues": {":q": ddb.s(APPROVAL_QUEUE)},
        }

        def deposit_key(deposit_id: str) -> dict[str, Any]:
            if not deposit_id.startswith("dep_"):
                raise ddb.InvalidCursor()
            return {"pk": ddb.s(f"DEPOSIT#{deposit_id}"), "sk": ddb.s("DEPOSIT")}

        items, next_cursor = self._db.index_page(
            params,
            partition={"approval_queue": ddb.s(APPROVAL_QUEUE)},
            cursor=cursor,
            cursor_name="p",
            item_key=deposit_key,
            limit=limit,
        )
        return Page(items=[_deposit(item) for item in items], next_cursor=next_cursor)

    def account_id_by_number_index(self, number_index: str) -> str | None:
        item = self._get(f"ACCTNUM#{number_index}", "ACCTNUM")
        return item["account_id"]["S"] if item is not None else None

    def list_accounts(self, owner_id: str, *, limit: int, cursor: str | None) -> Page:
        """The owner's accounts, oldest first, from the sparse ByOwner index (eventually consistent)."""
        params: dict[str, Any] = {
            "IndexName": BY_OWNER_INDEX,
            "KeyConditionExpression": "owner_id = :o",
            "ExpressionAttributeValues": {":o": ddb.s(owner_id)},
        }
        # Resumed under the caller's own owner id: a cursor can only ever resume inside the caller's accounts.
        items, next_cursor = self._db.index_page(
            params,
            partition={"owner_id": ddb.s(owner_id)},
            cursor=cursor,
            cursor_name="c",
            item_key=lambda account_id: {"pk": ddb.s(f"ACCOUNT#{account_id}"), "sk": ddb.s("ACCOUNT")},
            limit=limit,
        )
        return Page(items=[_account(item) for item in items], next_cursor=next_cursor)

    def expired_holds(self, now_s: int, *, limit: int) -> list[Hold]:
        """HELD holds whose expiry has passed, oldest expiry first, from every OpenHolds partition."""
        found: list[Hold] = []
        for shard in range(OPEN_HOLD_SHARDS):
            response = self._db.query(
                IndexName=OPEN_HOLDS_INDEX,
                KeyConditionExpression="open_hold_shard = :shard AND hold_expires_at < :now",
                ExpressionAttributeValues={":shard": ddb.s(f"open-holds-{shard}"), ":now": ddb.n(now_s)},
                Limit=limit,
            )
            found.extend(_hold(item) for item in response.get("Items", []))
        return sorted(found, key=lambda hold: hold.hold_expires_at)[:limit]

    def list_entries(self, account_id: str, *, limit: int, cursor: str | None) -> Page:
        """An account's statement, newest first (strongly consistent)."""
        params: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :entry)",
            "ExpressionAttributeValues": {":pk": ddb.s(f"ACCOUNT#{account_id}"), ":entry": ddb.s("ENTRY#")},
            "ScanIndexForward": False,
            "ConsistentRead": True,
        }
        start = None
        if cursor:
            seq = ddb.decode_position(cursor, "s")
            if not seq.isdigit() or len(seq) != 12:
                raise ddb.InvalidCursor()
            start = {"pk": ddb.s(f"ACCOUNT#{account_id}"), "sk": ddb.s(f"ENTRY#{seq}")}
        items, last = self._db.query_page(params, limit=limit, start=start)
        next_cursor = ddb.encode_position("s", last["sk"]["S"].removeprefix("ENTRY#")) if last else None
        return Page(items=[_entry(item) for item in items], next_cursor=next_cursor)

    # ---- writes ---------------------------------------------------------------------------------------

    def create_account(self, account: Account, event: DomainEvent) -> None:
        """The account, its number claim and its event, together; NumberTaken if the number is in use."""
        items = [
            self._db.put_new(_account_item(account)),
            self._db.put_new(
                {
                    "pk": ddb.s(f"ACCTNUM#{account.number_index}"),
                    "sk": ddb.s("ACCTNUM"),
                    "kind": ddb.s("number"),
                    "account_id": ddb.s(account.account_id),
                }
            ),
            self._db.put_new(ddb.outbox_item(event)),
        ]
        failed = self._transact(items)
        if failed:
            if 1 in failed:
                raise NumberTaken("the account number is already claimed")
            raise ConcurrentModification("the new account's id is already taken")

    def commit(self, movement: Movement) -> None:
        """Writes all of `movement` in one transaction; StaleRead if anything it was planned on moved."""
        items: list[dict[str, Any]] = []
        for change in movement.accounts:
            items.append(self._account_update(change))
            items.append(self._db.put_new(_entry_item(change.entry)))
        if movement.hold is not None:
            hold = movement.hold
            if hold.expected is None:
                items.append(self._db.put_new(_hold_item(hold.after)))
            else:
                items.append(self._status_put(_hold_item(hold.after), hold.expected.value))
        if movement.settlement is not None:
            posting = movement.settlement
            items.append(
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": {"pk": ddb.s(f"ACCOUNT#{posting.shard}"), "sk": ddb.s("ACCOUNT")},
                        # ADD, never read: no deposit waits on another to learn the shard's balance.
                        "UpdateExpression": (
                            "SET kind = :kind, #type = :type, currency = if_not_exists(currency, :currency) "
                            "ADD ledger :delta, available :delta, version :one"
                        ),
                        "ExpressionAttributeNames": {"#type": "type"},
                        "ExpressionAttributeValues": {
                            ":kind": ddb.s("settlement"),
                            ":type": ddb.s("SETTLEMENT"),
                            ":currency": ddb.s(posting.currency),
                            ":delta": ddb.n(-posting.amount),
                            ":one": ddb.n(1),
                        },
                    }
                }
            )
            items.append(
                self._db.put_new(
                    {
                        "pk": ddb.s(f"ACCOUNT#{posting.shard}"),
                        "sk": ddb.s(f"ENTRY#D{posting.deposit_id}"),
                        "kind": ddb.s("entry"),
                        "entry_kind": ddb.s(EntryKind.DEBIT.value),
                        "amount": ddb.n(posting.amount),
                        "deposit_id": ddb.s(posting.deposit_id),
                        "created_at": ddb.s(posting.created_at),
                    }
                )
            )
        if movement.deposit is not None:
            if movement.deposit_expected is None:
                items.append(self._db.put_new(_deposit_item(movement.deposit)))
            else:
                items.append(
                    self._status_put(_deposit_item(movement.deposit), movement.deposit_expected.value)
                )
        items.extend(self._db.put_new(ddb.outbox_item(event)) for event in movement.events)
        if self._transact(items):
            raise StaleRead("the ledger moved since it was read")

    # ---- plumbing -------------------------------------------------------------------------------------

    def _account_update(self, change: AccountChange) -> dict[str, Any]:
        # Deltas, conditioned on the version that was read and on the stored balances themselves: even a
        # wrong plan could not take an available or ledger balance below zero, nor skip a movement.
        return {
            "Update": {
                "TableName": self._table,
                "Key": {"pk": ddb.s(f"ACCOUNT#{change.after.account_id}"), "sk": ddb.s("ACCOUNT")},
                "UpdateExpression": "SET ledger = ledger + :dl, available = available + :da, version = :next",
                "ConditionExpression": (
                    "kind = :account AND version = :version AND available >= :need_a AND ledger >= :need_l"
                ),
                "ExpressionAttributeValues": {
                    ":account": ddb.s("account"),
                    ":dl": ddb.n(change.ledger_delta),
                    ":da": ddb.n(change.available_delta),
                    ":next": ddb.n(change.after.version),
                    ":version": ddb.n(change.before_version),
                    ":need_a": ddb.n(max(0, -change.available_delta)),
                    ":need_l": ddb.n(max(0, -change.ledger_delta)),
                },
            }
        }

    def _status_put(self, item: dict[str, Any], expected: str) -> dict[str, Any]:
        # Replaces a hold or deposit only from the status it was read in: a concurrent settle, release or
        # decision fails this item's condition and the movement is planned again.
        return self._db.put_if(
            item, "#status = :expected", names={"#status": "status"}, values={":expected": ddb.s(expected)}
        )

    def _get(self, pk: str, sk: str) -> Mapping[str, Any] | None:
        return self._db.get({"pk": ddb.s(pk), "sk": ddb.s(sk)})

    def _transact(self, items: list[dict[str, Any]]) -> set[int]:
        """Commits `items`; returns the positions whose conditions failed (empty: committed)."""
        return set(self._db.transact(items, on_commit=self._count_units, ReturnConsumedCapacity="TOTAL"))

    def _count_units(self, response: Mapping[str, Any]) -> None:
        self.last_write_units = sum(
            float(c.get("WriteCapacityUnits") or c.get("CapacityUnits") or 0)
            for c in response.get("ConsumedCapacity") or []
        )

"""The ledger's rules, pure: account numbers, balances in paise, holds, and what each movement writes.

Nothing here reads or writes anything. A use case reads the current state, asks a function here what to do
(`plan_reserve`, `plan_settle`, `plan_release`, `plan_deposit`), and hands the resulting `Movement` to the
store, which commits it in one transaction conditioned on the versions that were read. A step that already
happened comes back as `Done` with the same result as the first time, so every saga step is idempotent.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from vaultpay.accounts.errors import (
    AccountNotActive,
    AccountNotFound,
    CurrencyMismatch,
    DepositNotPending,
    HoldNotFound,
    HoldNotOpen,
    InsufficientFunds,
    InvalidStepInput,
    StepConflict,
)
from vaultpay.shared.errors import FieldError
from vaultpay.shared.events import DomainEvent

# The amount limits are re-exported: the deposit route's body model states them.
from vaultpay.shared.kernel import MAX_AMOUNT, MIN_AMOUNT, Money, derived_id, is_amount, is_id, ordered_id

SOURCE = "/vaultpay/accounts"
# The bank's side of every deposit is split over this many settlement items, so that no single DynamoDB item
# takes every deposit (one item sustains about 500 transactional writes a second). Reports sum the shards.
SETTLEMENT_SHARDS = 16
# A hold left behind by an execution that died outside its own compensation is released by a sweeper once
# this has passed (the longest human review must end well before it).
HOLD_LIFETIME_S = 7 * 24 * 3600
ACCOUNT_NUMBER_LENGTH = 12
MASK = "XXXXXXXX"

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ACCOUNT_ID = re.compile(r"acc_[0-9a-f]{32}")
_CURRENCY = re.compile(r"[A-Z]{3}")


class AccountType(StrEnum):
    SAVINGS = "SAVINGS"
    CURRENT = "CURRENT"


class AccountStatus(StrEnum):
    ACTIVE = "ACTIVE"
    FROZEN = "FROZEN"
    CLOSED = "CLOSED"


class EntryKind(StrEnum):
    HOLD = "HOLD"
    RELEASE = "RELEASE"
    DEBIT = "DEBIT"
    CREDIT = "CREDIT"


class HoldStatus(StrEnum):
    HELD = "HELD"
    RELEASED = "RELEASED"
    SETTLED = "SETTLED"


class DepositStatus(StrEnum):
    """A deposit at or under the approval threshold is BOOKED at once; above it, a second admin decides."""

    PENDING_APPROVAL = "PENDING_APPROVAL"
    BOOKED = "BOOKED"
    REJECTED = "REJECTED"


# ---- identifiers and account numbers -----------------------------------------------------------------------


def new_account_id() -> str:
    return ordered_id("acc")


def new_deposit_id(request_id: str | None = None) -> str:
    """A new deposit id; derived from `request_id` when given, so a repeated request names one deposit."""
    return ordered_id("dep") if request_id is None else derived_id("dep", request_id)


def is_account_id(value: str) -> bool:
    return is_id(value, "acc")


def is_deposit_id(value: str) -> bool:
    return is_id(value, "dep")


def check_digits(body: str) -> str:
    """ISO 7064 MOD 97-10 (the IBAN scheme): two digits that make `body + digits` ≡ 1 (mod 97).

    It catches every single wrong digit and every swap of two adjacent digits.
    """
    return f"{98 - (int(body) * 100) % 97:02d}"


def new_account_number() -> str:
    """Ten random digits (the first non-zero) and two check digits."""
    body = str(secrets.randbelow(9 * 10**9) + 10**9)
    return body + check_digits(body)


def account_number_problem(number: str) -> str | None:
    """Why `number` cannot be an account number, or None. Checked before any look-up."""
    if len(number) != ACCOUNT_NUMBER_LENGTH or not number.isascii() or not number.isdigit():
        return f"must be {ACCOUNT_NUMBER_LENGTH} digits"
    if int(number) % 97 != 1:
        return "is not a valid account number (check digits do not match)"
    return None


def mask_account_number(last4: str) -> str:
    return MASK + last4


def settlement_shard(key: str) -> str:
    """The settlement item that takes the bank's side of the movement named `key` (stable, uniform)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return f"settlement-{int.from_bytes(digest[:4], 'big') % SETTLEMENT_SHARDS:02d}"


OPEN_HOLD_SHARDS = 4


def open_hold_shard(transfer_id: str) -> str:
    """The OpenHolds index partition of a HELD hold: spread so no one partition takes every hold."""
    digest = hashlib.sha256(transfer_id.encode("utf-8")).digest()
    return f"open-holds-{int.from_bytes(digest[:4], 'big') % OPEN_HOLD_SHARDS}"


def amount_problem(amount: object) -> str | None:
    """Why `amount` is not a valid amount of paise: an int (never a bool or float) in 1..10^12."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        return "must be an integer number of paise"
    if not is_amount(amount):
        return f"must be between {MIN_AMOUNT} and {MAX_AMOUNT}"
    return None


# ---- state -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Balance:
    ledger: int
    available: int

    def to_json(self) -> dict[str, int]:
        return {"ledger": self.ledger, "available": self.available}


@dataclass(frozen=True, slots=True)
class Account:
    """A customer account as stored. `version` counts the movements; the n-th entry has seq n."""

    account_id: str
    owner_id: str
    type: AccountType
    currency: str
    status: AccountStatus
    number_index: str
    number_enc: str = field(repr=False)
    number_last4: str
    ledger: int
    available: int
    version: int
    created_at: str

    @property
    def masked_number(self) -> str:
        return mask_account_number(self.number_last4)


@dataclass(frozen=True, slots=True)
class Hold:
    """The record of a transfer's steps on its source account: `HOLD#<transfer_id>`."""

    transfer_id: str
    account_id: str
    amount: int
    currency: str
    status: HoldStatus
    held_at: str
    hold_expires_at: int
    destination_account_id: str | None = None
    released_at: str | None = None
    settled_at: str | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of an account's statement."""

    account_id: str
    seq: int
    entry_id: str
    kind: EntryKind
    amount: int
    balance_after: int
    available_after: int
    description: str
    created_at: str
    transfer_id: str | None = None
    deposit_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "entry_id": self.entry_id,
            "transfer_id": self.transfer_id,
            "kind": self.kind.value,
            "amount": self.amount,
            "balance_after": self.balance_after,
            "available_after": self.available_after,
            "description": self.description,
            "created_at": self.created_at,
        }
        if self.deposit_id is not None:
            body["deposit_id"] = self.deposit_id
        return body


@dataclass(frozen=True, slots=True)
class Deposit:
    """DEPOSIT#<id>. `actor` is the admin who asked for it; `decided_by` the second admin, when one decided.

    Items written before four-eyes approval carry no status: they were booked when written.
    """

    deposit_id: str
    account_id: str
    amount: int
    currency: str
    reference: str
    actor: str
    created_at: str
    settlement_shard: str
    ledger_after: int = 0
    available_after: int = 0
    status: DepositStatus = DepositStatus.BOOKED
    decided_by: str | None = None
    decided_at: str | None = None
    decision_reason: str | None = None

    def view(self) -> DepositView:
        booked = self.status is DepositStatus.BOOKED
        return DepositView(
            deposit_id=self.deposit_id,
            account_id=self.account_id,
            amount=self.amount,
            currency=self.currency,
            reference=self.reference,
            balance=Balance(self.ledger_after, self.available_after) if booked else None,
            created_at=self.created_at,
            status=self.status.value,
            requested_by=self.actor,
            decided_by=self.decided_by,
            decided_at=self.decided_at,
        )


# ---- views -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountView:
    """An account as its owner sees it; `account_number` only when it was decrypted for this view."""

    account_id: str
    account_number_masked: str
    type: str
    currency: str
    status: str
    balance: Balance
    created_at: str
    account_number: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, account: Account, *, number: str | None = None) -> AccountView:
        return cls(
            account_id=account.account_id,
            account_number_masked=account.masked_number,
            type=account.type.value,
            currency=account.currency,
            status=account.status.value,
            balance=Balance(account.ledger, account.available),
            created_at=account.created_at,
            account_number=number,
        )

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"account_id": self.account_id}
        if self.account_number is not None:
            body["account_number"] = self.account_number
        body |= {
            "account_number_masked": self.account_number_masked,
            "type": self.type,
            "currency": self.currency,
            "status": self.status,
            "balance": self.balance.to_json(),
            "created_at": self.created_at,
        }
        return body


@dataclass(frozen=True, slots=True)
class AccountPage:
    items: list[AccountView]
    next_cursor: str | None

    def to_json(self) -> dict[str, Any]:
        return {"items": [item.to_json() for item in self.items], "next_cursor": self.next_cursor}


@dataclass(frozen=True, slots=True)
class StatementPage:
    items: list[Entry]
    next_cursor: str | None

    def to_json(self) -> dict[str, Any]:
        return {"items": [item.to_json() for item in self.items], "next_cursor": self.next_cursor}


@dataclass(frozen=True, slots=True)
class DepositView:
    """A deposit as admins see it. `balance` (the account's after booking) only once it is BOOKED."""

    deposit_id: str
    account_id: str
    amount: int
    currency: str
    reference: str
    balance: Balance | None
    created_at: str
    status: str = DepositStatus.BOOKED.value
    requested_by: str | None = None
    decided_by: str | None = None
    decided_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "deposit_id": self.deposit_id,
            "status": self.status,
            "account_id": self.account_id,
            "amount": self.amount,
            "currency": self.currency,
            "reference": self.reference,
            "created_at": self.created_at,
        }
        if self.balance is not None:
            body["balance"] = self.balance.to_json()
        if self.requested_by is not None:
            body["requested_by"] = self.requested_by
        if self.decided_by is not None:
            body["decided_by"] = self.decided_by
            body["decided_at"] = self.decided_at
        return body


# ---- saga step input ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepRequest:
    """What the transfer state machine hands a ledger step."""

    transfer_id: str
    source_account_id: str
    amount: int
    currency: str
    correlation_id: str
    destination_account_id: str | None = None
    description: str = ""


_STEP_FIELDS = frozenset(
    {
        "transfer_id",
        "source_account_id",
        "destination_account_id",
        "amount",
        "currency",
        "correlation_id",
        "description",
    }
)


def parse_step(event: Mapping[str, Any], *, needs_destination: bool = False) -> StepRequest:
    """Validates a step's input; every problem is named. Extra keys (the saga's own state) are ignored."""
    if not isinstance(event, Mapping):
        raise InvalidStepInput("The step input must be a JSON object.")
    problems: list[FieldError] = []

    def text(name: str, pattern: re.Pattern[str] | None, *, required: bool = True, limit: int = 128) -> str:
        value = event.get(name)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or not value or len(value) > limit:
            problems.append(FieldError(name, "is required" if value is None else "is not valid"))
            return ""
        if pattern is not None and not pattern.fullmatch(value):
            problems.append(FieldError(name, "is not valid"))
        return value

    transfer_id = text("transfer_id", _ID)
    source = text("source_account_id", _ACCOUNT_ID)
    destination = text("destination_account_id", _ACCOUNT_ID, required=needs_destination)
    currency = text("currency", _CURRENCY)
    correlation_id = text("correlation_id", None)
    description = text("description", None, required=False, limit=140)
    amount = event.get("amount")
    problem = amount_problem(amount)
    if problem:
        problems.append(FieldError("amount", problem))
    if needs_destination and destination and destination == source:
        problems.append(FieldError("destination_account_id", "must differ from the source account"))
    if problems:
        raise InvalidStepInput("The step input is not valid.", errors=problems)
    return StepRequest(
        transfer_id=transfer_id,
        source_account_id=source,
        destination_account_id=destination or None,
        amount=amount if isinstance(amount, int) else 0,  # an int: amount_problem said so
        currency=currency,
        correlation_id=correlation_id,
        description=description,
    )


# ---- movements ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountChange:
    """An account moved from `before_version` to `after`, writing `entry` (whose seq is after.version)."""

    before_version: int
    after: Account
    entry: Entry
    ledger_delta: int
    available_delta: int


@dataclass(frozen=True, slots=True)
class HoldChange:
    """The hold record after the step; `expected` is the status it must still have (None: must not exist)."""

    expected: HoldStatus | None
    after: Hold


@dataclass(frozen=True, slots=True)
class SettlementPosting:
    """The bank's side of a deposit: a DEBIT on one settlement shard (applied with ADD, never read)."""

    shard: str
    amount: int
    deposit_id: str
    currency: str
    created_at: str


@dataclass(frozen=True, slots=True)
class Movement:
    """Everything one step writes, committed as one transaction or not at all."""

    accounts: tuple[AccountChange, ...]
    result: dict[str, Any]
    hold: HoldChange | None = None
    settlement: SettlementPosting | None = None
    deposit: Deposit | None = None
    # The status the stored deposit must still have (a decision on a pending one); None: it must not exist.
    deposit_expected: DepositStatus | None = None
    events: tuple[DomainEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class Done:
    """The step had already happened: nothing to write, and this is the result it gave the first time."""

    result: dict[str, Any]


def _moved(account: Account, *, ledger: int, available: int) -> Account:
    return replace(
        account,
        ledger=_shifted(account.ledger, ledger, account.currency),
        available=_shifted(account.available, available, account.currency),
        version=account.version + 1,
    )


def _shifted(balance: int, delta: int, currency: str) -> int:
    # Balances move as Money: a movement that would take one below zero or past the kernel's ceiling, or
    # that is not whole paise, raises instead of being written.
    start, step = Money(balance, currency), Money(abs(delta), currency)
    return (start + step if delta >= 0 else start - step).amount


def _change(
    account: Account,
    kind: EntryKind,
    amount: int,
    *,
    ledger: int,
    available: int,
    description: str,
    at: str,
    transfer_id: str | None = None,
    deposit_id: str | None = None,
) -> AccountChange:
    after = _moved(account, ledger=ledger, available=available)
    entry = Entry(
        account_id=account.account_id,
        seq=after.version,
        entry_id=f"ent_{account.account_id.removeprefix('acc_')}_{after.version}",
        kind=kind,
        amount=amount,
        balance_after=after.ledger,
        available_after=after.available,
        description=description,
        created_at=at,
        transfer_id=transfer_id,
        deposit_id=deposit_id,
    )
    return AccountChange(
        before_version=account.version,
        after=after,
        entry=entry,
        ledger_delta=ledger,
        available_delta=available,
    )


def _require_usable(account: Account, currency: str) -> None:
    if account.status is not AccountStatus.ACTIVE:
        raise AccountNotActive(f"Account {account.account_id} is {account.status.value.lower()}.")
    if account.currency != currency:
        raise CurrencyMismatch(f"Account {account.account_id} holds {account.currency}, not {currency}.")


def reserve_result(hold: Hold) -> dict[str, Any]:
    return {
        "transfer_id": hold.transfer_id,
        "account_id": hold.account_id,
        "amount": hold.amount,
        "currency": hold.currency,
        "status": hold.status.value,
        "held_at": hold.held_at,
    }


def settle_result(hold: Hold) -> dict[str, Any]:
    return {
        "transfer_id": hold.transfer_id,
        "status": hold.status.value,
        "source_account_id": hold.account_id,
        "destination_account_id": hold.destination_account_id,
        "amount": hold.amount,
        "currency": hold.currency,
        "settled_at": hold.settled_at,
    }


def release_result(hold: Hold) -> dict[str, Any]:
    return {
        "transfer_id": hold.transfer_id,
        "account_id": hold.account_id,
        "status": hold.status.value,
        "amount": hold.amount,
        "released_at": hold.released_at,
    }


def _same_step(hold: Hold, request: StepRequest) -> None:
    """A hold under this transfer id must match the call; a tombstone (amount 0) matches any amount."""
    same_amount = hold.amount == request.amount or (hold.status is HoldStatus.RELEASED and hold.amount == 0)
    if hold.account_id != request.source_account_id or not same_amount or hold.currency != request.currency:
        raise StepConflict(f"Transfer {request.transfer_id} was first called with other parameters.")


def _event(
    kind: str,
    subject: str,
    data: Mapping[str, Any],
    request: StepRequest | None,
    *,
    at: str,
    correlation_id: str | None = None,
    actor: str | None = None,
) -> DomainEvent:
    return DomainEvent(
        type=f"vaultpay.account.{kind}",
        source=SOURCE,
        subject=subject,
        data=dict(data),
        correlation_id=correlation_id or (request.correlation_id if request else ""),
        actor=actor or "system",
        time=at,
    )


def plan_reserve(
    account: Account | None, hold: Hold | None, request: StepRequest, *, at: str, now_s: int
) -> Movement | Done:
    """Hold `amount` on the source account, once per transfer."""
    if hold is not None:
        _same_step(hold, request)
        return Done(reserve_result(hold))
    if account is None:
        raise AccountNotFound("The source account does not exist.")
    _require_usable(account, request.currency)
    if not Money(account.available, account.currency).covers(Money(request.amount, request.currency)):
        raise InsufficientFunds(f"Account {account.account_id} has less available than the amount.")
    new_hold = Hold(
        transfer_id=request.transfer_id,
        account_id=account.account_id,
        amount=request.amount,
        currency=request.currency,
        status=HoldStatus.HELD,
        held_at=at,
        hold_expires_at=now_s + HOLD_LIFETIME_S,
    )
    change = _change(
        account,
        EntryKind.HOLD,
        request.amount,
        ledger=0,
        available=-request.amount,
        description=request.description or "Funds held for a transfer",
        at=at,
        transfer_id=request.transfer_id,
    )
    data = {
        "transfer_id": request.transfer_id,
        "account_id": account.account_id,
        "amount": request.amount,
        "currency": request.currency,
    }
    return Movement(
        accounts=(change,),
        hold=HoldChange(expected=None, after=new_hold),
        events=(_event("funds.held", account.account_id, data, request, at=at),),
        result=reserve_result(new_hold),
    )


def plan_release(
    account: Account | None, hold: Hold | None, request: StepRequest, *, at: str, now_s: int
) -> Movement | Done:
    """Give a held amount back to the available balance; a release before any reserve leaves a tombstone."""
    if hold is None:
        # Step Functions may deliver a compensation before (or instead of) a reserve that timed out: the
        # tombstone makes that late reserve find the transfer released instead of holding money for ever.
        tombstone = Hold(
            transfer_id=request.transfer_id,
            account_id=request.source_account_id,
            amount=0,
            currency=request.currency,
            status=HoldStatus.RELEASED,
            held_at=at,
            hold_expires_at=now_s,
            released_at=at,
        )
        return Movement(
            accounts=(), hold=HoldChange(expected=None, after=tombstone), result=release_result(tombstone)
        )
    _same_step(hold, request)
    if hold.status is HoldStatus.RELEASED:
        return Done(release_result(hold))
    if hold.status is HoldStatus.SETTLED:
        raise HoldNotOpen(f"Transfer {request.transfer_id} has settled; its hold cannot be released.")
    if account is None:
        raise HoldNotFound(f"The account of transfer {request.transfer_id}'s hold is gone.")
    released = replace(hold, status=HoldStatus.RELEASED, released_at=at)
    change = _change(
        account,
        EntryKind.RELEASE,
        hold.amount,
        ledger=0,
        available=hold.amount,
        description="Held funds released",
        at=at,
        transfer_id=request.transfer_id,
    )
    data = {
        "transfer_id": request.transfer_id,
        "account_id": account.account_id,
        "amount": hold.amount,
        "currency": hold.currency,
    }
    return Movement(
        accounts=(change,),
        hold=HoldChange(expected=HoldStatus.HELD, after=released),
        events=(_event("funds.released", account.account_id, data, request, at=at),),
        result=release_result(released),
    )


def plan_settle(
    source: Account, destination: Account | None, hold: Hold | None, request: StepRequest, *, at: str
) -> Movement | Done:
    """Turn the hold into a DEBIT on the source and a CREDIT on the destination, in one transaction."""
    if hold is None:
        raise HoldNotFound(f"Transfer {request.transfer_id} holds no funds to settle.")
    _same_step(hold, request)
    if hold.status is HoldStatus.SETTLED:
        if hold.destination_account_id != request.destination_account_id:
            raise StepConflict(f"Transfer {request.transfer_id} settled to another account.")
        return Done(settle_result(hold))
    if hold.status is HoldStatus.RELEASED:
        raise HoldNotOpen(f"Transfer {request.transfer_id} was released; it cannot settle.")
    if destination is None:
        raise AccountNotFound("The destination account does not exist.")
    _require_usable(destination, request.currency)
    amount = hold.amount
    settled = replace(
        hold, status=HoldStatus.SETTLED, settled_at=at, destination_account_id=destination.account_id
    )
    description = request.description
    debit = _change(
        source,
        EntryKind.DEBIT,
        amount,
        ledger=-amount,
        available=0,  # the hold already took it out of the available balance
        description=description or f"Transfer to {destination.masked_number}",
        at=at,
        transfer_id=request.transfer_id,
    )
    credit = _change(
        destination,
        EntryKind.CREDIT,
        amount,
        ledger=amount,
        available=amount,
        description=description or f"Transfer from {source.masked_number}",
        at=at,
        transfer_id=request.transfer_id,
    )
    data = {
        "transfer_id": request.transfer_id,
        "source_account_id": source.account_id,
        "destination_account_id": destination.account_id,
        "amount": amount,
        "currency": hold.currency,
    }
    return Movement(
        accounts=(debit, credit),
        hold=HoldChange(expected=HoldStatus.HELD, after=settled),
        events=(_event("transfer.settled", request.transfer_id, data, request, at=at),),
        result=settle_result(settled),
    )


def plan_deposit(
    account: Account,
    existing: Deposit | None,
    *,
    deposit_id: str,
    amount: int,
    currency: str,
    reference: str,
    actor: str,
    correlation_id: str,
    at: str,
    needs_approval: bool = False,
) -> Movement | Done:
    """Money in from the bank's settlement account: CREDIT the customer, DEBIT one settlement shard.

    With `needs_approval` (an amount above the approval threshold) nothing moves yet: the deposit is recorded
    PENDING_APPROVAL and waits for a second admin (`plan_deposit_decision`).
    """
    if existing is not None:
        if (existing.account_id, existing.amount, existing.currency) != (
            account.account_id,
            amount,
            currency,
        ):
            raise StepConflict(f"Deposit {deposit_id} was booked with other parameters.")
        return Done(existing.view().to_json())
    _require_usable(account, currency)
    deposit = Deposit(
        deposit_id=deposit_id,
        account_id=account.account_id,
        amount=amount,
        currency=currency,
        reference=reference,
        actor=actor,
        created_at=at,
        settlement_shard=settlement_shard(deposit_id),
        status=DepositStatus.PENDING_APPROVAL if needs_approval else DepositStatus.BOOKED,
    )
    if needs_approval:
        data = {
            "deposit_id": deposit_id,
            "account_id": account.account_id,
            "amount": amount,
            "currency": currency,
            "status": deposit.status.value,
        }
        return Movement(
            accounts=(),
            deposit=deposit,
            events=(
                _event(
                    "deposit_approval_requested",
                    account.account_id,
                    data,
                    None,
                    at=at,
                    correlation_id=correlation_id,
                    actor=actor,
                ),
            ),
            result=deposit.view().to_json(),
        )
    return _book(account, deposit, actor=actor, correlation_id=correlation_id, at=at)


def plan_deposit_decision(
    account: Account | None,
    deposit: Deposit,
    *,
    approve: bool,
    decider: str,
    reason: str | None,
    correlation_id: str,
    at: str,
) -> Movement | Done:
    """A second admin's decision on a PENDING_APPROVAL deposit: approving books it as `plan_deposit` would
    have; rejecting closes it with no money moved. The same decision repeated by the same admin is `Done`.

    Who may decide is the caller's check (`four_eyes_problem`), made before this is planned.
    """
    wanted = DepositStatus.BOOKED if approve else DepositStatus.REJECTED
    if deposit.status is not DepositStatus.PENDING_APPROVAL:
        if deposit.status is wanted and deposit.decided_by == decider:
            return Done(deposit.view().to_json())
        raise DepositNotPending(
            f"Deposit {deposit.deposit_id} is {deposit.status.value}, not pending approval."
        )
    decided = replace(deposit, status=wanted, decided_by=decider, decided_at=at, decision_reason=reason)
    if approve:
        if account is None:
            raise AccountNotFound("The deposit's account does not exist.")
        return _book(
            account,
            decided,
            actor=decider,
            correlation_id=correlation_id,
            at=at,
            expected=DepositStatus.PENDING_APPROVAL,
        )
    data = {
        "deposit_id": deposit.deposit_id,
        "account_id": deposit.account_id,
        "amount": deposit.amount,
        "currency": deposit.currency,
        "status": wanted.value,
        "requested_by": deposit.actor,
    }
    return Movement(
        accounts=(),
        deposit=decided,
        deposit_expected=DepositStatus.PENDING_APPROVAL,
        events=(
            _event(
                "deposit_rejected",
                deposit.account_id,
                data,
                None,
                at=at,
                correlation_id=correlation_id,
                actor=decider,
            ),
        ),
        result=decided.view().to_json(),
    )


def four_eyes_problem(
    *, actor: str, account_owner: str | None, requested_by: str | None = None
) -> str | None:
    """Why `actor` may not make (or decide) this money operation on their own; None when they may.

    A privileged operation needs a second person: no admin approves what they asked for, and no admin moves
    money into (or decides about) an account they own.
    """
    if requested_by is not None and actor == requested_by:
        return "requested_by_same_admin"
    if account_owner is not None and actor == account_owner:
        return "own_account"
    return None


def _book(
    account: Account,
    deposit: Deposit,
    *,
    actor: str,
    correlation_id: str,
    at: str,
    expected: DepositStatus | None = None,
) -> Movement:
    """The booking of `deposit`: the customer's CREDIT, the settlement shard's DEBIT, the deposit record."""
    _require_usable(account, deposit.currency)
    change = _change(
        account,
        EntryKind.CREDIT,
        deposit.amount,
        ledger=deposit.amount,
        available=deposit.amount,
        description=f"Deposit {deposit.reference}",
        at=at,
        deposit_id=deposit.deposit_id,
    )
    booked = replace(
        deposit,
        status=DepositStatus.BOOKED,
        ledger_after=change.after.ledger,
        available_after=change.after.available,
    )
    data = {
        "deposit_id": deposit.deposit_id,
        "account_id": account.account_id,
        "amount": deposit.amount,
        "currency": deposit.currency,
        "ledger_after": change.after.ledger,
    }
    events = []
    if expected is not None:
        approved = {**data, "requested_by": deposit.actor}
        events.append(
            _event(
                "deposit_approved",
                account.account_id,
                approved,
                None,
                at=at,
                correlation_id=correlation_id,
                actor=actor,
            )
        )
    events.append(
        _event("deposited", account.account_id, data, None, at=at, correlation_id=correlation_id, actor=actor)
    )
    return Movement(
        accounts=(change,),
        settlement=SettlementPosting(
            shard=deposit.settlement_shard,
            amount=deposit.amount,
            deposit_id=deposit.deposit_id,
            currency=deposit.currency,
            created_at=at,
        ),
        deposit=booked,
        deposit_expected=expected,
        events=tuple(events),
        result=booked.view().to_json(),
    )


def account_created_event(account: Account, *, correlation_id: str, at: str) -> DomainEvent:
    return DomainEvent(
        type="vaultpay.account.created",
        source=SOURCE,
        subject=account.account_id,
        data={
            "account_id": account.account_id,
            "owner_id": account.owner_id,
            "type": account.type.value,
            "currency": account.currency,
            "account_number_masked": account.masked_number,
        },
        correlation_id=correlation_id,
        actor=account.owner_id,
        time=at,
    )

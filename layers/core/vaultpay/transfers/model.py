"""The transfer's rules, pure: ids, statuses and their transitions, the API view, and the transfer events.

Nothing here reads or writes anything. `new_transfer` makes the PENDING record and its `initiated` event;
`plan_status` decides what one saga op does to a transfer it was handed (docs/transfers-contract.md
"TransferStatusFunction"): a `Change` for the store to commit conditioned on the status and version it was
planned on, or `Unchanged` when the op had already happened, so every op is idempotent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from vaultpay.shared.errors import FieldError
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.kernel import derived_id, is_id
from vaultpay.transfers.errors import InvalidStepInput, TransferFinal

SOURCE = "/vaultpay/transfers"
ID_PREFIX = "tr_"
MAX_DESCRIPTION = 140
MAX_NOTE = 500


class TransferStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    IN_REVIEW = "IN_REVIEW"
    COMPLETED = "COMPLETED"
    DECLINED = "DECLINED"
    FAILED = "FAILED"


TERMINAL = frozenset({TransferStatus.COMPLETED, TransferStatus.DECLINED, TransferStatus.FAILED})


class Op(StrEnum):
    """What the state machine asks TransferStatusFunction to record (`view` only reads)."""

    PROCESSING = "processing"
    APPROVED = "approved"
    IN_REVIEW = "in_review"
    COMPLETE = "complete"
    DECLINE = "decline"
    FAIL = "fail"
    VIEW = "view"


FAILURE_REASONS = frozenset(
    {
        "insufficient_funds",
        "fraud_declined",
        "review_declined",
        "review_timeout",
        "account_not_active",
        "currency_mismatch",
        "step_failed",
    }
)
# A step's Lambda errorType (in the Catch's `$.failure.Error`) that names a reason of its own.
_REASON_OF_ERROR = {
    "InsufficientFunds": "insufficient_funds",
    "AccountNotActive": "account_not_active",
    "CurrencyMismatch": "currency_mismatch",
}
FRAUD_DECISIONS = frozenset({"APPROVE", "REVIEW", "DECLINE"})


@dataclass(frozen=True, slots=True)
class _Rule:
    allowed_from: frozenset[TransferStatus]
    to: TransferStatus | None  # None: the status stays as it is (approved)
    step: str


# docs/transfers-contract.md "TransferStatusFunction": from -> to, and the step each op records.
RULES: dict[Op, _Rule] = {
    Op.PROCESSING: _Rule(frozenset({TransferStatus.PENDING}), TransferStatus.PROCESSING, "processing"),
    Op.APPROVED: _Rule(frozenset({TransferStatus.PROCESSING, TransferStatus.IN_REVIEW}), None, "approved"),
    Op.IN_REVIEW: _Rule(frozenset({TransferStatus.PROCESSING}), TransferStatus.IN_REVIEW, "in_review"),
    Op.COMPLETE: _Rule(
        frozenset({TransferStatus.PROCESSING, TransferStatus.IN_REVIEW}),
        TransferStatus.COMPLETED,
        "completed",
    ),
    Op.DECLINE: _Rule(
        frozenset({TransferStatus.PROCESSING, TransferStatus.IN_REVIEW}), TransferStatus.DECLINED, "declined"
    ),
    Op.FAIL: _Rule(
        frozenset({TransferStatus.PENDING, TransferStatus.PROCESSING, TransferStatus.IN_REVIEW}),
        TransferStatus.FAILED,
        "failed",
    ),
}


# ---- identifiers -------------------------------------------------------------------------------------------


def transfer_id_for(request_scope: str) -> str:
    """The transfer a POST names: `tr_` + the first 32 hex of sha256 of its idempotency scope.

    A retry that got past the idempotency record (expired, lost) names the same transfer, and the execution
    named after it cannot run twice.
    """
    return derived_id("tr", request_scope)


def is_transfer_id(value: object) -> bool:
    return is_id(value, "tr")


def is_account_id(value: object) -> bool:
    return is_id(value, "acc")


def description_problem(description: str | None) -> str | None:
    """Why `description` cannot describe a transfer, or None (absent is fine)."""
    if description is None:
        return None
    if len(description) > MAX_DESCRIPTION:
        return f"must be at most {MAX_DESCRIPTION} characters"
    if not description.isprintable():
        return "must be printable text"
    return None


# ---- the entity --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One thing that happened to the transfer: its name, the status it left, and when."""

    name: str
    status: TransferStatus
    at: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status.value, "at": self.at}


@dataclass(frozen=True, slots=True)
class Transfer:
    """A transfer as stored. `version` counts its changes; every write is conditioned on the one read."""

    transfer_id: str
    user_id: str
    source_account_id: str
    destination_account_id: str
    destination_account_number_masked: str
    amount: int
    currency: str
    status: TransferStatus
    correlation_id: str
    created_at: str
    updated_at: str
    description: str | None = None
    version: int = 1
    steps: tuple[Step, ...] = ()
    fraud: Mapping[str, Any] | None = None
    review: Mapping[str, Any] | None = None
    failure_reason: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def has_step(self, name: str) -> bool:
        return any(step.name == name for step in self.steps)

    def view(self, *, internal: bool = False) -> dict[str, Any]:
        """docs/api.md's Transfer, exactly: the destination only masked, the fraud result without its rules'
        weights. A customer sees the fraud decision and the rules that fired, never the score (which would
        tell a fraudster how far below the thresholds to stay); `internal` (admins, the saga) adds it."""
        fraud = None
        if self.fraud is not None:
            fraud = {
                "decision": self.fraud.get("decision"),
                "reasons": list(self.fraud.get("reasons") or []),
            }
            if internal:
                fraud["score"] = self.fraud.get("score")
        return {
            "transfer_id": self.transfer_id,
            "status": self.status.value,
            "source_account_id": self.source_account_id,
            "destination_account_number_masked": self.destination_account_number_masked,
            "amount": self.amount,
            "currency": self.currency,
            "description": self.description,
            "fraud": fraud,
            "failure_reason": self.failure_reason,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "steps": [step.to_json() for step in self.steps],
        }

    def saga_input(self, *, device_id: str) -> dict[str, Any]:
        """The StartExecution input (docs/transfers-contract.md "The saga input").

        The device id is the request's (from the authorizer): the fraud engine scores it, and it is kept in
        no transfer record. `description` is null when the client sent none (the ledger steps take null, not
        an empty string).
        """
        return {
            "transfer_id": self.transfer_id,
            "correlation_id": self.correlation_id,
            "user_id": self.user_id,
            "device_id": device_id,
            "source_account_id": self.source_account_id,
            "destination_account_id": self.destination_account_id,
            "amount": self.amount,
            "currency": self.currency,
            "description": self.description,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class Parties:
    """Both ends of a transfer as accounts resolved them: the destination's number only masked."""

    source_account_id: str
    destination_account_id: str
    destination_account_number_masked: str
    currency: str


def new_transfer(
    *,
    transfer_id: str,
    user_id: str,
    parties: Parties,
    amount: int,
    description: str | None,
    correlation_id: str,
    at: str,
) -> tuple[Transfer, DomainEvent]:
    """A PENDING transfer and its `vaultpay.transaction.initiated` event, to be written together."""
    transfer = Transfer(
        transfer_id=transfer_id,
        user_id=user_id,
        source_account_id=parties.source_account_id,
        destination_account_id=parties.destination_account_id,
        destination_account_number_masked=parties.destination_account_number_masked,
        amount=amount,
        currency=parties.currency,
        description=description or None,
        status=TransferStatus.PENDING,
        correlation_id=correlation_id,
        created_at=at,
        updated_at=at,
        version=1,
        steps=(Step("initiated", TransferStatus.PENDING, at),),
    )
    data = {
        "transfer_id": transfer_id,
        "user_id": user_id,
        "source_account_id": transfer.source_account_id,
        "destination_account_id": transfer.destination_account_id,
        "amount": amount,
        "currency": transfer.currency,
    }
    return transfer, _event(transfer, "initiated", data, at=at, actor=user_id)


def _event(
    transfer: Transfer, kind: str, data: Mapping[str, Any], *, at: str, actor: str = "system"
) -> DomainEvent:
    return DomainEvent(
        type=f"vaultpay.transaction.{kind}",
        source=SOURCE,
        subject=transfer.transfer_id,
        data=dict(data),
        correlation_id=transfer.correlation_id,
        actor=actor,
        time=at,
    )


# ---- saga ops ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusCommand:
    """One TransferStatusFunction call, parsed: the op and what it records from the saga state."""

    op: Op
    transfer_id: str
    source_account_id: str | None = None
    amount: int | None = None
    fraud: Mapping[str, Any] | None = None
    review: Mapping[str, Any] | None = None
    failure_reason: str | None = None
    failure_error: str | None = None
    released_amount: int | None = None
    held_amount: int | None = None


def parse_status_event(event: object) -> StatusCommand:
    """Validates a TransferStatusFunction input: `{"op", "state": <saga state>}` or the state with `op` in it.

    Extra keys (the saga's own) are ignored; what the op records is taken only when it has the right shape.
    """
    if not isinstance(event, Mapping):
        raise InvalidStepInput("The step input must be a JSON object.")
    nested = event.get("state")
    state: Mapping[str, Any] = nested if isinstance(nested, Mapping) else event
    problems: list[FieldError] = []
    try:
        op = Op(str(event.get("op")))
    except ValueError:
        op = Op.VIEW
        problems.append(FieldError("op", "must be one of " + ", ".join(o.value for o in Op)))
    transfer_id = state.get("transfer_id", event.get("transfer_id"))
    if not is_transfer_id(transfer_id):
        problems.append(FieldError("transfer_id", "is required" if transfer_id is None else "is not valid"))
    amount = state.get("amount")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
        problems.append(FieldError("amount", "must be an integer number of paise"))
    source = state.get("source_account_id")
    if source is not None and not is_account_id(source):
        problems.append(FieldError("source_account_id", "is not valid"))
    if problems:
        raise InvalidStepInput("The step input is not valid.", errors=problems)
    given_failure = state.get("failure")
    failure: Mapping[str, Any] = given_failure if isinstance(given_failure, Mapping) else {}
    reason = state.get("failure_reason") or failure.get("reason")
    error = failure.get("Error") or failure.get("error")
    return StatusCommand(
        op=op,
        transfer_id=str(transfer_id),
        source_account_id=source if isinstance(source, str) else None,
        amount=amount if isinstance(amount, int) else None,
        fraud=_fraud(state.get("fraud")),
        review=_review(state.get("review")),
        failure_reason=reason if isinstance(reason, str) else None,
        failure_error=error if isinstance(error, str) else None,
        released_amount=_amount_of(state.get("release")),
        held_amount=_amount_of(state.get("hold")),
    )


def _fraud(value: object) -> Mapping[str, Any] | None:
    """The fraud result's public part, when it is one: decision, score, the rules that fired, when."""
    if not isinstance(value, Mapping) or value.get("decision") not in FRAUD_DECISIONS:
        return None
    score = value.get("score")
    reasons = value.get("reasons")
    kept: dict[str, Any] = {
        "decision": value["decision"],
        "score": score if isinstance(score, int | float) and not isinstance(score, bool) else None,
        "reasons": [r for r in reasons if isinstance(r, str)] if isinstance(reasons, list) else [],
    }
    if isinstance(value.get("decided_at"), str):
        kept["decided_at"] = value["decided_at"]
    return kept


def _review(value: object) -> Mapping[str, Any] | None:
    if not isinstance(value, Mapping) or value.get("decision") not in {"APPROVE", "DECLINE"}:
        return None
    kept: dict[str, Any] = {"decision": value["decision"]}
    for name in ("reviewer", "decided_at"):
        if isinstance(value.get(name), str):
            kept[name] = value[name]
    if isinstance(value.get("note"), str):
        kept["note"] = value["note"][:MAX_NOTE]
    return kept


def _amount_of(value: object) -> int | None:
    if not isinstance(value, Mapping):
        return None
    amount = value.get("amount")
    return amount if isinstance(amount, int) and not isinstance(amount, bool) else None


@dataclass(frozen=True, slots=True)
class Change:
    """The transfer after the op, written only if it still has the status and version it was planned on."""

    after: Transfer
    expected_status: TransferStatus
    expected_version: int
    events: tuple[DomainEvent, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Unchanged:
    """The op had already happened: nothing to write, and this is the transfer as it stands."""

    transfer: Transfer


def reached(transfer: Transfer, op: Op) -> bool:
    """Whether what `op` does has already happened to `transfer` (so a repeat changes nothing)."""
    status = transfer.status
    if op is Op.PROCESSING:
        return status in {TransferStatus.PROCESSING, TransferStatus.IN_REVIEW}
    if op is Op.APPROVED:
        return transfer.has_step("approved") and not transfer.terminal
    if op is Op.VIEW:
        return True
    target = RULES[op].to
    return status is target


def plan_status(transfer: Transfer, command: StatusCommand, *, at: str) -> Change | Unchanged:
    """What `command` does to `transfer`; TransferFinal on a terminal one, InvalidStepInput out of order."""
    if command.source_account_id is not None and command.source_account_id != transfer.source_account_id:
        raise InvalidStepInput(f"Transfer {transfer.transfer_id} has another source account.")
    if command.amount is not None and command.amount != transfer.amount:
        raise InvalidStepInput(f"Transfer {transfer.transfer_id} has another amount.")
    if reached(transfer, command.op):
        return Unchanged(transfer)
    if transfer.terminal:
        raise TransferFinal(
            f"Transfer {transfer.transfer_id} is {transfer.status.value}; it never changes again."
        )
    rule = RULES[command.op]
    if transfer.status not in rule.allowed_from:
        raise InvalidStepInput(
            f"Op {command.op.value} does not apply to transfer {transfer.transfer_id} "
            f"in status {transfer.status.value}."
        )
    status = rule.to or transfer.status
    after = replace(
        transfer,
        status=status,
        version=transfer.version + 1,
        updated_at=at,
        steps=(*transfer.steps, Step(rule.step, status, at)),
    )
    events: tuple[DomainEvent, ...] = ()
    if command.op is Op.PROCESSING:
        events = (_event(after, "debit.requested", _money(after, "source_account_id"), at=at),)
    elif command.op is Op.APPROVED:
        after = replace(after, fraud=command.fraud or after.fraud, review=command.review or after.review)
        events = (_event(after, "credit.requested", _money(after, "destination_account_id"), at=at),)
    elif command.op is Op.IN_REVIEW:
        after = replace(after, fraud=command.fraud or after.fraud)
    elif command.op is Op.COMPLETE:
        data = {
            "transfer_id": after.transfer_id,
            "user_id": after.user_id,
            "source_account_id": after.source_account_id,
            "destination_account_id": after.destination_account_id,
            "amount": after.amount,
            "currency": after.currency,
        }
        events = (_event(after, "completed", data, at=at),)
    elif command.op is Op.DECLINE:
        after = replace(
            after,
            fraud=command.fraud or after.fraud,
            review=command.review or after.review,
            failure_reason=failure_reason(command, after),
        )
        data = {
            "transfer_id": after.transfer_id,
            "user_id": after.user_id,
            "failure_reason": after.failure_reason,
            "amount": after.amount,
            "currency": after.currency,
        }
        events = (_event(after, "declined", data, at=at),)
    elif command.op is Op.FAIL:
        after = replace(after, failure_reason=failure_reason(command, after))
        released = command.released_amount if command.released_amount is not None else command.held_amount
        if released:
            compensated = {
                "transfer_id": after.transfer_id,
                "source_account_id": after.source_account_id,
                "amount": released,
            }
            events += (_event(after, "compensated", compensated, at=at),)
        failed = {
            "transfer_id": after.transfer_id,
            "user_id": after.user_id,
            "failure_reason": after.failure_reason,
        }
        events += (_event(after, "failed", failed, at=at),)
    return Change(
        after=after, expected_status=transfer.status, expected_version=transfer.version, events=events
    )


def _money(transfer: Transfer, account_key: str) -> dict[str, Any]:
    return {
        "transfer_id": transfer.transfer_id,
        account_key: getattr(transfer, account_key),
        "amount": transfer.amount,
        "currency": transfer.currency,
    }


def failure_reason(command: StatusCommand, transfer: Transfer) -> str:
    """Why a transfer ends DECLINED or FAILED: the saga's reason, else the failed step's error."""
    if command.failure_reason in FAILURE_REASONS:
        return str(command.failure_reason)
    mapped = _REASON_OF_ERROR.get(command.failure_error or "")
    if mapped is not None:
        return mapped
    fraud = command.fraud or transfer.fraud
    if command.op is Op.DECLINE and fraud is not None and fraud.get("decision") == "DECLINE":
        return "fraud_declined"
    return "step_failed"


# ---- storage helpers (pure) --------------------------------------------------------------------------------


def steps_json(steps: tuple[Step, ...]) -> str:
    return json.dumps([step.to_json() for step in steps], separators=(",", ":"))


def steps_from_json(text: str) -> tuple[Step, ...]:
    return tuple(Step(s["name"], TransferStatus(s["status"]), s["at"]) for s in json.loads(text))


@dataclass(frozen=True, slots=True)
class TransferPage:
    items: list[Transfer]
    next_cursor: str | None

    def to_json(self) -> dict[str, Any]:
        return {"items": [item.view() for item in self.items], "next_cursor": self.next_cursor}

"""What the fraud domain keeps and publishes: decisions, profiles, reviews, the saga's input and the events.

Pure (standard library and the shared error/event types only): the service builds these, the stores keep
them, and the handlers only ever see their JSON views. A review's task token is carried here because the
review route must hand it back to Step Functions, but it is kept out of `repr` and out of every view.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from vaultpay.fraud.errors import InvalidStepInput
from vaultpay.fraud.model import AmountHistory, FraudDecision, KnownDevice
from vaultpay.shared.errors import FieldError
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.kernel import MAX_AMOUNT, epoch_seconds, is_amount

EVENT_SOURCE = "/vaultpay/fraud"
CHECK_REQUESTED = "vaultpay.fraud.check.requested"
FRAUD_RESULT = "vaultpay.fraud.result"
REVIEW_DECIDED = "vaultpay.fraud.review.decided"
SYSTEM_ACTOR = "system"

TRANSFER_ID = re.compile(r"tr_[0-9a-f]{32}")
# Ids that come from other domains (users, accounts, devices): opaque, but short and printable, since they
# end up in keys and (except the device id) in log lines.
_ID = re.compile(r"[\x21-\x7e]{1,128}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_ACCOUNT_ID = re.compile(r"acc_[0-9a-f]{32}")
MAX_NOTE_LENGTH = 500


class ReviewStatus(StrEnum):
    WAITING = "WAITING"  # the saga waits; the task token is stored
    DECIDED = "DECIDED"  # an admin decided; the saga was (or is being) resumed with the decision
    CLOSED = "CLOSED"  # the saga stopped waiting (timed out or ended) before a decision reached it


# ---- the saga's input --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SagaTransfer:
    """The part of the saga state (docs/transfers-contract.md) the fraud check reads."""

    transfer_id: str
    correlation_id: str
    user_id: str
    device_id: str
    source_account_id: str
    destination_account_id: str
    amount: int
    currency: str


def parse_saga_transfer(event: object) -> SagaTransfer:
    """The saga state as a SagaTransfer; InvalidStepInput naming every bad field (never its value)."""
    if not isinstance(event, Mapping):
        raise InvalidStepInput("The step input is not a JSON object.")
    errors: list[FieldError] = []
    if not isinstance(event.get("transfer_id"), str) or not TRANSFER_ID.fullmatch(event["transfer_id"]):
        errors.append(FieldError("transfer_id", "must be tr_ followed by 32 lower-case hex digits"))
    for name in ("correlation_id", "user_id", "device_id", "source_account_id", "destination_account_id"):
        value = event.get(name)
        if not isinstance(value, str) or not _ID.fullmatch(value):
            errors.append(FieldError(name, "must be 1..128 printable ASCII characters"))
    amount = event.get("amount")
    if not is_amount(amount):
        errors.append(FieldError("amount", f"must be an integer in 1..{MAX_AMOUNT}"))
    currency = event.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        errors.append(FieldError("currency", "must be an ISO 4217 code"))
    if errors:
        names = ", ".join(error.field for error in errors)
        raise InvalidStepInput(f"The step input is not valid: {names}.", errors=tuple(errors))
    return SagaTransfer(
        transfer_id=event["transfer_id"],
        correlation_id=event["correlation_id"],
        user_id=event["user_id"],
        device_id=event["device_id"],
        source_account_id=event["source_account_id"],
        destination_account_id=event["destination_account_id"],
        amount=amount,  # type: ignore[arg-type]  # checked above
        currency=currency,  # type: ignore[arg-type]
    )


# ---- decisions ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """DECISION#<transfer_id>: what was decided on a transfer, when, and every rule's contribution."""

    transfer_id: str
    user_id: str
    amount: int
    currency: str
    correlation_id: str
    verdict: FraudDecision
    decided_at: str  # RFC 3339; also the alert's `created_at`

    def output(self) -> dict[str, Any]:
        """The saga's `$.fraud`: {decision, score, reasons, rules: [{rule, score, reason}], decided_at}."""
        return {
            "decision": self.verdict.decision.value,
            "score": self.verdict.score,
            "reasons": list(self.verdict.reasons),
            "rules": self.rules(),
            "decided_at": self.decided_at,
        }

    def rules(self) -> list[dict[str, Any]]:
        return [
            {"rule": result.rule, "score": result.score, "reason": result.reason}
            for result in self.verdict.contributions
        ]

    def same_transfer(self, transfer: SagaTransfer) -> bool:
        """Whether `transfer` is the one this decision was made on (a repeat, not a reused id)."""
        return (self.user_id, self.amount, self.currency) == (
            transfer.user_id,
            transfer.amount,
            transfer.currency,
        )

    def alert(self, review: Review | None) -> dict[str, Any]:
        """The admin alerts route's item."""
        return {
            "transfer_id": self.transfer_id,
            "user_id": self.user_id,
            "decision": self.verdict.decision.value,
            "score": self.verdict.score,
            "reasons": list(self.verdict.reasons),
            "rules": self.rules(),
            "amount": self.amount,
            "currency": self.currency,
            "review": review.view() if review is not None else None,
            "created_at": self.decided_at,
        }

    def events(self) -> tuple[DomainEvent, DomainEvent]:
        """`fraud.check.requested` and `fraud.result`, written in the decision's own transaction."""
        common = {"source": EVENT_SOURCE, "subject": self.transfer_id, "actor": SYSTEM_ACTOR}
        requested = DomainEvent(
            type=CHECK_REQUESTED,
            correlation_id=self.correlation_id,
            data={
                "transfer_id": self.transfer_id,
                "user_id": self.user_id,
                "amount": self.amount,
                "currency": self.currency,
            },
            time=self.decided_at,
            **common,
        )
        result = DomainEvent(
            type=FRAUD_RESULT,
            correlation_id=self.correlation_id,
            data={
                "transfer_id": self.transfer_id,
                "user_id": self.user_id,
                "decision": self.verdict.decision.value,
                "score": self.verdict.score,
                "reasons": list(self.verdict.reasons),
            },
            time=self.decided_at,
            **common,
        )
        return requested, result


# ---- the user's profile ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Profile:
    """What the fraud profile knows of a user for one transfer: the amount history, the devices the user has
    logged in from, and whether the transfer's destination was paid before."""

    history: AmountHistory
    devices: frozenset[KnownDevice]
    payee_known: bool
    # The newest device mismatch or refresh-token reuse on this user (epoch seconds), if any.
    security_signal_at: int | None = None

    def first_seen_at(self, device_id: str) -> int | None:
        for device in self.devices:
            if device.device_id == device_id:
                return device.first_seen_at
        return None


EMPTY_PROFILE = Profile(history=AmountHistory(), devices=frozenset(), payee_known=False)


# ---- reviews -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Review:
    """REVIEW#<transfer_id>: a transfer held for a human, and what the human decided.

    `task_token` is present only while the saga may still be resumed with it; it is never part of a view,
    a log line or an event, and `repr` leaves it out.
    """

    transfer_id: str
    user_id: str
    status: ReviewStatus
    created_at: str
    correlation_id: str
    decision: str | None = None
    reviewer: str | None = None
    note: str | None = None
    decided_at: str | None = None
    resumed: bool = False  # the saga accepted the decision (SendTaskSuccess answered)
    task_token: str | None = field(default=None, repr=False)
    # The transfer's destination, whose owner may not decide the review (four eyes). Reviews opened before
    # it was recorded have none: only the sender (`user_id`) is then known.
    destination_account_id: str | None = None

    def view(self) -> dict[str, Any]:
        """The alert's `review` object."""
        return {
            "status": self.status.value,
            "decision": self.decision,
            "reviewer": self.reviewer,
            "note": self.note,
            "decided_at": self.decided_at,
        }

    def decided_event(self) -> DomainEvent:
        """`vaultpay.fraud.review.decided`: who decided what (the note and the token stay in the table)."""
        if self.decision is None or self.reviewer is None:
            raise ValueError("only a decided review has a decided event")
        return DomainEvent(
            type=REVIEW_DECIDED,
            source=EVENT_SOURCE,
            subject=self.transfer_id,
            actor=self.reviewer,
            correlation_id=self.correlation_id,
            data={"transfer_id": self.transfer_id, "decision": self.decision, "reviewer": self.reviewer},
        )


@dataclass(frozen=True, slots=True)
class AwaitRequest:
    """AwaitReview's input: the saga's transfer, its fraud result and the task token to resume it with."""

    transfer_id: str
    correlation_id: str
    user_id: str
    task_token: str = field(repr=False)
    destination_account_id: str | None = None


def parse_await_request(event: object) -> AwaitRequest:
    if not isinstance(event, Mapping):
        raise InvalidStepInput("The step input is not a JSON object.")
    errors: list[FieldError] = []
    if not isinstance(event.get("transfer_id"), str) or not TRANSFER_ID.fullmatch(event["transfer_id"]):
        errors.append(FieldError("transfer_id", "must be tr_ followed by 32 lower-case hex digits"))
    for name in ("correlation_id", "user_id"):
        value = event.get(name)
        if not isinstance(value, str) or not _ID.fullmatch(value):
            errors.append(FieldError(name, "must be 1..128 printable ASCII characters"))
    destination = event.get("destination_account_id")
    if destination is not None and (
        not isinstance(destination, str) or not _ACCOUNT_ID.fullmatch(destination)
    ):
        errors.append(
            FieldError("destination_account_id", "must be acc_ followed by 32 lower-case hex digits")
        )
    token = event.get("task_token")
    # Step Functions tokens are up to 1024 characters; the value itself is never echoed.
    if not isinstance(token, str) or not 1 <= len(token) <= 4096 or not token.isprintable():
        errors.append(FieldError("task_token", "must be the task token of the waiting state"))
    if errors:
        names = ", ".join(error.field for error in errors)
        raise InvalidStepInput(f"The step input is not valid: {names}.", errors=tuple(errors))
    return AwaitRequest(
        transfer_id=event["transfer_id"],
        correlation_id=event["correlation_id"],
        user_id=event["user_id"],
        task_token=token,  # type: ignore[arg-type]  # checked above
        destination_account_id=destination,
    )


# ---- events the profile learns from ------------------------------------------------------------------------

LOGIN_SUCCEEDED = "vaultpay.auth.login.succeeded"
DEVICE_MISMATCH = "vaultpay.auth.device.mismatch"
TOKEN_REUSE_DETECTED = "vaultpay.auth.token.reuse_detected"  # noqa: S105 - an event type, not a secret
TRANSACTION_COMPLETED = "vaultpay.transaction.completed"
TRANSACTION_DECLINED = "vaultpay.transaction.declined"
TRANSACTION_FAILED = "vaultpay.transaction.failed"
PROFILE_EVENTS = frozenset(
    {
        LOGIN_SUCCEEDED,
        DEVICE_MISMATCH,
        TOKEN_REUSE_DETECTED,
        TRANSACTION_COMPLETED,
        TRANSACTION_DECLINED,
        TRANSACTION_FAILED,
    }
)


@dataclass(frozen=True, slots=True)
class DeviceSeen:
    """A login from `device_id` at `seen_at` (epoch seconds)."""

    event_id: str
    user_id: str
    device_id: str = field(repr=False)  # fraud's own records only: never logged
    seen_at: int


@dataclass(frozen=True, slots=True)
class TransferCompleted:
    """A completed transfer: one more amount in the history, and a payee now known."""

    event_id: str
    user_id: str
    destination_account_id: str
    amount: int


@dataclass(frozen=True, slots=True)
class TransferEnded:
    """A transfer that ended without completing: a review still waiting on it can no longer be decided."""

    event_id: str
    transfer_id: str


@dataclass(frozen=True, slots=True)
class SecuritySignal:
    """Someone used the user's token from another device (`device.mismatch`), or replayed a rotated refresh
    token (`token.reuse_detected`), at `at` (epoch seconds): the account may be in someone else's hands."""

    event_id: str
    user_id: str
    kind: str
    at: int


ProfileEvent = DeviceSeen | TransferCompleted | TransferEnded | SecuritySignal


class NotAProfileEvent(ValueError):
    """A CloudEvent the profile does not learn from (acknowledged and skipped)."""


class MalformedEvent(ValueError):
    """A message that is not a usable CloudEvent of a type the profile learns from."""


def profile_event(envelope: object) -> ProfileEvent:
    """The profile update a CloudEvent stands for; NotAProfileEvent or MalformedEvent otherwise."""
    if not isinstance(envelope, Mapping):
        raise MalformedEvent("not a JSON object")
    event_type = envelope.get("type")
    event_id = envelope.get("id")
    data = envelope.get("data")
    if not isinstance(event_type, str) or not isinstance(event_id, str) or not _ID.fullmatch(event_id):
        raise MalformedEvent("not a CloudEvent (type or id missing)")
    if event_type not in PROFILE_EVENTS:
        raise NotAProfileEvent(event_type)
    if not isinstance(data, Mapping):
        raise MalformedEvent("the event has no data object")

    def text(name: str) -> str:
        value = data.get(name)
        if not isinstance(value, str) or not _ID.fullmatch(value):
            raise MalformedEvent(f"data.{name} is missing or not an id")
        return value

    if event_type == LOGIN_SUCCEEDED:
        at = envelope.get("time")
        try:
            seen_at = epoch_seconds(at) if isinstance(at, str) else -1
        except ValueError:
            seen_at = -1
        if seen_at < 0:
            raise MalformedEvent("time is missing or not RFC 3339")
        return DeviceSeen(event_id, text("user_id"), text("device_id"), seen_at)
    if event_type in (DEVICE_MISMATCH, TOKEN_REUSE_DETECTED):
        at = envelope.get("time")
        try:
            signal_at = epoch_seconds(at) if isinstance(at, str) else -1
        except ValueError:
            signal_at = -1
        if signal_at < 0:
            raise MalformedEvent("time is missing or not RFC 3339")
        kind = "device_mismatch" if event_type == DEVICE_MISMATCH else "token_reuse"
        return SecuritySignal(event_id, text("user_id"), kind, signal_at)
    if event_type == TRANSACTION_COMPLETED:
        amount = data.get("amount")
        if not is_amount(amount):
            raise MalformedEvent("data.amount is not an integer amount")
        return TransferCompleted(event_id, text("user_id"), text("destination_account_id"), amount)
    transfer_id = text("transfer_id")
    if not TRANSFER_ID.fullmatch(transfer_id):
        raise MalformedEvent("data.transfer_id is not a transfer id")
    return TransferEnded(event_id, transfer_id)

"""Fraud use cases: score a transfer (saga step), hold it for a human, record the human's decision, list the
alerts, and keep each user's risk profile current from the event stream.

Every use case talks to its adapters through the ports below, so the unit tests run them on the in-memory
fakes (vaultpay.fraud.memory) and the Lambdas on DynamoDB, SSM, Step Functions and Lambda (bootstrap).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from vaultpay.fraud.config import FraudConfig
from vaultpay.fraud.errors import ReviewAlreadyDecided, ReviewClosed, ReviewNotFound, StepConflict
from vaultpay.fraud.model import Decision, FraudContext
from vaultpay.fraud.ports import (
    AccountOwners,
    AlertPage,
    DecisionExists,
    FraudStore,
    ReviewChanged,
    TaskClosed,
    TaskResumer,
    TransferViews,
)
from vaultpay.fraud.records import (
    EVENT_SOURCE,
    TRANSFER_ID,
    DecisionRecord,
    DeviceSeen,
    ProfileEvent,
    Review,
    ReviewStatus,
    SagaTransfer,
    TransferCompleted,
    TransferEnded,
    parse_await_request,
    parse_saga_transfer,
)
from vaultpay.fraud.rules import DEFAULT_RULES, Rule, evaluate
from vaultpay.shared import kernel
from vaultpay.shared.errors import FieldError, Forbidden, FourEyesRequired, TransientError, ValidationFailed
from vaultpay.shared.events import four_eyes_refused_event
from vaultpay.shared.kernel import rfc3339
from vaultpay.shared.observability import bind_log_keys, get_logger
from vaultpay.shared.ratelimit import CounterStore, window_key

ADMIN_ROLE = "admin"
MINUTE_S = 60
HOUR_S = 3600
VELOCITY_MINUTE_SCOPE = "fraud.velocity.minute"
VELOCITY_HOUR_SCOPE = "fraud.velocity.hour"
# The per-transfer "already counted" marker outlives the hour window: a retry within it reads the windows
# instead of counting the transfer again.
COUNTED_MARKER_TTL_S = 2 * HOUR_S
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_CURSOR_LENGTH = 512
ALERT_DECISIONS = frozenset({Decision.REVIEW.value, Decision.DECLINE.value})
REVIEW_DECISIONS = frozenset({Decision.APPROVE.value, Decision.DECLINE.value})


# ---- the admin check -------------------------------------------------------------------------------------


def require_admin(role: str) -> None:
    """The fraud admin routes are for admins only. The authorizer refuses other roles already; this is the
    handler's own check, so a mis-wired route still cannot show or decide anything."""
    if role != ADMIN_ROLE:
        raise Forbidden("This route needs the admin role.")


# ---- the saga step: evaluate -------------------------------------------------------------------------------


class FraudEngine:
    """EvaluateFraudFunction: scores a transfer once, explains the decision, and remembers it."""

    def __init__(
        self,
        *,
        store: FraudStore,
        counters: CounterStore,
        config: Callable[[], FraudConfig],
        rules: Mapping[str, Rule] = DEFAULT_RULES,
        clock: Callable[[], float] = kernel.now,
    ) -> None:
        self._store = store
        self._counters = counters
        self._config = config
        self._rules = rules
        self._clock = clock

    def evaluate(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The saga's `$.fraud` for the transfer in `event`; a repeat answers the stored decision."""
        transfer = parse_saga_transfer(event)
        bind_log_keys(
            transfer_id=transfer.transfer_id,
            user_id=transfer.user_id,
            correlation_id=transfer.correlation_id,
        )
        stored = self._store.get_decision(transfer.transfer_id)
        if stored is not None:
            return self._replayed(stored, transfer)
        # The configuration is read before anything is counted: a broken one fails the step loudly, and a
        # retry after the fix counts the transfer as if it were the first try.
        config = self._config()
        profile = self._store.get_profile(transfer.user_id, transfer.destination_account_id)
        now = self._clock()
        per_minute, per_hour = self._count(transfer, now)
        context = FraudContext(
            transfer_id=transfer.transfer_id,
            user_id=transfer.user_id,
            source_account_id=transfer.source_account_id,
            destination_account_id=transfer.destination_account_id,
            amount=transfer.amount,
            currency=transfer.currency,
            device_id=transfer.device_id,
            known_devices=profile.devices,
            device_first_seen_at=profile.first_seen_at(transfer.device_id),
            transfers_last_minute=per_minute,
            transfers_last_hour=per_hour,
            history=profile.history,
            payee_known=profile.payee_known,
            now=int(now),
            security_signal_at=profile.security_signal_at,
        )
        verdict = evaluate(context, config, self._rules, on_rule_error=_log_rule_error)
        record = DecisionRecord(
            transfer_id=transfer.transfer_id,
            user_id=transfer.user_id,
            amount=transfer.amount,
            currency=transfer.currency,
            correlation_id=transfer.correlation_id,
            verdict=verdict,
            decided_at=rfc3339(now),
        )
        try:
            self._store.save_decision(record)
        except DecisionExists:
            # A concurrent evaluation of the same transfer committed first: its decision is the one.
            winner = self._store.get_decision(transfer.transfer_id)
            if winner is None:
                raise
            return self._replayed(winner, transfer)
        get_logger().info(
            "fraud decision made",
            extra={
                "decision": verdict.decision.value,
                "score": verdict.score,
                "reasons": list(verdict.reasons),
                "amount": transfer.amount,
            },
        )
        return record.output()

    def _count(self, transfer: SagaTransfer, now: float) -> tuple[int, int]:
        """This transfer's place in the user's minute and hour windows, counted once per transfer.

        The marker is the same atomic counter: the first evaluation of a transfer sees 1 and counts it; a
        retry (the Lambda died before the decision was stored) sees more and only reads the windows.
        """
        minute_key, _, minute_expiry = window_key(VELOCITY_MINUTE_SCOPE, transfer.user_id, now, MINUTE_S)
        hour_key, _, hour_expiry = window_key(VELOCITY_HOUR_SCOPE, transfer.user_id, now, HOUR_S)
        marker = f"FRAUD#counted#{transfer.transfer_id}"
        if self._counters.increment(marker, int(now) + COUNTED_MARKER_TTL_S) == 1:
            return (
                self._counters.increment(minute_key, minute_expiry),
                self._counters.increment(hour_key, hour_expiry),
            )
        # At least this transfer: a retry in a new window must not look quieter than the first try.
        return max(1, self._counters.get(minute_key)), max(1, self._counters.get(hour_key))

    @staticmethod
    def _replayed(stored: DecisionRecord, transfer: SagaTransfer) -> dict[str, Any]:
        if not stored.same_transfer(transfer):
            raise StepConflict("This transfer id was already evaluated with other parameters.")
        get_logger().info("fraud decision replayed", extra={"decision": stored.verdict.decision.value})
        return stored.output()


def _log_rule_error(rule: str, exc: Exception) -> None:
    # The exception's type only: its message may quote the context (amounts, ids).
    get_logger().error(
        "fraud rule failed; the transfer goes to review",
        extra={"rule": rule, "error_type": type(exc).__name__},
    )


# ---- human review ------------------------------------------------------------------------------------------


class ReviewService:
    """AwaitReviewFunction, the review route and the alerts route."""

    def __init__(
        self,
        *,
        store: FraudStore,
        tasks: TaskResumer | None = None,
        transfers: TransferViews | None = None,
        owners: AccountOwners | None = None,
        clock: Callable[[], float] = kernel.now,
    ) -> None:
        self._store = store
        self._tasks = tasks
        self._transfers = transfers
        self._owners = owners
        self._clock = clock

    def await_review(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Saga step (`.waitForTaskToken`): stores the token for an admin. A repeat (Step Functions retried
        the invoke, with a new token) replaces the token while the review still waits."""
        request = parse_await_request(event)
        bind_log_keys(
            transfer_id=request.transfer_id, user_id=request.user_id, correlation_id=request.correlation_id
        )
        stored = self._store.await_review(
            Review(
                transfer_id=request.transfer_id,
                user_id=request.user_id,
                status=ReviewStatus.WAITING,
                created_at=rfc3339(self._clock()),
                correlation_id=request.correlation_id,
                task_token=request.task_token,
                destination_account_id=request.destination_account_id,
            )
        )
        if stored.status is not ReviewStatus.WAITING:
            # Decided (or closed) under an earlier token: that token is dead, so this wait ends at the
            # review timeout, which declines. Never resumed from here with a decision this step did not see.
            get_logger().warning("review already settled; the new token is not stored", extra=_status(stored))
        else:
            get_logger().info("review waiting for an admin")
        return {"transfer_id": request.transfer_id, "status": stored.status.value}

    def decide(
        self, *, role: str, reviewer: str, transfer_id: str, decision: str, note: str, correlation_id: str
    ) -> dict[str, Any]:
        """POST /v1/admin/fraud/reviews/{transfer_id}: the admin's decision (APPROVE or DECLINE, with a
        note, as the route's body model validated them) resumes the saga; answers the transfer view."""
        require_admin(role)
        if decision not in REVIEW_DECISIONS:
            # The route's body model refuses any other; a caller in code gets the same answer.
            raise ValidationFailed(
                "The request is not valid.", errors=[FieldError("decision", "must be APPROVE or DECLINE")]
            )
        if not TRANSFER_ID.fullmatch(transfer_id):
            raise ReviewNotFound("No review is waiting for this transfer.")
        bind_log_keys(transfer_id=transfer_id, correlation_id=correlation_id)
        tasks, transfers = self._require_adapters()
        self._require_second_person(transfer_id, reviewer, correlation_id)
        decided_at = rfc3339(self._clock())
        try:
            review = self._store.claim_review(
                transfer_id, decision=decision, reviewer=reviewer, note=note, decided_at=decided_at
            )
        except ReviewChanged:
            review = self._unclaimable(transfer_id, decision)
        if review.task_token is None:
            raise ReviewClosed("The transfer no longer waits for a decision.")
        try:
            tasks.send_task_success(
                review.task_token,
                {"decision": review.decision, "note": review.note, "reviewer": review.reviewer},
            )
        except TaskClosed:
            self._store.close_review(transfer_id, expected=ReviewStatus.DECIDED)
            get_logger().info("review closed: the saga no longer waits")
            raise ReviewClosed(
                "The transfer no longer waits for a decision (its review timed out)."
            ) from None
        self._store.confirm_review(replace(review, task_token=None))
        get_logger().info("review decided", extra={"decision": review.decision})
        return _view_after_decision(transfers, transfer_id)

    def _require_second_person(self, transfer_id: str, reviewer: str, correlation_id: str) -> None:
        """Four eyes: no admin decides the review of a transfer from or to an account they own. A refusal
        is an event (the audit log's) and a 403 `four_eyes_required`."""
        waiting = self._store.get_review(transfer_id)
        if waiting is None or waiting.status is not ReviewStatus.WAITING:
            return  # nothing to decide: the claim answers why
        owners = {waiting.user_id}
        if waiting.destination_account_id is not None and self._owners is not None:
            owners.add(self._owners.owner_of(waiting.destination_account_id) or "")
        if reviewer not in owners:
            return
        self._store.record_event(
            four_eyes_refused_event(
                source=EVENT_SOURCE,
                operation="fraud_review",
                subject=transfer_id,
                reason="own_account",
                actor=reviewer,
                correlation_id=correlation_id,
                at=rfc3339(self._clock()),
            )
        )
        get_logger().warning("four eyes refused", extra={"operation": "fraud_review"})
        raise FourEyesRequired(
            "An admin may not decide the review of a transfer from or to their own account."
        )

    def _unclaimable(self, transfer_id: str, decision: str) -> Review:
        """Why a review could not be claimed, as the client's error; or, for a decision whose claim was
        stored but whose saga was never told (the previous request died in between), that review, so the
        same decision is delivered now."""
        current = self._store.get_review(transfer_id)
        if current is None:
            raise ReviewNotFound("No review is waiting for this transfer.")
        if current.status is ReviewStatus.CLOSED:
            raise ReviewClosed("The transfer no longer waits for a decision.")
        if current.status is ReviewStatus.DECIDED:
            if not current.resumed and current.decision == decision and current.task_token is not None:
                return current
            raise ReviewAlreadyDecided("This review has already been decided.")
        # WAITING again means the claim raced a retried AwaitReview: the client may simply retry.
        raise ReviewAlreadyDecided("This review changed while it was being decided; read it and retry.")

    def alerts(
        self,
        *,
        role: str,
        decision: str | None,
        limit: str | int | None,
        cursor: str | None,
    ) -> AlertPage:
        """GET /v1/admin/fraud/alerts: decisions other than APPROVE, newest first, with their reviews."""
        require_admin(role)
        errors: list[FieldError] = []
        if decision is not None and decision not in ALERT_DECISIONS:
            errors.append(FieldError("decision", "must be REVIEW or DECLINE"))
        size = _limit(limit, errors)
        if cursor is not None and not 1 <= len(cursor) <= MAX_CURSOR_LENGTH:
            errors.append(FieldError("cursor", "is not valid"))
        if errors:
            raise ValidationFailed("The request is not valid.", errors=errors)
        page = self._store.list_alerts(decision, limit=size, cursor=cursor)
        records = page.items
        reviews = self._store.get_reviews(
            [r.transfer_id for r in records if r.verdict.decision is Decision.REVIEW]
        )
        return AlertPage(
            items=[(record, reviews.get(record.transfer_id)) for record in records],
            next_cursor=page.next_cursor,
        )

    def _require_adapters(self) -> tuple[TaskResumer, TransferViews]:
        from vaultpay.shared.errors import ConfigurationError

        if self._tasks is None or self._transfers is None:
            raise ConfigurationError("the review service needs Step Functions and the transfer views")
        return self._tasks, self._transfers


def _status(review: Review) -> dict[str, Any]:
    return {"review_status": review.status.value}


def _limit(limit: str | int | None, errors: list[FieldError]) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    text = str(limit)
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        errors.append(FieldError("limit", f"must be an integer in 1..{MAX_LIMIT}"))
        return DEFAULT_LIMIT
    return int(text)


# ---- the profile: fraud-workers ----------------------------------------------------------------------------


class ProfileService:
    """Keeps PROFILE#<user_id> current: devices from logins, amounts and payees from completed transfers,
    and closes reviews whose transfer ended without a decision. Each event is applied once."""

    def __init__(self, store: FraudStore) -> None:
        self._store = store

    def apply(self, event: ProfileEvent) -> bool:
        """True when the event changed the profile now, False when it had been applied before."""
        if isinstance(event, DeviceSeen | TransferCompleted):
            bind_log_keys(user_id=event.user_id)
        elif isinstance(event, TransferEnded):
            bind_log_keys(transfer_id=event.transfer_id)
        return self._store.apply_profile_event(event)


# The decision is delivered and stored before the view is read: a failed read must not tell the admin the
# decision failed (a retry would then answer 409 review_already_decided). The read changes nothing, so it
# is tried again; but no new try starts after VIEW_RETRY_BUDGET_S, so the request stays well inside its
# function's 10 s timeout (a timeout would answer 502, worse than the 503 of a view that never read).
VIEW_ATTEMPTS = 3
VIEW_RETRY_BUDGET_S = 4.0


def _view_after_decision(
    transfers: TransferViews, transfer_id: str, monotonic: Callable[[], float] = time.monotonic
) -> dict[str, Any]:
    began, attempt = monotonic(), 1
    while True:
        try:
            return transfers.view(transfer_id)
        except TransientError:
            if attempt >= VIEW_ATTEMPTS or monotonic() - began >= VIEW_RETRY_BUDGET_S:
                raise
        attempt += 1
        get_logger().warning("transfer view failed after the decision; reading it again")

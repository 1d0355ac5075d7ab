"""Accounts use cases: open, list, read, statements, deposits, and the saga's ledger steps.

Every money movement follows one loop: read what the movement depends on (consistently), let the pure model
plan it, and commit the plan in one transaction conditioned on what was read. When a concurrent movement got
there first the commit reports a stale read, and the loop reads again (with jitter), so no movement is ever
decided on a balance that is no longer true.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from vaultpay.accounts.errors import AccountNotFound, DepositNotFound, HoldNotOpen
from vaultpay.accounts.model import (
    SOURCE,
    Account,
    AccountPage,
    AccountStatus,
    AccountType,
    AccountView,
    Balance,
    DepositStatus,
    DepositView,
    Done,
    Movement,
    StatementPage,
    StepRequest,
    account_created_event,
    account_number_problem,
    amount_problem,
    four_eyes_problem,
    is_account_id,
    is_deposit_id,
    new_account_id,
    new_account_number,
    new_deposit_id,
    parse_step,
    plan_deposit,
    plan_deposit_decision,
    plan_release,
    plan_reserve,
    plan_settle,
)
from vaultpay.accounts.ports import Cipher, Index, LedgerStore, NumberTaken, StaleRead
from vaultpay.shared import kernel
from vaultpay.shared.errors import ConcurrentModification, FieldError, FourEyesRequired, ValidationFailed
from vaultpay.shared.events import four_eyes_refused_event
from vaultpay.shared.kernel import rfc3339
from vaultpay.shared.observability import bind_log_keys, get_logger

# A hot account sees movements race for its version: each loser re-reads, so the attempts bound how long
# one call may keep losing (about a second with these back-offs) before the caller's own retry takes over.
MOVEMENT_ATTEMPTS = 10
MOVEMENT_BACKOFF_S = 0.005
MOVEMENT_BACKOFF_CAP_S = 0.2
NUMBER_ATTEMPTS = 5
NUMBER_CONTEXT_FIELD = "account_number"


class _Refused(Exception):
    """A four-eyes rule refused the operation: recorded as an event, then answered 403."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_FOUR_EYES_DETAIL = {
    "requested_by_same_admin": "Another admin must decide a deposit you asked for.",
    "own_account": "An admin may not move money into, or decide about, an account they own.",
}


def _deposit_view(result: Mapping[str, Any]) -> DepositView:
    balance = result.get("balance")
    return DepositView(
        deposit_id=result["deposit_id"],
        account_id=result["account_id"],
        amount=result["amount"],
        currency=result["currency"],
        reference=result["reference"],
        balance=Balance(balance["ledger"], balance["available"]) if balance is not None else None,
        created_at=result["created_at"],
        status=result["status"],
        requested_by=result.get("requested_by"),
        decided_by=result.get("decided_by"),
        decided_at=result.get("decided_at"),
    )


class AccountsService:
    def __init__(
        self,
        *,
        store: LedgerStore,
        cipher: Cipher,
        index: Index,
        currencies: frozenset[str],
        clock: Callable[[], float] = kernel.now,
        sleep: Callable[[float], None] = time.sleep,
        stale_errors: tuple[type[Exception], ...] | None = None,
        taken_errors: tuple[type[Exception], ...] | None = None,
        deposit_approval_threshold: int | None = None,
    ) -> None:
        """`deposit_approval_threshold`: a deposit above it waits for a second admin (None: never)."""

        self._store = store
        self._cipher = cipher
        self._index = index
        self._currencies = currencies
        self._clock = clock
        self._sleep = sleep
        self._stale = stale_errors or (StaleRead,)
        self._taken = taken_errors or (NumberTaken,)
        self._approval_threshold = deposit_approval_threshold

    # ---- accounts -------------------------------------------------------------------------------------

    def open_account(
        self, owner_id: str, account_type: str, currency: str, correlation_id: str
    ) -> AccountView:
        kind = self._account_type(account_type)
        self._check_currency(currency)
        for _ in range(NUMBER_ATTEMPTS):
            account_id = new_account_id()
            number = new_account_number()
            now = self._clock()
            at = rfc3339(now)
            account = Account(
                account_id=account_id,
                owner_id=owner_id,
                type=kind,
                currency=currency,
                status=AccountStatus.ACTIVE,
                number_index=self._index.of(NUMBER_CONTEXT_FIELD, number),
                number_enc=self._cipher.encrypt(number, context=self._number_context(account_id)),
                number_last4=number[-4:],
                ledger=0,
                available=0,
                version=0,
                created_at=at,
            )
            try:
                self._store.create_account(
                    account, account_created_event(account, correlation_id=correlation_id, at=at)
                )
            except self._taken:
                # One in 10^10 per account: draw again rather than ever hand out a number twice.
                continue
            bind_log_keys(account_id=account_id)
            get_logger().info("account opened", extra={"account_type": kind.value})
            return AccountView.of(account, number=number)
        raise ConcurrentModification("no free account number was found")

    def list_accounts(self, owner_id: str, *, limit: int, cursor: str | None) -> AccountPage:
        page = self._store.list_accounts(owner_id, limit=limit, cursor=cursor)
        return AccountPage(items=[AccountView.of(a) for a in page.items], next_cursor=page.next_cursor)

    def get_account(self, owner_id: str, account_id: str) -> AccountView:
        account = self._owned(owner_id, account_id)
        number = self._cipher.decrypt(account.number_enc, context=self._number_context(account_id))
        return AccountView.of(account, number=number)

    def statement(self, owner_id: str, account_id: str, *, limit: int, cursor: str | None) -> StatementPage:
        self._owned(owner_id, account_id)
        page = self._store.list_entries(account_id, limit=limit, cursor=cursor)
        return StatementPage(items=list(page.items), next_cursor=page.next_cursor)

    def account_id_for_number(self, number: str) -> str | None:
        """The account an account number names (after its check digits pass), or None."""
        problem = account_number_problem(number)
        if problem:
            raise ValidationFailed(
                "The account number is not valid.",
                code="invalid_account_number",
                errors=[FieldError("account_number", problem)],
            )
        return self._store.account_id_by_number_index(self._index.of(NUMBER_CONTEXT_FIELD, number))

    # ---- the transfers domain's questions (ResolveTransferPartiesFunction) ---------------------------

    def resolve_transfer_parties(
        self, owner_id: str, source_account_id: str, destination_account_number: str, currency: str
    ) -> dict[str, Any]:
        """Both parties of a transfer the owner asks for, or why not: `{ok: false, code, message[, field]}`.

        Refusals are answers (the caller maps each code to a docs/api.md error), so the Lambda never fails for
        a request the rules refuse. The destination's number is answered masked only.
        """
        try:
            source = self._owned(owner_id, source_account_id)
        except AccountNotFound:
            return _refused("account_not_found", "No such account.", "source_account_id")
        problem = account_number_problem(destination_account_number)
        if problem:
            return _refused(
                "invalid_account_number",
                f"The destination account number {problem}.",
                "destination_account_number",
            )
        destination_id = self._store.account_id_by_number_index(
            self._index.of(NUMBER_CONTEXT_FIELD, destination_account_number)
        )
        if destination_id == source.account_id:
            return _refused(
                "same_account", "The destination is the source account.", "destination_account_number"
            )
        destination = self._store.get_account(destination_id) if destination_id is not None else None
        if destination is None:
            return _refused(
                "destination_not_found", "No account has this account number.", "destination_account_number"
            )
        for account in (source, destination):
            if account.currency != currency:
                return _refused("currency_mismatch", f"The accounts do not hold {currency}.", "currency")
        for account in (source, destination):
            if account.status is not AccountStatus.ACTIVE:
                return _refused("account_not_active", "One of the accounts may not move money.", None)
        return {
            "ok": True,
            "source_account_id": source.account_id,
            "destination_account_id": destination.account_id,
            "destination_account_number_masked": destination.masked_number,
            "currency": currency,
        }

    def owns_account(self, owner_id: str, account_id: str) -> bool:
        """Whether `account_id` is one of `owner_id`'s accounts (a malformed id is no one's)."""
        try:
            self._owned(owner_id, account_id)
        except AccountNotFound:
            return False
        return True

    # ---- money ----------------------------------------------------------------------------------------

    def deposit(
        self,
        actor_id: str,
        account_id: str,
        amount: int,
        currency: str,
        reference: str,
        correlation_id: str,
        *,
        request_id: str | None = None,
    ) -> DepositView:
        """Books a deposit, or (above the approval threshold) records it PENDING_APPROVAL for a second admin.

        With `request_id` (the idempotency scope of the HTTP request) the deposit id is derived from it, so
        even a repeat that got past the idempotency record books nothing twice. An admin may not deposit
        into an account they own (403 `four_eyes_required`, recorded as an event).
        """
        problem = amount_problem(amount)
        if problem:
            raise ValidationFailed("The amount is not valid.", errors=[FieldError("amount", problem)])
        self._check_currency(currency)
        if not is_account_id(account_id):
            raise AccountNotFound("No such account.")
        deposit_id = new_deposit_id(request_id)
        bind_log_keys(account_id=account_id)
        needs_approval = self._approval_threshold is not None and amount > self._approval_threshold

        def plan() -> Movement | Done:
            account = self._store.get_account(account_id)
            if account is None:
                raise AccountNotFound("No such account.")
            refusal = four_eyes_problem(actor=actor_id, account_owner=account.owner_id)
            if refusal is not None:
                raise _Refused(refusal)
            now = self._clock()
            return plan_deposit(
                account,
                self._store.get_deposit(deposit_id) if request_id is not None else None,
                deposit_id=deposit_id,
                amount=amount,
                currency=currency,
                reference=reference,
                actor=actor_id,
                correlation_id=correlation_id,
                at=rfc3339(now),
                needs_approval=needs_approval,
            )

        try:
            result = self._move(plan)
        except _Refused as refused:
            self._refuse("deposit", account_id, refused.reason, actor_id, correlation_id)
        get_logger().info(
            "deposit booked" if result["status"] == "BOOKED" else "deposit awaits approval",
            extra={"deposit_id": deposit_id, "amount": amount},
        )
        return _deposit_view(result)

    def decide_deposit(
        self,
        decider_id: str,
        deposit_id: str,
        *,
        approve: bool,
        reason: str | None,
        correlation_id: str,
    ) -> DepositView:
        """A second admin approves (books) or rejects a deposit that waits for approval.

        The admin who asked for it, or one who owns its account, is refused (403 `four_eyes_required`,
        recorded as an event); a deposit decided otherwise already is 409 `deposit_not_pending`.
        """
        if not is_deposit_id(deposit_id):
            raise DepositNotFound("No such deposit.")

        def plan() -> Movement | Done:
            deposit = self._store.get_deposit(deposit_id)
            if deposit is None:
                raise DepositNotFound("No such deposit.")
            account = self._store.get_account(deposit.account_id)
            if deposit.status is DepositStatus.PENDING_APPROVAL:
                refusal = four_eyes_problem(
                    actor=decider_id,
                    account_owner=account.owner_id if account is not None else None,
                    requested_by=deposit.actor,
                )
                if refusal is not None:
                    raise _Refused(refusal)
            return plan_deposit_decision(
                account,
                deposit,
                approve=approve,
                decider=decider_id,
                reason=reason,
                correlation_id=correlation_id,
                at=rfc3339(self._clock()),
            )

        operation = "deposit_approval" if approve else "deposit_rejection"
        try:
            result = self._move(plan)
        except _Refused as refused:
            self._refuse(operation, deposit_id, refused.reason, decider_id, correlation_id)
        get_logger().info("deposit decided", extra={"deposit_id": deposit_id, "status": result["status"]})
        return _deposit_view(result)

    def pending_deposits(self, *, limit: int, cursor: str | None) -> tuple[list[DepositView], str | None]:
        """Deposits waiting for a second admin, oldest first (GET /v1/admin/deposits)."""
        page = self._store.pending_deposits(limit=limit, cursor=cursor)
        return [deposit.view() for deposit in page.items], page.next_cursor

    def _refuse(self, operation: str, subject: str, reason: str, actor: str, correlation_id: str) -> NoReturn:
        """Records the refusal as an event (the audit log's), then answers it: 403 four_eyes_required."""
        event = four_eyes_refused_event(
            source=SOURCE,
            operation=operation,
            subject=subject,
            reason=reason,
            actor=actor,
            correlation_id=correlation_id,
            at=rfc3339(self._clock()),
        )
        self._store.commit(Movement(accounts=(), result={}, events=(event,)))
        get_logger().warning("four eyes refused", extra={"operation": operation, "reason": reason})
        raise FourEyesRequired(_FOUR_EYES_DETAIL[reason])

    def reserve(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Saga step: hold the transfer's amount on its source account (idempotent on the transfer id)."""
        request = self._step(event)

        def plan() -> Movement | Done:
            account, hold = self._store.get_account_and_hold(request.source_account_id, request.transfer_id)
            now = self._clock()
            return plan_reserve(account, hold, request, at=rfc3339(now), now_s=int(now))

        return self._step_result("reserve", request, plan)

    def release(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Saga step (compensation): give the held amount back (idempotent; safe before a reserve)."""
        request = self._step(event)

        def plan() -> Movement | Done:
            account, hold = self._store.get_account_and_hold(request.source_account_id, request.transfer_id)
            now = self._clock()
            return plan_release(account, hold, request, at=rfc3339(now), now_s=int(now))

        return self._step_result("release", request, plan)

    def release_expired_holds(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Releases HELD holds past their expiry (a saga that died outside its own compensation).

        Each goes through the release step itself, so the RELEASE posting, the balance and the
        `funds.released` event are what a compensation would have written. A hold that settles or is
        released between the query and the release is left as it now is.
        """
        released: list[dict[str, Any]] = []
        for hold in self._store.expired_holds(int(self._clock()), limit=limit):
            try:
                result = self.release(
                    {
                        "transfer_id": hold.transfer_id,
                        "source_account_id": hold.account_id,
                        "amount": hold.amount,
                        "currency": hold.currency,
                        "correlation_id": f"hold-expiry-{hold.transfer_id}",
                    }
                )
            except HoldNotOpen:
                continue  # settled meanwhile: the money moved as the saga decided
            released.append(result)
        return released

    def settle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Saga step: DEBIT the source (consuming its hold) and CREDIT the destination, in one transaction."""
        request = self._step(event, needs_destination=True)
        destination_id = request.destination_account_id or ""

        def plan() -> Movement | Done:
            source, hold = self._store.get_account_and_hold(request.source_account_id, request.transfer_id)
            if source is None:
                raise AccountNotFound("The source account does not exist.")
            destination = self._store.get_account(destination_id)
            return plan_settle(source, destination, hold, request, at=rfc3339(self._clock()))

        return self._step_result("settle", request, plan)

    # ---- plumbing -------------------------------------------------------------------------------------

    def _step(self, event: Mapping[str, Any], *, needs_destination: bool = False) -> StepRequest:
        request = parse_step(event, needs_destination=needs_destination)
        bind_log_keys(
            transfer_id=request.transfer_id,
            account_id=request.source_account_id,
            correlation_id=request.correlation_id,
        )
        return request

    def _step_result(
        self, step: str, request: StepRequest, plan: Callable[[], Movement | Done]
    ) -> dict[str, Any]:
        replayed: list[bool] = []

        def planned() -> Movement | Done:
            decision = plan()
            replayed[:] = [isinstance(decision, Done)]
            return decision

        result = self._move(planned)
        get_logger().info(
            f"{step} done",
            extra={"step": step, "replayed": bool(replayed and replayed[0]), "amount": request.amount},
        )
        return result

    def _move(self, plan: Callable[[], Movement | Done]) -> dict[str, Any]:
        """Plan and commit until the commit holds; a stale read re-reads, with jittered back-off."""
        for attempt in range(MOVEMENT_ATTEMPTS):
            decision = plan()
            if isinstance(decision, Done):
                return decision.result
            try:
                self._store.commit(decision)
            except self._stale:
                delay = min(MOVEMENT_BACKOFF_CAP_S, MOVEMENT_BACKOFF_S * 2**attempt)
                self._sleep(random.uniform(0, delay))  # noqa: S311 - jitter, not security
                continue
            return decision.result
        raise ConcurrentModification("the account kept changing under this movement; retry")

    def _owned(self, owner_id: str, account_id: str) -> Account:
        # A malformed id, someone else's account and no account at all answer the same: 404.
        account = self._store.get_account(account_id) if is_account_id(account_id) else None
        if account is None or account.owner_id != owner_id:
            raise AccountNotFound("No such account.")
        bind_log_keys(account_id=account_id)
        return account

    def _account_type(self, account_type: str) -> AccountType:
        try:
            return AccountType(account_type)
        except ValueError:
            raise ValidationFailed(
                "The account type is not valid.",
                errors=[FieldError("type", "must be SAVINGS or CURRENT")],
            ) from None

    def _check_currency(self, currency: str) -> None:
        if currency not in self._currencies:
            raise ValidationFailed(
                "The currency is not supported.",
                code="currency_not_supported",
                errors=[FieldError("currency", "is not supported")],
            )

    @staticmethod
    def _number_context(account_id: str) -> dict[str, str]:
        return {"field": NUMBER_CONTEXT_FIELD, "account_id": account_id}


def _refused(code: str, message: str, field: str | None) -> dict[str, Any]:
    """A resolver refusal: the docs/api.md code, a message written for the client, the field it is about."""
    answer: dict[str, Any] = {"ok": False, "code": code, "message": message}
    if field is not None:
        answer["field"] = field
    return answer

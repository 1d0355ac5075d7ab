"""Transfers use cases: request a transfer (and start its saga), read and list them, record the saga's ops.

The transfers domain never reads the accounts table: the parties of a transfer (whose source account it is,
which account a number names) come through the `PartyResolver` port, which production wires to the accounts
domain's internal ResolveTransferPartiesFunction.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import cache
from typing import Any

from vaultpay.shared import kernel
from vaultpay.shared.errors import ConcurrentModification, FieldError, RateLimited, ValidationFailed

# The amount limits are re-exported: the create route's body model states them.
from vaultpay.shared.kernel import MAX_AMOUNT, MIN_AMOUNT, is_amount, rfc3339
from vaultpay.shared.observability import bind_log_keys, get_logger
from vaultpay.shared.ratelimit import RateLimiter, Window
from vaultpay.transfers.errors import AccountNotFound, TransferNotFound
from vaultpay.transfers.model import (
    Op,
    Parties,
    Transfer,
    TransferPage,
    Unchanged,
    description_problem,
    is_account_id,
    is_transfer_id,
    new_transfer,
    parse_status_event,
    plan_status,
    transfer_id_for,
)
from vaultpay.transfers.ports import PartyResolver, SagaStarter, StaleTransfer, TransferExists, TransferStore

# Per user: generous for a person, a wall for a script draining an account in small pieces.
CREATE_WINDOW = Window(limit=60, period_s=60)
RATE_LIMIT_SCOPE = "transfers"
STATUS_ATTEMPTS = 8
STATUS_BACKOFF_S = 0.01


class TransfersService:
    def __init__(
        self,
        *,
        store: TransferStore,
        parties: PartyResolver,
        saga: SagaStarter,
        currencies: frozenset[str],
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = kernel.now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:

        self._store = store
        self._parties = parties
        self._saga = saga
        self._currencies = currencies
        self._limiter = limiter
        self._clock = clock
        self._sleep = sleep
        self._exists: tuple[type[Exception], ...] = (TransferExists,)
        self._stale: tuple[type[Exception], ...] = (StaleTransfer,)

    # ---- POST /v1/transfers -----------------------------------------------------------------------------

    def create(
        self,
        *,
        user_id: str,
        device_id: str,
        correlation_id: str,
        request_scope: str,
        source_account_id: str,
        destination_account_number: str,
        amount: int,
        currency: str,
        description: str | None,
    ) -> dict[str, Any]:
        """Records a PENDING transfer with its `initiated` event and starts its saga; answers its view.

        The transfer id comes from `request_scope` (the idempotency scope of the request): a repeat that got
        past the idempotency record finds the transfer already written and only (re)starts its execution,
        which is named after the transfer and so runs once however often it is started.
        """
        self._validate(amount, currency, description)
        transfer_id = transfer_id_for(request_scope)
        bind_log_keys(
            transfer_id=transfer_id,
            account_id=source_account_id if is_account_id(source_account_id) else None,
        )
        existing, settle = self._read_count_and_resolve(
            transfer_id,
            user_id=user_id,
            source_account_id=source_account_id,
            destination_account_number=destination_account_number,
            currency=currency,
        )
        if existing is None:
            parties = settle()
            transfer, event = new_transfer(
                transfer_id=transfer_id,
                user_id=user_id,
                parties=parties,
                amount=amount,
                description=description,
                correlation_id=correlation_id,
                at=rfc3339(self._clock()),
            )
            try:
                self._store.create(transfer, event)
                get_logger().info("transfer requested", extra={"amount": amount, "currency": currency})
            except self._exists:
                # The same request raced itself (two retries at once): the first one's record stands.
                transfer = self._existing(transfer_id)
            existing = transfer
        self._same_request(
            existing,
            user_id=user_id,
            source_account_id=source_account_id,
            destination_account_number=destination_account_number,
            amount=amount,
            currency=currency,
            description=description,
        )
        started = self._saga.start(transfer_id, existing.saga_input(device_id=device_id))
        get_logger().info("transfer saga started" if started else "transfer saga already running")
        return existing.view()

    def _read_count_and_resolve(
        self,
        transfer_id: str,
        *,
        user_id: str,
        source_account_id: str,
        destination_account_number: str,
        currency: str,
    ) -> tuple[Transfer | None, Callable[[], Parties]]:
        """The stored transfer (None for a new request), and what a new request needs settled: the caller's
        count in the creation window, then the parties from accounts. The three are in flight together, so
        the 202 waits on the accounts invoke alone, not on the read and the count before it.

        A repeat that got past the idempotency record is counted too, but never refused, and the parties'
        answer is dropped: its transfer stands, and the answer is that transfer. What a new request is refused
        for comes in the order it always did: the window (429), then the parties' errors. The price: a
        request over the window still costs one accounts invoke (reads only), which the per-user API-call
        limit bounds.
        """
        now, calls = self._clock(), _side_calls()
        limiter = self._limiter
        counting = (
            calls.submit(limiter.hit, RATE_LIMIT_SCOPE, user_id, CREATE_WINDOW, now=now) if limiter else None
        )
        resolving = calls.submit(
            self._parties.resolve,
            owner_id=user_id,
            source_account_id=source_account_id,
            destination_account_number=destination_account_number,
            currency=currency,
        )
        try:
            existing = self._store.get(transfer_id)
        finally:
            in_flight: list[Future[Any]] = [resolving] if counting is None else [counting, resolving]
            wait(in_flight)
        if counting is not None and not isinstance(counting.exception(), RateLimited | None):
            counting.result()  # the count could not be written: fail closed, a repeat too

        def settle() -> Parties:
            if counting is not None:
                counting.result()  # RateLimited
            return resolving.result()

        return existing, settle

    def _validate(self, amount: int, currency: str, description: str | None) -> None:
        problems: list[FieldError] = []
        if not is_amount(amount):
            problems.append(FieldError("amount", f"must be an integer between {MIN_AMOUNT} and {MAX_AMOUNT}"))
        problem = description_problem(description)
        if problem:
            problems.append(FieldError("description", problem))
        if problems:
            raise ValidationFailed("The transfer is not valid.", errors=problems)
        if currency not in self._currencies:
            raise ValidationFailed(
                "The currency is not supported.",
                code="currency_not_supported",
                errors=[FieldError("currency", "is not supported")],
            )

    @staticmethod
    def _same_request(
        transfer: Transfer,
        *,
        user_id: str,
        source_account_id: str,
        destination_account_number: str,
        amount: int,
        currency: str,
        description: str | None,
    ) -> None:
        """A stored transfer answers a repeat only if the repeat asks for the same transfer."""
        same = (
            transfer.user_id == user_id
            and transfer.source_account_id == source_account_id
            and transfer.destination_account_number_masked[-4:] == destination_account_number[-4:]
            and transfer.amount == amount
            and transfer.currency == currency
            and transfer.description == (description or None)
        )
        if not same:
            raise ValidationFailed(
                "This Idempotency-Key was already used with a different request body. "
                "Use a new key for a new request.",
                code="idempotency_key_reused",
            )

    def _existing(self, transfer_id: str) -> Transfer:
        transfer = self._store.get(transfer_id)
        if transfer is None:
            raise ConcurrentModification("the transfer was being written concurrently; retry")
        return transfer

    # ---- reads ------------------------------------------------------------------------------------------

    def get(self, user_id: str, transfer_id: str) -> dict[str, Any]:
        """The caller's transfer; someone else's, a missing one and a malformed id are the same 404."""
        transfer = self._store.get(transfer_id) if is_transfer_id(transfer_id) else None
        if transfer is None or transfer.user_id != user_id:
            raise TransferNotFound("No such transfer.")
        bind_log_keys(transfer_id=transfer_id)
        return transfer.view()

    def list_for_account(
        self, user_id: str, account_id: str, *, limit: int, cursor: str | None
    ) -> TransferPage:
        """Transfers sent from one of the caller's accounts, newest first; any other account is a 404."""
        if not is_account_id(account_id) or not self._parties.owns(owner_id=user_id, account_id=account_id):
            raise AccountNotFound("No such account.")
        bind_log_keys(account_id=account_id)
        page = self._store.list_by_source(account_id, limit=limit, cursor=cursor)
        # Defence in depth: an account's transfers are its owner's, and only those are ever shown.
        return TransferPage(
            items=[item for item in page.items if item.user_id == user_id], next_cursor=page.next_cursor
        )

    def view(self, transfer_id: str) -> dict[str, Any]:
        """Any transfer's view, for internal callers (the review route); never behind a public route."""
        transfer = self._store.get(transfer_id) if is_transfer_id(transfer_id) else None
        if transfer is None:
            raise TransferNotFound(f"Transfer {transfer_id} does not exist.")
        return transfer.view(internal=True)

    # ---- the saga's ops ---------------------------------------------------------------------------------

    def apply_status(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """TransferStatusFunction: one op of the saga (docs/transfers-contract.md), idempotent; the view."""
        command = parse_status_event(event)
        bind_log_keys(transfer_id=command.transfer_id)
        if command.op is Op.VIEW:
            return self.view(command.transfer_id)
        for attempt in range(STATUS_ATTEMPTS):
            transfer = self._store.get(command.transfer_id)
            if transfer is None:
                raise TransferNotFound(f"Transfer {command.transfer_id} does not exist.")
            decision = plan_status(transfer, command, at=rfc3339(self._clock()))
            if isinstance(decision, Unchanged):
                get_logger().info(
                    "transfer status unchanged",
                    extra={"op": command.op.value, "status": transfer.status.value, "replayed": True},
                )
                return decision.transfer.view(internal=True)
            try:
                self._store.save(
                    decision.after,
                    expected_status=decision.expected_status,
                    expected_version=decision.expected_version,
                    events=decision.events,
                )
            except self._stale:
                self._sleep(random.uniform(0, STATUS_BACKOFF_S * 2**attempt))  # noqa: S311 - jitter
                continue
            get_logger().info(
                "transfer status recorded",
                extra={
                    "op": command.op.value,
                    "status": decision.after.status.value,
                    "failure_reason": decision.after.failure_reason,
                },
            )
            return decision.after.view(internal=True)
        raise ConcurrentModification("the transfer kept changing under this op; retry")


@cache
def _side_calls() -> ThreadPoolExecutor:
    """The threads a request's calls run on beside its own (one request at a time per container)."""
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="transfers-create")

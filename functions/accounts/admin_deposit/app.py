"""Admin deposits: money in from the bank's settlement account, with four eyes above a threshold.

POST /v1/admin/deposits (Idempotency-Key required) books a deposit at or under DepositApprovalThreshold (201)
and records a larger one PENDING_APPROVAL (202); GET /v1/admin/deposits?status=PENDING_APPROVAL lists those;
POST /v1/admin/deposits/{deposit_id}/approve or /reject is a second admin's decision.
"""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import AfterValidator, Field, StrictInt
from pydantic.json_schema import SkipJsonSchema

from vaultpay.accounts.model import DepositStatus
from vaultpay.accounts.responses import Balance
from vaultpay.bootstrap.accounts import accounts_service
from vaultpay.shared.errors import FieldError, ValidationFailed
from vaultpay.shared.http import RequestModel, api_handler, make_admin_resolver, no_store_json, principal
from vaultpay.shared.idempotency import Outcome, idempotency_key, idempotency_scope, idempotent_response
from vaultpay.shared.kernel import MAX_AMOUNT, MIN_AMOUNT
from vaultpay.shared.observability import bind_log_keys, get_tracer
from vaultpay.shared.openapi import Amount, Currency, NextCursor, ResponseModel, Timestamp, problems, success

tracer = get_tracer()
# Admin-only: a caller who is not an admin is answered 403 before any body or query is validated.
app = make_admin_resolver()
# Only the booking takes an Idempotency-Key: listing reads, and a decision repeated answers the same anyway.
IDEMPOTENT_ROUTES = frozenset({("post", "/v1/admin/deposits")})


def _printable(value: str) -> str:
    if not value.isprintable() or not value.strip():
        raise ValueError("must be printable text, not blank")
    return value


def _printable_or_none(value: str | None) -> str | None:
    return None if value is None else _printable(value)


class DepositRequest(RequestModel):
    """The whole body. StrictInt: a float, a string or a boolean amount is a 422, never coerced."""

    account_id: Annotated[str, Field(pattern=r"^acc_[0-9a-f]{32}$")]
    amount: Annotated[StrictInt, Field(ge=MIN_AMOUNT, le=MAX_AMOUNT)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    reference: Annotated[str, Field(min_length=1, max_length=140), AfterValidator(_printable)]


class DepositDecision(RequestModel):
    """Why the second admin decides as they do: kept in the deposit, its event and the audit log."""

    reason: Annotated[str | None, Field(min_length=1, max_length=500), AfterValidator(_printable_or_none)] = (
        None
    )


class Deposit(ResponseModel):
    """A deposit as admins see it (docs/accounts-contract.md "HTTP"): `balance` only once it is BOOKED,
    `decided_by` and `decided_at` only once a second admin decided it."""

    deposit_id: str
    status: Literal["PENDING_APPROVAL", "BOOKED", "REJECTED"]
    account_id: str
    amount: Amount
    currency: Currency
    reference: str
    created_at: Timestamp
    # SkipJsonSchema[None]: these keys are left out, never sent as null.
    balance: Balance | SkipJsonSchema[None] = Field(default=None, description="The account's, after booking.")
    requested_by: str | SkipJsonSchema[None] = Field(default=None, description="The admin who asked for it.")
    decided_by: str | SkipJsonSchema[None] = Field(default=None, description="The second admin.")
    decided_at: Timestamp | SkipJsonSchema[None] = None


class DepositPage(ResponseModel):
    """A page of deposits, oldest first."""

    items: list[Deposit]
    next_cursor: NextCursor


_BOOKED_EXAMPLE = {
    "deposit_id": "dep_4f6a0b1c2d3e4f5a6b7c8d9e0f1a2b3c",
    "status": "BOOKED",
    "account_id": "acc_5b0f0c7e9d2a4c61b3e8f7a6d5c4b3a2",
    "amount": 500000,
    "currency": "INR",
    "reference": "NEFT N123",
    "created_at": "2026-11-28T10:15:30.123Z",
    "requested_by": "usr_8c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f",
    "balance": {"ledger": 625050, "available": 600000},
}
_PENDING_EXAMPLE = {key: value for key, value in _BOOKED_EXAMPLE.items() if key != "balance"} | {
    "status": "PENDING_APPROVAL",
    "amount": 25000000,
}
_DECISION = {"decided_by": "usr_2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d", "decided_at": "2026-11-28T11:02:04.512Z"}
_DECIDED_EXAMPLE = (
    _BOOKED_EXAMPLE | {"amount": 25000000, "balance": {"ledger": 25125050, "available": 25100000}} | _DECISION
)
_FOUR_EYES = problems(
    403,
    {
        "four_eyes_required": "A second admin must decide this: you asked for it, or you own the account.",
        "forbidden": "Only an admin may do this.",
    },
)


@app.post(
    "/v1/admin/deposits",
    responses={
        **success(
            201, "The deposit, booked against the bank's settlement account.", _BOOKED_EXAMPLE, model=Deposit
        ),
        **success(
            202,
            "The amount is above the approval threshold: the deposit waits, moving no money, until a "
            "second admin approves or rejects it.",
            _PENDING_EXAMPLE,
            model=Deposit,
        ),
        **_FOUR_EYES,
        **problems(404, {"not_found": "No such account."}),
        **problems(422, {"currency_not_supported": "This currency is not enabled, or is not the account's."}),
    },
)
@tracer.capture_method(capture_response=False)
def deposit(body: DepositRequest) -> Response[str]:
    caller = principal(app)
    bind_log_keys(account_id=body.account_id)
    service = accounts_service()
    # The deposit id is derived from this admin's key on this route: should the idempotency record be
    # lost (or expire) a repeat still names the deposit already booked and moves no money twice.
    request_id = idempotency_scope(
        "POST", "/v1/admin/deposits", caller.user_id, idempotency_key(app.current_event.raw_event)
    )

    def operation() -> Outcome:
        view = service.deposit(
            caller.user_id,
            body.account_id,
            body.amount,
            body.currency,
            body.reference,
            caller.correlation_id,
            request_id=request_id,
        )
        return Outcome(status_code=201 if view.status == DepositStatus.BOOKED else 202, body=view.to_json())

    return idempotent_response(app, user_id=caller.user_id, payload=body, operation=operation)


@app.get(
    "/v1/admin/deposits",
    responses={
        **success(
            200,
            "A page of the deposits waiting for a second admin, oldest first.",
            {"items": [_PENDING_EXAMPLE], "next_cursor": None},
            model=DepositPage,
        ),
        **problems(422, {"invalid_cursor": "The cursor is not valid."}),
    },
)
@tracer.capture_method(capture_response=False)
def pending_deposits(
    status: Annotated[DepositStatus, Query(description="Only PENDING_APPROVAL is listed.")],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(min_length=1, max_length=512)] = None,
) -> Response[dict[str, Any]]:
    if status is not DepositStatus.PENDING_APPROVAL:
        raise ValidationFailed(
            "Only deposits waiting for approval are listed.",
            errors=[FieldError("status", "must be PENDING_APPROVAL")],
        )
    views, next_cursor = accounts_service().pending_deposits(limit=limit, cursor=cursor)
    return no_store_json({"items": [view.to_json() for view in views], "next_cursor": next_cursor})


_DECIDED = {
    **_FOUR_EYES,
    **problems(404, {"deposit_not_found": "No deposit has this id."}),
    **problems(409, {"deposit_not_pending": "The deposit was already decided otherwise."}),
}


@app.post(
    "/v1/admin/deposits/<deposit_id>/approve",
    responses={
        **success(200, "The deposit, now BOOKED: the money has moved.", _DECIDED_EXAMPLE, model=Deposit),
        **_DECIDED,
    },
)
@tracer.capture_method(capture_response=False)
def approve(deposit_id: str, body: DepositDecision) -> Response[dict[str, Any]]:
    return _decide(deposit_id, body, approve=True)


@app.post(
    "/v1/admin/deposits/<deposit_id>/reject",
    responses={
        **success(
            200,
            "The deposit, now REJECTED: no money moved.",
            _PENDING_EXAMPLE | _DECISION | {"status": "REJECTED"},
            model=Deposit,
        ),
        **_DECIDED,
    },
)
@tracer.capture_method(capture_response=False)
def reject(deposit_id: str, body: DepositDecision) -> Response[dict[str, Any]]:
    return _decide(deposit_id, body, approve=False)


def _decide(deposit_id: str, body: DepositDecision, *, approve: bool) -> Response[dict[str, Any]]:
    caller = principal(app)
    view = accounts_service().decide_deposit(
        caller.user_id,
        deposit_id,
        approve=approve,
        reason=body.reason,
        correlation_id=caller.correlation_id,
    )
    return no_store_json(view.to_json())


handler = api_handler(app)

"""POST /v1/admin/deposits: money in from the bank's settlement account (admin; Idempotency-Key required)."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AfterValidator, Field, StrictInt

from vaultpay.accounts.model import MAX_AMOUNT, MIN_AMOUNT
from vaultpay.shared.bootstrap import accounts_service
from vaultpay.shared.errors import Forbidden
from vaultpay.shared.http import RequestModel, make_resolver, principal
from vaultpay.shared.idempotency import Outcome, idempotency_key, idempotency_scope, idempotent_response
from vaultpay.shared.observability import bind_log_keys, get_logger, get_tracer
from vaultpay.shared.openapi import problems, success

logger = get_logger()
tracer = get_tracer()
app = make_resolver()


def _printable(value: str) -> str:
    if not value.isprintable() or not value.strip():
        raise ValueError("must be printable text, not blank")
    return value


class DepositRequest(RequestModel):
    """The whole body. StrictInt: a float, a string or a boolean amount is a 422, never coerced."""

    account_id: Annotated[str, Field(pattern=r"^acc_[0-9a-f]{32}$")]
    amount: Annotated[StrictInt, Field(ge=MIN_AMOUNT, le=MAX_AMOUNT)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    reference: Annotated[str, Field(min_length=1, max_length=140), AfterValidator(_printable)]


@app.post(
    "/v1/admin/deposits",
    responses={
        **success(
            201,
            "The deposit, booked against the bank's settlement account.",
            {
                "deposit_id": "dep_4f6a",
                "account_id": "acc_5b0f0c7e9d2a4c61b3e8f7a6d5c4b3a2",
                "amount": 500000,
                "balance": {"ledger": 625050, "available": 600000},
            },
        ),
        **problems(404, {"not_found": "No such account."}),
        **problems(422, {"currency_not_supported": "This currency is not enabled, or is not the account's."}),
    },
)
@tracer.capture_method(capture_response=False)
def deposit(body: DepositRequest) -> Response[str]:
    caller = principal(app)
    # The authorizer's /v1/admin rule already refuses every other role; this keeps the function safe on
    # its own should a route ever be wired without that rule.
    if caller.role != "admin":
        raise Forbidden("Only an admin may make deposits.", code="forbidden")
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
        return Outcome(status_code=201, body=view.to_json())

    return idempotent_response(app, user_id=caller.user_id, payload=body, operation=operation)


@logger.inject_lambda_context(clear_state=True, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

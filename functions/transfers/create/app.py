"""POST /v1/transfers: requests a transfer and starts its saga; 202 with it (Idempotency-Key required)."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from pydantic import AfterValidator, Field, StrictInt

from vaultpay.bootstrap.transfers import transfers_service
from vaultpay.shared.http import RequestModel, api_handler, make_resolver, principal
from vaultpay.shared.idempotency import Outcome, idempotency_key, idempotency_scope, idempotent_response
from vaultpay.shared.kernel import MAX_AMOUNT, MIN_AMOUNT
from vaultpay.shared.observability import get_tracer
from vaultpay.shared.openapi import problems, success
from vaultpay.transfers.model import MAX_DESCRIPTION
from vaultpay.transfers.responses import Transfer

tracer = get_tracer()
app = make_resolver()

ROUTE = "/v1/transfers"


def _printable(value: str | None) -> str | None:
    if value is not None and not value.isprintable():
        raise ValueError("must be printable text")
    return value


class TransferRequest(RequestModel):
    """The whole body. StrictInt: a float, a string or a boolean amount is a 422, never coerced.

    The source id and the destination number are checked by accounts (404 `account_not_found`, 422
    `invalid_account_number` / `destination_not_found`), not by shape here, so a malformed id answers the
    same 404 as someone else's account.
    """

    source_account_id: Annotated[str, Field(min_length=1, max_length=64)]
    destination_account_number: Annotated[str, Field(min_length=1, max_length=34)]
    amount: Annotated[StrictInt, Field(ge=MIN_AMOUNT, le=MAX_AMOUNT)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    description: Annotated[str | None, Field(max_length=MAX_DESCRIPTION), AfterValidator(_printable)] = None


EXAMPLE = {
    "transfer_id": "tr_9c1f0e6b2d4a4f0e8b7c6d5e4f3a2b1c",
    "status": "PENDING",
    "source_account_id": "acc_5b0f0c7e9d2a4c61b3e8f7a6d5c4b3a2",
    "destination_account_number_masked": "XXXXXXXX4321",
    "amount": 250000,
    "currency": "INR",
    "description": "rent",
    "fraud": None,
    "failure_reason": None,
    "created_at": "2026-11-28T12:00:00.000Z",
    "updated_at": "2026-11-28T12:00:00.000Z",
    "steps": [{"name": "initiated", "status": "PENDING", "at": "2026-11-28T12:00:00.000Z"}],
}


@app.post(
    ROUTE,
    responses={
        **success(
            202,
            "The transfer, accepted: its saga runs; GET it to follow its status.",
            EXAMPLE,
            model=Transfer,
        ),
        **problems(404, {"account_not_found": "The source account does not exist or is not yours."}),
        **problems(409, {"account_not_active": "The source or the destination account may not move money."}),
        **problems(
            422,
            {
                "destination_not_found": "No account has this account number.",
                "same_account": "The destination is the source account.",
                "currency_mismatch": "The accounts do not hold this currency.",
                "invalid_account_number": "The account number's check digits do not match.",
                "currency_not_supported": "This currency is not enabled.",
            },
        ),
        **problems(429, {"rate_limited": "Too many transfers; retry after the Retry-After interval."}),
    },
)
@tracer.capture_method(capture_response=False)
def create_transfer(body: TransferRequest) -> Response[str]:
    caller = principal(app)
    service = transfers_service()
    # The transfer id is derived from this user's key on this route: should the idempotency record be lost
    # (or expire) a repeat still names the transfer already written, whose saga runs once.
    scope = idempotency_scope("POST", ROUTE, caller.user_id, idempotency_key(app.current_event.raw_event))

    def operation() -> Outcome:
        view = service.create(
            user_id=caller.user_id,
            device_id=caller.device_id,
            correlation_id=caller.correlation_id,
            request_scope=scope,
            source_account_id=body.source_account_id,
            destination_account_number=body.destination_account_number,
            amount=body.amount,
            currency=body.currency,
            description=body.description,
        )
        return Outcome(status_code=202, body=view)

    return idempotent_response(app, user_id=caller.user_id, payload=body, operation=operation)


# The request holds a full account number: the event is never logged or traced.
handler = api_handler(app)

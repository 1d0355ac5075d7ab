"""POST /v1/accounts: opens a SAVINGS or CURRENT account for the caller (Idempotency-Key required)."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from pydantic import Field

from vaultpay.accounts.responses import Account
from vaultpay.bootstrap.accounts import accounts_service
from vaultpay.shared.http import RequestModel, api_handler, make_resolver, principal
from vaultpay.shared.idempotency import Outcome, idempotent_response
from vaultpay.shared.observability import get_tracer
from vaultpay.shared.openapi import problems, success

tracer = get_tracer()
app = make_resolver()


class OpenAccountRequest(RequestModel):
    """The whole body: anything else (an owner, a balance, a number) is a 422."""

    type: Literal["SAVINGS", "CURRENT"]
    # The shape only; whether the currency is enabled is the service's rule (422 currency_not_supported).
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


@app.post(
    "/v1/accounts",
    responses={
        **success(
            201,
            "The new account, with its full account number.",
            {
                "account_id": "acc_5b0f0c7e9d2a4c61b3e8f7a6d5c4b3a2",
                "account_number": "400012345678",
                "account_number_masked": "XXXXXXXX5678",
                "type": "SAVINGS",
                "currency": "INR",
                "status": "ACTIVE",
                "balance": {"ledger": 125050, "available": 100000},
                "created_at": "2026-11-28T10:15:30.123Z",
            },
            model=Account,
        ),
        **problems(422, {"currency_not_supported": "This currency is not enabled."}),
    },
)
@tracer.capture_method(capture_response=False)
def open_account(body: OpenAccountRequest) -> Response[str]:
    caller = principal(app)
    service = accounts_service()

    def operation() -> Outcome:
        view = service.open_account(caller.user_id, body.type, body.currency, caller.correlation_id)
        return Outcome(status_code=201, body=view.to_json())

    def restore(stored: Mapping[str, Any]) -> dict[str, Any]:
        # The full number is never kept in the idempotency table (the accounts table holds it encrypted):
        # a replay decrypts it again from the account, which is the caller's by construction of the key.
        number = service.get_account(caller.user_id, str(stored["account_id"])).account_number
        return {"account_id": stored["account_id"], "account_number": number, **stored}

    return idempotent_response(
        app,
        user_id=caller.user_id,
        payload=body,
        operation=operation,
        unstored=("account_number",),
        restore=restore,
    )


# The response holds the full account number: it is never logged or traced.
handler = api_handler(app)

"""GET /v1/accounts/{account_id}: one of the caller's accounts, with its full account number (authorizer)."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Any

from aws_lambda_powertools.event_handler import Response

from vaultpay.accounts.responses import Account
from vaultpay.bootstrap.accounts import accounts_service
from vaultpay.shared.http import api_handler, make_resolver, no_store_json, principal
from vaultpay.shared.observability import get_tracer
from vaultpay.shared.openapi import success

tracer = get_tracer()
app = make_resolver()


@app.get(
    "/v1/accounts/<account_id>",
    responses=success(
        200,
        "The account, with its full account number (owner only).",
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
)
@tracer.capture_method(capture_response=False)
def get_account(account_id: str) -> Response[dict[str, Any]]:
    caller = principal(app)
    # Malformed, someone else's or missing: the service answers all three with the same 404, so an id
    # reveals nothing about other users' accounts.
    view = accounts_service().get_account(caller.user_id, account_id)
    return no_store_json(view.to_json())


# The response holds the full account number: it is never logged or traced.
handler = api_handler(app)

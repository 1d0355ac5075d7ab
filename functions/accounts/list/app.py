"""GET /v1/accounts: the caller's accounts, oldest first, account numbers masked (authorizer)."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from vaultpay.accounts.responses import AccountPage
from vaultpay.bootstrap.accounts import accounts_service
from vaultpay.shared.http import api_handler, make_resolver, no_store_json, principal
from vaultpay.shared.observability import get_tracer
from vaultpay.shared.openapi import problems, success

tracer = get_tracer()
app = make_resolver()


@app.get(
    "/v1/accounts",
    responses={
        **success(
            200,
            "A page of the caller's accounts, numbers masked.",
            {
                "items": [
                    {
                        "account_id": "acc_5b0f0c7e9d2a4c61b3e8f7a6d5c4b3a2",
                        "account_number_masked": "XXXXXXXX5678",
                        "type": "SAVINGS",
                        "currency": "INR",
                        "status": "ACTIVE",
                        "balance": {"ledger": 125050, "available": 100000},
                        "created_at": "2026-11-28T10:15:30.123Z",
                    }
                ],
                "next_cursor": None,
            },
            model=AccountPage,
        ),
        **problems(422, {"invalid_cursor": "The cursor is not valid."}),
    },
)
@tracer.capture_method(capture_response=False)
def list_accounts(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(min_length=1, max_length=512)] = None,
) -> Response[dict[str, Any]]:
    # Whose accounts comes only from the authorizer's context; a cursor is resumed inside them only.
    page = accounts_service().list_accounts(principal(app).user_id, limit=limit, cursor=cursor)
    return no_store_json(page.to_json())


handler = api_handler(app)

"""GET /v1/accounts/{account_id}/statement: the entries of one of the caller's accounts, newest first."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from vaultpay.bootstrap.accounts import accounts_service
from vaultpay.shared.http import api_handler, make_resolver, no_store_json, principal
from vaultpay.shared.observability import get_tracer
from vaultpay.shared.openapi import Amount, NextCursor, ResponseModel, Timestamp, problems, success

tracer = get_tracer()
app = make_resolver()


class StatementEntry(ResponseModel):
    """One movement of the account (docs/accounts-contract.md "HTTP")."""

    entry_id: str
    transfer_id: str | None = Field(description="The transfer that moved the money; null for a deposit.")
    kind: Literal["HOLD", "RELEASE", "DEBIT", "CREDIT"]
    amount: Amount
    balance_after: int = Field(
        description="The ledger balance after it (HOLD and RELEASE leave it as it was)."
    )
    available_after: int = Field(description="The available balance after it.")
    description: str
    created_at: Timestamp
    deposit_id: str | SkipJsonSchema[None] = Field(default=None, description="Only on a deposit's entry.")


class StatementPage(ResponseModel):
    """A page of an account's entries, newest first."""

    items: list[StatementEntry]
    next_cursor: NextCursor


@app.get(
    "/v1/accounts/<account_id>/statement",
    responses={
        **success(
            200,
            "A page of the account's entries, newest first.",
            {
                "items": [
                    {
                        "entry_id": "ent_91c2",
                        "transfer_id": "trf_7d3e",
                        "kind": "DEBIT",
                        "amount": 25000,
                        "balance_after": 100050,
                        "available_after": 100050,
                        "description": "Rent",
                        "created_at": "2026-11-28T10:15:30.123Z",
                    }
                ],
                "next_cursor": None,
            },
            model=StatementPage,
        ),
        **problems(422, {"invalid_cursor": "The cursor is not valid."}),
    },
)
@tracer.capture_method(capture_response=False)
def statement(
    account_id: str,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(min_length=1, max_length=512)] = None,
) -> Response[dict[str, Any]]:
    caller = principal(app)
    # Malformed, someone else's or missing: the service answers all three with the same 404, so an id
    # reveals nothing about other users' accounts.
    page = accounts_service().statement(caller.user_id, account_id, limit=limit, cursor=cursor)
    return no_store_json(page.to_json())


handler = api_handler(app)

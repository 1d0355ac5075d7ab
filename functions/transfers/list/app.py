"""GET /v1/transfers?account_id=: transfers sent from one of the caller's accounts, newest first."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from vaultpay.bootstrap.transfers import transfers_service
from vaultpay.shared.http import api_handler, make_resolver, no_store_json, principal
from vaultpay.shared.observability import get_tracer
from vaultpay.shared.openapi import problems, success
from vaultpay.transfers.responses import TransferPage

tracer = get_tracer()
app = make_resolver()


@app.get(
    "/v1/transfers",
    responses={
        **success(
            200,
            "A page of the transfers sent from the account, newest first.",
            {
                "items": [
                    {
                        "transfer_id": "tr_9c1f0e6b2d4a4f0e8b7c6d5e4f3a2b1c",
                        "status": "PROCESSING",
                        "source_account_id": "acc_5b0f0c7e9d2a4c61b3e8f7a6d5c4b3a2",
                        "destination_account_number_masked": "XXXXXXXX4321",
                        "amount": 250000,
                        "currency": "INR",
                        "description": None,
                        "fraud": None,
                        "failure_reason": None,
                        "created_at": "2026-11-28T12:00:00.000Z",
                        "updated_at": "2026-11-28T12:00:00.500Z",
                        "steps": [
                            {"name": "initiated", "status": "PENDING", "at": "2026-11-28T12:00:00.000Z"},
                            {"name": "processing", "status": "PROCESSING", "at": "2026-11-28T12:00:00.500Z"},
                        ],
                    }
                ],
                "next_cursor": None,
            },
            model=TransferPage,
        ),
        **problems(404, {"account_not_found": "The account does not exist or is not yours."}),
        **problems(422, {"invalid_cursor": "The cursor is not valid."}),
    },
)
@tracer.capture_method(capture_response=False)
def list_transfers(
    account_id: Annotated[str, Query(min_length=1, max_length=64)],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(min_length=1, max_length=512)] = None,
) -> Response[dict[str, Any]]:
    # Whose account comes only from the authorizer's context: any other account is a 404.
    page = transfers_service().list_for_account(
        principal(app).user_id, account_id, limit=limit, cursor=cursor
    )
    return no_store_json(page.to_json())


handler = api_handler(app)

"""GET /v1/transfers/{transfer_id}: one of the caller's transfers, with its status and steps (authorizer)."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Any

from aws_lambda_powertools.event_handler import Response

from vaultpay.bootstrap.transfers import transfers_service
from vaultpay.shared.http import api_handler, make_resolver, no_store_json, principal
from vaultpay.shared.observability import get_tracer
from vaultpay.shared.openapi import problems, success
from vaultpay.transfers.responses import Transfer

tracer = get_tracer()
app = make_resolver()


@app.get(
    "/v1/transfers/<transfer_id>",
    responses={
        **success(
            200,
            "The transfer (its owner only).",
            {
                "transfer_id": "tr_9c1f0e6b2d4a4f0e8b7c6d5e4f3a2b1c",
                "status": "COMPLETED",
                "source_account_id": "acc_5b0f0c7e9d2a4c61b3e8f7a6d5c4b3a2",
                "destination_account_number_masked": "XXXXXXXX4321",
                "amount": 250000,
                "currency": "INR",
                "description": "rent",
                "fraud": {"decision": "APPROVE", "reasons": []},
                "failure_reason": None,
                "created_at": "2026-11-28T12:00:00.000Z",
                "updated_at": "2026-11-28T12:00:02.000Z",
                "steps": [
                    {"name": "initiated", "status": "PENDING", "at": "2026-11-28T12:00:00.000Z"},
                    {"name": "processing", "status": "PROCESSING", "at": "2026-11-28T12:00:00.500Z"},
                    {"name": "approved", "status": "PROCESSING", "at": "2026-11-28T12:00:01.200Z"},
                    {"name": "completed", "status": "COMPLETED", "at": "2026-11-28T12:00:02.000Z"},
                ],
            },
            model=Transfer,
        ),
        **problems(404, {"transfer_not_found": "No such transfer."}),
    },
)
@tracer.capture_method(capture_response=False)
def get_transfer(transfer_id: str) -> Response[dict[str, Any]]:
    caller = principal(app)
    # Malformed, someone else's or missing: the same 404, so an id reveals nothing about other users.
    view = transfers_service().get(caller.user_id, transfer_id)
    return no_store_json(view)


handler = api_handler(app)

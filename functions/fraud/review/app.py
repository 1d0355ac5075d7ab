"""POST /v1/admin/fraud/reviews/{transfer_id}: an admin approves or declines a held transfer (admin)."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
import json
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types

from vaultpay.bootstrap.fraud import deciding_review_service
from vaultpay.shared.errors import BadRequest
from vaultpay.shared.http import api_handler, make_resolver, principal
from vaultpay.shared.observability import get_tracer
from vaultpay.shared.openapi import problems, success

tracer = get_tracer()
app = make_resolver()

# The body is validated by the service after the role check (request validation would run before the
# handler, and an admin-only route answers a customer 403 without first explaining its body), so its schema
# is given to the OpenAPI document here.
REVIEW_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "title": "ReviewDecision",
                "additionalProperties": False,
                "required": ["decision", "note"],
                "properties": {
                    "decision": {"type": "string", "enum": ["APPROVE", "DECLINE"]},
                    "note": {"type": "string", "minLength": 1, "maxLength": 500},
                },
            },
            "examples": {"approve": {"value": {"decision": "APPROVE", "note": "Called the customer"}}},
        }
    },
}


@app.post(
    "/v1/admin/fraud/reviews/<transfer_id>",
    openapi_extensions={"requestBody": REVIEW_BODY},
    responses={
        **success(
            200,
            "The transfer, as the saga now holds it (it resumes with the decision).",
            {
                "transfer_id": "tr_0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                "status": "IN_REVIEW",
                "source_account_id": "acc_5b0f0c7e9d2a4c61b3e8f7a6d5c4b3a2",
                "destination_account_number_masked": "XXXXXXXX5678",
                "amount": 25000000,
                "currency": "INR",
                "description": "rent",
                "fraud": {"decision": "REVIEW", "score": 50, "reasons": ["HIGH_AMOUNT"]},
                "failure_reason": None,
                "created_at": "2026-11-28T10:15:30.123Z",
                "updated_at": "2026-11-28T10:20:00.000Z",
                "steps": [{"name": "in_review", "status": "done", "at": "2026-11-28T10:15:31.000Z"}],
            },
        ),
        **problems(404, {"review_not_found": "No review is waiting for this transfer."}),
        **problems(
            409,
            {
                "review_already_decided": "This review has already been decided.",
                "review_closed": "The transfer no longer waits for a decision (its review timed out).",
            },
        ),
    },
)
@tracer.capture_method(capture_response=False)
def decide_review(transfer_id: str) -> Response[dict[str, Any]]:
    caller = principal(app)
    view = deciding_review_service().decide(
        role=caller.role,
        reviewer=caller.user_id,
        transfer_id=transfer_id,
        body=_json_body(caller.role),
        correlation_id=caller.correlation_id,
    )
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=view,
        headers={"Cache-Control": "no-store"},
    )


def _json_body(role: str) -> Any:
    raw = app.current_event.body
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        if role != "admin":
            return None  # the service answers 403 before it looks at the body
        raise BadRequest("The request body is not valid JSON.", code="malformed_json") from None


handler = api_handler(app)

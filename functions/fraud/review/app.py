"""POST /v1/admin/fraud/reviews/{transfer_id}: an admin approves or declines a held transfer (admin)."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from pydantic import AfterValidator, ConfigDict, Field, StrictStr

from vaultpay.bootstrap.fraud import deciding_review_service
from vaultpay.shared.http import (
    RequestModel,
    api_handler,
    in_contract_words,
    make_admin_resolver,
    no_store_json,
    principal,
)
from vaultpay.shared.observability import get_tracer
from vaultpay.shared.openapi import problems, success
from vaultpay.transfers.responses import ScoredTransfer

tracer = get_tracer()
# Admin-only: a caller who is not an admin is answered 403 before the body is even parsed.
app = make_admin_resolver()


def _printable_note(value: str) -> str:
    # A note is read by people in the admin console and the audit log: no control characters but line
    # breaks and tabs, and never only blanks.
    if not value.strip() or not all(ch.isprintable() or ch in "\n\t" for ch in value):
        raise ValueError("must be printable text, not blank")
    return value


class ReviewDecision(RequestModel):
    """The admin's decision and why: the note is kept in the review, the saga's input and the audit log."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"decision": "APPROVE", "note": "Called the customer"}]}
    )

    decision: Annotated[Literal["APPROVE", "DECLINE"], in_contract_words("must be APPROVE or DECLINE")]
    note: Annotated[
        StrictStr,
        Field(min_length=1, max_length=500),
        in_contract_words("must be text of 1..500 characters"),
        AfterValidator(_printable_note),
    ]


@app.post(
    "/v1/admin/fraud/reviews/<transfer_id>",
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
                "steps": [{"name": "in_review", "status": "IN_REVIEW", "at": "2026-11-28T10:15:31.000Z"}],
            },
            model=ScoredTransfer,
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
def decide_review(transfer_id: str, body: ReviewDecision) -> Response[dict[str, Any]]:
    caller = principal(app)
    view = deciding_review_service().decide(
        role=caller.role,
        reviewer=caller.user_id,
        transfer_id=transfer_id,
        decision=body.decision,
        note=body.note,
        correlation_id=caller.correlation_id,
    )
    return no_store_json(view)


handler = api_handler(app)

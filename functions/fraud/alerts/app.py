"""GET /v1/admin/fraud/alerts: decisions other than APPROVE, newest first, with their reviews (admin)."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import Field

from vaultpay.bootstrap.fraud import review_service
from vaultpay.fraud.model import MAX_SCORE
from vaultpay.fraud.service import DEFAULT_LIMIT, MAX_LIMIT
from vaultpay.shared.http import api_handler, make_admin_resolver, no_store_json, principal
from vaultpay.shared.observability import get_tracer
from vaultpay.shared.openapi import Amount, Currency, NextCursor, ResponseModel, Timestamp, problems, success

tracer = get_tracer()
# Admin-only: a caller who is not an admin is answered 403 before any query is looked at.
app = make_admin_resolver()

Score = Annotated[int, Field(ge=0, le=MAX_SCORE)]


class RuleContribution(ResponseModel):
    """One rule that fired: its score and a short reason (never PII or an account number)."""

    rule: str = Field(pattern="^[A-Z][A-Z0-9_]*$")
    score: Score
    reason: str


class Review(ResponseModel):
    """The manual review of a REVIEW decision: WAITING for an admin, DECIDED, or CLOSED when the saga stopped
    waiting first."""

    status: Literal["WAITING", "DECIDED", "CLOSED"]
    decision: Literal["APPROVE", "DECLINE"] | None
    reviewer: str | None
    note: str | None
    decided_at: Timestamp | None


class FraudAlert(ResponseModel):
    """A fraud decision other than APPROVE, with its review (null for a DECLINE, which has none)."""

    transfer_id: str
    user_id: str
    decision: Literal["REVIEW", "DECLINE"]
    score: Score
    reasons: list[str]
    rules: list[RuleContribution]
    amount: Amount
    currency: Currency
    review: Review | None
    created_at: Timestamp


class FraudAlertPage(ResponseModel):
    """A page of fraud alerts, newest first."""

    items: list[FraudAlert]
    next_cursor: NextCursor


# Every parameter arrives as an unconstrained string and is validated by the service, whose messages
# (`must be REVIEW or DECLINE`, `must be an integer in 1..100`) are the contract's.
@app.get(
    "/v1/admin/fraud/alerts",
    responses={
        **success(
            200,
            "A page of fraud alerts (decisions other than APPROVE), newest first.",
            {
                "items": [
                    {
                        "transfer_id": "tr_0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                        "user_id": "usr_7c1f",
                        "decision": "REVIEW",
                        "score": 50,
                        "reasons": ["HIGH_AMOUNT"],
                        "rules": [
                            {
                                "rule": "HIGH_AMOUNT",
                                "score": 50,
                                "reason": "amount at or above the review limit",
                            }
                        ],
                        "amount": 25000000,
                        "currency": "INR",
                        "review": {
                            "status": "WAITING",
                            "decision": None,
                            "reviewer": None,
                            "note": None,
                            "decided_at": None,
                        },
                        "created_at": "2026-11-28T10:15:31.000Z",
                    }
                ],
                "next_cursor": None,
            },
            model=FraudAlertPage,
        ),
        **problems(422, {"invalid_cursor": "The cursor is not valid."}),
    },
)
@tracer.capture_method(capture_response=False)
def list_alerts(
    decision: Annotated[str | None, Query(description="REVIEW or DECLINE; both when absent")] = None,
    limit: Annotated[str | None, Query(description=f"1..{MAX_LIMIT}, default {DEFAULT_LIMIT}")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Response[dict[str, Any]]:
    page = review_service().alerts(role=principal(app).role, decision=decision, limit=limit, cursor=cursor)
    return no_store_json(page.to_json())


handler = api_handler(app)

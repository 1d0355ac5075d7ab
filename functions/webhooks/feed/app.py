"""GET /v1/events: the caller's own events, oldest first, as their webhooks receive them (catch-up)."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from vaultpay.bootstrap.webhooks import webhooks_service
from vaultpay.shared.http import api_handler, make_resolver, no_store_json, principal
from vaultpay.shared.observability import get_tracer
from vaultpay.shared.openapi import problems, success
from vaultpay.webhooks.responses import EventPage

tracer = get_tracer()
app = make_resolver()

EVENT_EXAMPLE = {
    "specversion": "1.0",
    "id": "01938a6f-2b7c-7d1e-8f9a-0b1c2d3e4f50",
    "source": "/vaultpay/transfers",
    "type": "vaultpay.transaction.completed",
    "time": "2026-11-28T10:15:31.042Z",
    "subject": "tr_0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "datacontenttype": "application/json",
    "correlationid": "3f2b8c1e-5a4d-4c7b-9e0f-1a2b3c4d5e6f",
    "data": {
        "transfer_id": "tr_0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "destination_account_id": "acc_5b0f0c7e9d2a4c61b3e8f7a6d5c4b3a2",
        "amount": 125050,
        "currency": "INR",
    },
}


@app.get(
    "/v1/events",
    responses={
        **success(
            200,
            "A page of the caller's own events, oldest first.",
            {"items": [EVENT_EXAMPLE], "next_cursor": EVENT_EXAMPLE["id"]},
            model=EventPage,
        ),
        **problems(422, {"invalid_cursor": "The cursor is not valid."}),
    },
)
@tracer.capture_method(capture_response=False)
def list_events(
    after: Annotated[
        str | None, Query(min_length=1, max_length=64, description="next_cursor of a page")
    ] = None,
    types: Annotated[
        str | None, Query(min_length=1, max_length=500, description="comma-separated type patterns")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response[dict[str, Any]]:
    page = webhooks_service().feed(principal(app).user_id, after=after, types=types, limit=limit)
    return no_store_json(page)


handler = api_handler(app)

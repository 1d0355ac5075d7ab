"""/v1/webhooks/{webhook_id}/deliveries: a webhook's deliveries, newest first, and redelivering one."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from vaultpay.bootstrap.webhooks import webhooks_service
from vaultpay.shared.http import api_handler, make_resolver, no_store_json, principal
from vaultpay.shared.observability import get_tracer
from vaultpay.shared.openapi import problems, success
from vaultpay.webhooks.responses import DELIVERY_EXAMPLE, WebhookDelivery, WebhookDeliveryPage

tracer = get_tracer()
app = make_resolver()


@app.get(
    "/v1/webhooks/<webhook_id>/deliveries",
    responses={
        **success(
            200,
            "A page of the webhook's deliveries, newest first.",
            {"items": [DELIVERY_EXAMPLE], "next_cursor": None},
            model=WebhookDeliveryPage,
        ),
        **problems(404, {"webhook_not_found": "No such webhook."}),
        **problems(422, {"invalid_cursor": "The cursor is not valid."}),
    },
)
@tracer.capture_method(capture_response=False)
def list_deliveries(
    webhook_id: str,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(min_length=1, max_length=512)] = None,
) -> Response[dict[str, Any]]:
    page = webhooks_service().deliveries(principal(app).user_id, webhook_id, limit=limit, cursor=cursor)
    return no_store_json(page)


@app.post(
    "/v1/webhooks/<webhook_id>/deliveries/<delivery_id>/redeliver",
    responses={
        **success(
            202,
            "The delivery is PENDING again and is sent within the minute, with a fresh retry window.",
            {**DELIVERY_EXAMPLE, "next_attempt_at": "2026-11-28T10:20:00.000Z"},
            model=WebhookDelivery,
        ),
        **problems(
            404,
            {
                "webhook_not_found": "No such webhook.",
                "delivery_not_found": "No such delivery of this webhook.",
            },
        ),
        **problems(
            409, {"webhook_disabled": "The webhook is disabled; register its URL again once it answers."}
        ),
    },
)
@tracer.capture_method(capture_response=False)
def redeliver(webhook_id: str, delivery_id: str) -> Response[dict[str, Any]]:
    again = webhooks_service().redeliver(principal(app).user_id, webhook_id, delivery_id)
    return no_store_json(again, status_code=202)


handler = api_handler(app)

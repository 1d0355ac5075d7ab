"""/v1/webhooks: register, list, read and delete the caller's webhook endpoints, and rotate a secret."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from pydantic import Field

from vaultpay.bootstrap.webhooks import webhooks_service
from vaultpay.shared.http import RequestModel, api_handler, make_resolver, no_store_json, principal
from vaultpay.shared.observability import get_tracer
from vaultpay.shared.openapi import problems, success
from vaultpay.webhooks.responses import (
    SECRET_EXAMPLE,
    WEBHOOK_EXAMPLE,
    Webhook,
    WebhookPage,
    WebhookWithSecret,
)

tracer = get_tracer()
app = make_resolver()

NOT_FOUND = problems(404, {"webhook_not_found": "No such webhook."})


class RegisterWebhookRequest(RequestModel):
    """The whole body: the URL's rules and the patterns' are the service's (422 with the field named)."""

    url: Annotated[str, Field(min_length=1, max_length=2048)]
    events: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=100)]], Field(min_length=1, max_length=20)
    ]
    description: Annotated[str, Field(min_length=1, max_length=200)] | None = None


@app.post(
    "/v1/webhooks",
    responses={
        **success(
            201,
            "The new webhook with its signing secret, shown this once.",
            {**WEBHOOK_EXAMPLE, "secret": SECRET_EXAMPLE},
            model=WebhookWithSecret,
        ),
        **problems(409, {"webhook_limit_reached": "A user may have at most 10 webhooks; delete one first."}),
        **problems(
            422,
            {
                "webhook_url_not_allowed": "The webhook URL is not allowed: must use https.",
                "validation_failed": "The event type patterns are not valid.",
            },
        ),
    },
)
@tracer.capture_method(capture_response=False)
def register(body: RegisterWebhookRequest) -> Response[dict[str, Any]]:
    created = webhooks_service().create(principal(app).user_id, body.url, body.events, body.description)
    return no_store_json(created.to_json(), status_code=201)


@app.get(
    "/v1/webhooks",
    responses=success(
        200,
        "The caller's webhooks, oldest first.",
        {"items": [WEBHOOK_EXAMPLE], "next_cursor": None},
        model=WebhookPage,
    ),
)
@tracer.capture_method(capture_response=False)
def list_webhooks() -> Response[dict[str, Any]]:
    return no_store_json(webhooks_service().list(principal(app).user_id))


@app.get(
    "/v1/webhooks/<webhook_id>",
    responses={
        **success(200, "The webhook (never its secret).", WEBHOOK_EXAMPLE, model=Webhook),
        **NOT_FOUND,
    },
)
@tracer.capture_method(capture_response=False)
def get_webhook(webhook_id: str) -> Response[dict[str, Any]]:
    # Malformed, someone else's or missing: the same 404.
    return no_store_json(webhooks_service().get(principal(app).user_id, webhook_id).view())


@app.delete(
    "/v1/webhooks/<webhook_id>",
    responses={**success(204, "The webhook is deleted; its pending deliveries are not sent."), **NOT_FOUND},
)
@tracer.capture_method(capture_response=False)
def delete_webhook(webhook_id: str) -> Response[None]:
    webhooks_service().delete(principal(app).user_id, webhook_id)
    return Response(status_code=204, body=None, headers={"Cache-Control": "no-store"})


@app.post(
    "/v1/webhooks/<webhook_id>/rotate-secret",
    responses={
        **success(
            200,
            "A new signing secret, shown this once; the old one keeps signing beside it for 24 hours.",
            {**WEBHOOK_EXAMPLE, "secret": SECRET_EXAMPLE},
            model=WebhookWithSecret,
        ),
        **NOT_FOUND,
    },
)
@tracer.capture_method(capture_response=False)
def rotate_secret(webhook_id: str) -> Response[dict[str, Any]]:
    rotated = webhooks_service().rotate_secret(principal(app).user_id, webhook_id)
    return no_store_json(rotated.to_json())


# Creation and rotation answer a signing secret: responses are never logged or traced.
handler = api_handler(app)

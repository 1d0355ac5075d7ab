"""The response models of the webhooks API: the documented shapes of the views' answers."""

from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from vaultpay.shared.openapi import NextCursor, ResponseModel, Timestamp

WebhookId = Annotated[str, Field(pattern="^wh_[0-9a-f]{32}$")]
DeliveryId = Annotated[str, Field(pattern="^dlv_[0-9a-f]{32}$")]

WEBHOOK_EXAMPLE: dict[str, Any] = {
    "webhook_id": "wh_6c1d2e3f4a5b4c6d8e9f0a1b2c3d4e5f",
    "url": "https://hooks.example.com/vaultpay",
    "events": ["vaultpay.transaction.*"],
    "description": "Payments service",
    "status": "ENABLED",
    "created_at": "2026-11-28T10:15:30.123Z",
}
SECRET_EXAMPLE = "whsec_3q2-7wEXAMPLEb2f0Zt1yQ9Xc4mV8nK5pL0sR6uT2wY7z"  # noqa: S105 - a documentation example
DELIVERY_EXAMPLE: dict[str, Any] = {
    "delivery_id": "dlv_01938a6f2b7c7d1e8f9a0b1c2d3e4f50",
    "event_id": "01938a6f-2b7c-7d1e-8f9a-0b1c2d3e4f50",
    "type": "vaultpay.transaction.completed",
    "status": "PENDING",
    "attempts": 1,
    "last_status_code": 503,
    "last_error": "HTTP 503",
    "next_attempt_at": "2026-11-28T10:16:30.123Z",
    "created_at": "2026-11-28T10:15:30.123Z",
}


class Webhook(ResponseModel):
    """A webhook endpoint as its owner sees it: never its secret (only creation and rotation show that)."""

    webhook_id: WebhookId
    url: str
    events: list[str]
    description: str | None
    status: Literal["ENABLED", "DISABLED"]
    created_at: Timestamp
    # SkipJsonSchema[None]: the key is left out, never sent as null.
    disabled_at: Timestamp | SkipJsonSchema[None] = Field(
        default=None, description="When it was disabled for failing every delivery for 3 days."
    )


class WebhookWithSecret(Webhook):
    """A webhook with its signing secret: the answer of creation and rotation, the only time it is shown."""

    secret: Annotated[str, Field(pattern="^whsec_[A-Za-z0-9_-]{43,}$")]


class WebhookPage(ResponseModel):
    """The caller's webhooks, oldest first (at most 10: always one page)."""

    items: list[Webhook]
    next_cursor: NextCursor


class WebhookDelivery(ResponseModel):
    """One event's delivery to one webhook."""

    delivery_id: DeliveryId
    event_id: str
    type: str
    status: Literal["PENDING", "SUCCEEDED", "FAILED"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: Timestamp | None
    created_at: Timestamp


class WebhookDeliveryPage(ResponseModel):
    """A page of a webhook's deliveries, newest first."""

    items: list[WebhookDelivery]
    next_cursor: NextCursor


class CustomerEvent(ResponseModel):
    """A CloudEvents 1.0 envelope as a customer receives it (docs/api.md, Webhooks)."""

    specversion: Literal["1.0"]
    id: str
    source: str
    type: str
    time: Timestamp
    subject: str
    datacontenttype: Literal["application/json"]
    correlationid: str
    data: dict[str, Any]


class EventPage(ResponseModel):
    """A page of the caller's own events, oldest first; `next_cursor` is the `after` of the next page."""

    items: list[CustomerEvent]
    next_cursor: NextCursor

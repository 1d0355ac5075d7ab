"""GET /v1/auth/devices: the devices the signed-in user has completed a login from (authorizer)."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from vaultpay.bootstrap.auth import auth_service
from vaultpay.shared.http import api_handler, make_resolver, no_store_json, principal
from vaultpay.shared.observability import get_tracer
from vaultpay.shared.openapi import NextCursor, ResponseModel, Timestamp, success

tracer = get_tracer()
app = make_resolver()


class Device(ResponseModel):
    """A device the caller has signed in from."""

    device_id: str
    first_seen_at: Timestamp
    last_seen_at: Timestamp
    trusted: bool


class DevicePage(ResponseModel):
    """A page of the caller's devices."""

    items: list[Device]
    next_cursor: NextCursor


@app.get(
    "/v1/auth/devices",
    responses=success(
        200,
        "A page of the caller's devices.",
        {
            "items": [
                {
                    "device_id": "ios-3f9a2c",
                    "first_seen_at": "2026-11-28T10:15:30.123Z",
                    "last_seen_at": "2026-11-29T08:01:02.000Z",
                    "trusted": True,
                }
            ],
            "next_cursor": None,
        },
        model=DevicePage,
    ),
)
@tracer.capture_method(capture_response=False)
def devices(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(min_length=1, max_length=512)] = None,
) -> Response[dict[str, Any]]:
    page = auth_service().devices(principal(app).user_id, limit=limit, cursor=cursor)
    return no_store_json(
        {
            "items": [
                {
                    "device_id": device.device_id,
                    "first_seen_at": device.first_seen_at,
                    "last_seen_at": device.last_seen_at,
                    "trusted": device.trusted,
                }
                for device in page.items
            ],
            "next_cursor": page.next_cursor,
        }
    )


handler = api_handler(app)

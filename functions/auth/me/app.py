"""GET /v1/me: the signed-in user's profile, with the phone number masked (authorizer)."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Any, Literal

from aws_lambda_powertools.event_handler import Response

from vaultpay.bootstrap.auth import auth_service
from vaultpay.shared.http import api_handler, make_resolver, no_store_json, principal
from vaultpay.shared.observability import get_tracer
from vaultpay.shared.openapi import ResponseModel, Timestamp, success

tracer = get_tracer()
app = make_resolver()


class Profile(ResponseModel):
    """The caller's profile; the phone number only masked."""

    user_id: str
    email: str
    full_name: str
    phone_masked: str
    role: Literal["customer", "admin"]
    created_at: Timestamp


@app.get(
    "/v1/me",
    responses=success(
        200,
        "The caller's profile.",
        {
            "user_id": "usr_8c1d2e3f",
            "email": "asha@example.com",
            "full_name": "Asha Rao",
            "phone_masked": "+91******3210",
            "role": "customer",
            "created_at": "2026-11-28T10:15:30.123Z",
        },
        model=Profile,
    ),
)
@tracer.capture_method(capture_response=False)
def me() -> Response[dict[str, Any]]:
    # Whose profile comes only from the authorizer's context, never from the request.
    profile = auth_service().profile(principal(app).user_id)
    return no_store_json(
        {
            "user_id": profile.user_id,
            "email": profile.email,
            "full_name": profile.full_name,
            "phone_masked": profile.phone_masked,
            "role": profile.role.value,
            "created_at": profile.created_at,
        }
    )


# The response holds PII: it is never logged or traced.
handler = api_handler(app)

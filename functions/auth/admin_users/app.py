"""POST /v1/admin/users/{user_id}/disable and /enable: an admin ends or restores a user's access (admin)."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from pydantic import Field

from vaultpay.bootstrap.auth import auth_service
from vaultpay.shared.http import RequestModel, api_handler, make_admin_resolver, no_store_json, principal
from vaultpay.shared.observability import get_tracer
from vaultpay.shared.openapi import ResponseModel, problems, success

tracer = get_tracer()
# Admin-only: a caller who is not an admin is answered 403 before any body is validated.
app = make_admin_resolver()


class UserStatus(ResponseModel):
    """The user's status after the change."""

    user_id: str
    status: Literal["ACTIVE", "DISABLED"]


class StatusChange(RequestModel):
    """Why the admin changes the user's status: kept in the event and the audit log."""

    reason: Annotated[str, Field(min_length=1, max_length=500)]


def _answer(user_id: str, status: str) -> Response[dict[str, Any]]:
    return no_store_json({"user_id": user_id, "status": status})


_NOT_FOUND = problems(404, {"user_not_found": "No user has this id."})


@app.post(
    "/v1/admin/users/<user_id>/disable",
    responses={
        **success(
            200,
            "The user is DISABLED: their login is refused (403 user_disabled), their refresh tokens are "
            "dead and their access tokens end within the authorizer's session check (401 token_revoked).",
            {"user_id": "usr_8c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f", "status": "DISABLED"},
            model=UserStatus,
        ),
        **_NOT_FOUND,
    },
)
@tracer.capture_method(capture_response=False)
def disable(user_id: str, body: StatusChange) -> Response[dict[str, Any]]:
    return _change(user_id, body, disable=True)


@app.post(
    "/v1/admin/users/<user_id>/enable",
    responses={
        **success(
            200,
            "The user is ACTIVE again and may sign in; sessions ended while disabled stay ended.",
            {"user_id": "usr_8c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f", "status": "ACTIVE"},
            model=UserStatus,
        ),
        **_NOT_FOUND,
    },
)
@tracer.capture_method(capture_response=False)
def enable(user_id: str, body: StatusChange) -> Response[dict[str, Any]]:
    return _change(user_id, body, disable=False)


def _change(user_id: str, body: StatusChange, *, disable: bool) -> Response[dict[str, Any]]:
    caller = principal(app)
    service = auth_service()
    change = service.disable_user if disable else service.enable_user
    user = change(user_id, reason=body.reason, admin_id=caller.user_id, correlation_id=caller.correlation_id)
    return _answer(user.user_id, user.status.value)


handler = api_handler(app)

"""POST /v1/auth/logout: revokes the refresh token's family, i.e. every session of that sign-in (no auth)."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from pydantic import Field

from vaultpay.bootstrap.auth import auth_service
from vaultpay.shared.http import RequestModel, api_handler, current_correlation_id, make_resolver
from vaultpay.shared.observability import get_tracer
from vaultpay.shared.openapi import problems, success

tracer = get_tracer()
app = make_resolver()


class LogoutRequest(RequestModel):
    refresh_token: Annotated[str, Field(min_length=1, max_length=256)]


@app.post(
    "/v1/auth/logout",
    responses={
        **success(204, "Every session of this sign-in is revoked."),
        **problems(
            401,
            {
                "invalid_refresh_token": "The refresh token is not valid; sign in again.",
                "device_mismatch": "The X-Device-Id header does not match the device this was issued to.",
            },
        ),
    },
)
@tracer.capture_method(capture_response=False)
def logout(body: LogoutRequest) -> Response[None]:
    from vaultpay.auth.service import request_origin

    auth_service().logout(
        body.refresh_token,
        **request_origin(app.current_event.raw_event, correlation_id=current_correlation_id(app)),
    )
    return Response(status_code=204, body=None, headers={"Cache-Control": "no-store"})


# The event holds the refresh token: it is never logged or traced.
handler = api_handler(app)

"""POST /v1/auth/refresh: a refresh token, from its own device, exchanged for a new token pair (no auth)."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from pydantic import Field

from vaultpay.auth.responses import TokenPair
from vaultpay.bootstrap.auth import auth_service
from vaultpay.shared.http import (
    RequestModel,
    api_handler,
    current_correlation_id,
    make_resolver,
    token_response,
)
from vaultpay.shared.observability import get_tracer
from vaultpay.shared.openapi import TOKEN_PAIR_EXAMPLE, problems, success

tracer = get_tracer()
app = make_resolver()


class RefreshRequest(RequestModel):
    refresh_token: Annotated[str, Field(min_length=1, max_length=256)]


@app.post(
    "/v1/auth/refresh",
    responses={
        **success(
            200,
            "A new token pair; the refresh token sent is retired.",
            TOKEN_PAIR_EXAMPLE,
            model=TokenPair,
        ),
        **problems(
            401,
            {
                "invalid_refresh_token": "The refresh token is not valid; sign in again.",
                "refresh_token_reused": "A retired refresh token came back: that sign-in is revoked.",
                "device_mismatch": "The X-Device-Id header does not match the device this was issued to.",
            },
        ),
        **problems(429, {"rate_limited": "Too many refreshes; retry after the Retry-After interval."}),
    },
)
@tracer.capture_method(capture_response=False)
def refresh(body: RefreshRequest) -> Response[dict[str, Any]]:
    from vaultpay.auth.service import request_origin

    pair = auth_service().refresh(
        body.refresh_token,
        **request_origin(app.current_event.raw_event, correlation_id=current_correlation_id(app)),
    )
    return token_response(pair.body())


# Neither the event nor the response (both hold refresh tokens) is logged or traced.
handler = api_handler(app)

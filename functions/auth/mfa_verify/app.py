"""POST /v1/auth/mfa/verify: the TOTP code of a login challenge, answered with an access and refresh token."""

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


class VerifyRequest(RequestModel):
    challenge_id: Annotated[str, Field(min_length=1, max_length=128)]
    # Any short string: a code that is not six digits is a wrong code, and counts as one.
    code: Annotated[str, Field(min_length=1, max_length=16)]


@app.post(
    "/v1/auth/mfa/verify",
    responses={
        **success(
            200,
            "The code is right: an access token and a refresh token.",
            TOKEN_PAIR_EXAMPLE,
            model=TokenPair,
        ),
        **problems(
            401,
            {
                "invalid_code": "The code is not valid (wrong, or already used).",
                "invalid_challenge": "The login challenge is not valid; sign in again.",
                "challenge_expired": "The login challenge has expired; sign in again.",
                "device_mismatch": "The X-Device-Id header does not match the device this was issued to.",
            },
        ),
        **problems(429, {"rate_limited": "Too many codes tried; retry after the Retry-After interval."}),
    },
)
@tracer.capture_method(capture_response=False)
def verify(body: VerifyRequest) -> Response[dict[str, Any]]:
    from vaultpay.auth.service import request_origin

    pair = auth_service().verify_mfa(
        body.challenge_id,
        body.code,
        **request_origin(app.current_event.raw_event, correlation_id=current_correlation_id(app)),
    )
    return token_response(pair.body())


# Neither the event (the code) nor the response (the tokens) is logged or traced.
handler = api_handler(app)

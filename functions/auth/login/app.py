"""POST /v1/auth/login: checks email and password, then opens an MFA challenge bound to the device."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from pydantic import Field

from vaultpay.bootstrap.auth import auth_service
from vaultpay.shared.http import (
    RequestModel,
    api_handler,
    current_correlation_id,
    make_resolver,
    no_store_json,
)
from vaultpay.shared.observability import get_tracer
from vaultpay.shared.openapi import ResponseModel, problems, success

tracer = get_tracer()
app = make_resolver()


class LoginChallenge(ResponseModel):
    """The MFA challenge a right password earns: answer it at `POST /v1/auth/mfa/verify`."""

    mfa_required: Literal[True]
    challenge_id: str
    expires_in: int = Field(ge=1, description="Seconds the challenge is valid.")


class LoginRequest(RequestModel):
    # Loose on purpose: a malformed email or a short password is simply not a valid credential, and is
    # answered like any other wrong one (401), not with a hint of what valid would look like.
    email: Annotated[str, Field(min_length=1, max_length=320)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


@app.post(
    "/v1/auth/login",
    responses={
        **success(
            200,
            "The password is right: an MFA challenge bound to this device, valid 300 s.",
            {"mfa_required": True, "challenge_id": "chl_2a9f4c1b", "expires_in": 300},
            model=LoginChallenge,
        ),
        **problems(401, {"invalid_credentials": "The email or password is not correct."}),
        **problems(429, {"rate_limited": "Too many failed logins for this account or address."}),
    },
)
@tracer.capture_method(capture_response=False)
def login(body: LoginRequest) -> Response[dict[str, Any]]:
    from vaultpay.auth.service import request_origin

    challenge = auth_service().login(
        body.email,
        body.password,
        **request_origin(app.current_event.raw_event, correlation_id=current_correlation_id(app)),
    )
    return no_store_json(
        {
            "mfa_required": True,
            "challenge_id": challenge.challenge_id,
            "expires_in": challenge.expires_in,
        }
    )


# Neither the event (it holds the password) nor the response is logged or traced.
handler = api_handler(app)

"""POST /v1/auth/register: a new customer with email, password and phone, enrolled in TOTP (no auth)."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from pydantic import AfterValidator, Field

from vaultpay.auth.model import (
    canonical_email,
    canonical_full_name,
    email_problem,
    full_name_problem,
    phone_problem,
)
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


class TotpEnrolment(ResponseModel):
    """The TOTP secret, shown only this once, and its `otpauth://` URI for an authenticator app."""

    type: Literal["totp"]
    secret: str = Field(pattern="^[A-Z2-7]+=*$", description="Base32.")
    otpauth_uri: str = Field(pattern="^otpauth://totp/")


class Registration(ResponseModel):
    """The new customer and their MFA enrolment."""

    user_id: str
    email: str
    mfa: TotpEnrolment


def _email(value: str) -> str:
    problem = email_problem(canonical_email(value))
    if problem:
        raise ValueError(problem)
    return value


def _full_name(value: str) -> str:
    problem = full_name_problem(canonical_full_name(value))
    if problem:
        raise ValueError(problem)
    return value


def _phone(value: str) -> str:
    problem = phone_problem(value.strip())
    if problem:
        raise ValueError(problem)
    return value


class RegisterRequest(RequestModel):
    """The whole body: `extra="forbid"` makes `role`, `user_id` or anything else a 422."""

    email: Annotated[str, Field(max_length=320), AfterValidator(_email)]
    password: Annotated[str, Field(min_length=12, max_length=128)]
    full_name: Annotated[str, Field(max_length=400), AfterValidator(_full_name)]
    phone: Annotated[str, Field(max_length=32), AfterValidator(_phone)]


@app.post(
    "/v1/auth/register",
    responses={
        **success(
            201,
            "The new customer and their TOTP enrolment: the secret is shown only this once.",
            {
                "user_id": "usr_8c1d2e3f",
                "email": "asha@example.com",
                "mfa": {
                    "type": "totp",
                    "secret": "JBSWY3DPEHPK3PXP",
                    "otpauth_uri": "otpauth://totp/VaultPay:asha%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=VaultPay",
                },
            },
            model=Registration,
        ),
        **problems(409, {"email_taken": "This email address is already registered."}),
    },
)
@tracer.capture_method(capture_response=False)
def register(body: RegisterRequest) -> Response[dict[str, Any]]:
    from vaultpay.auth.service import NewUser, source_ip_from_event

    enrolment = auth_service().register(
        NewUser(email=body.email, password=body.password, full_name=body.full_name, phone=body.phone),
        correlation_id=current_correlation_id(app),
        source_ip=source_ip_from_event(app.current_event.raw_event),
    )
    # The TOTP secret is shown once: no cache along the way may keep a copy.
    return no_store_json(
        {
            "user_id": enrolment.user_id,
            "email": enrolment.email,
            "mfa": {"type": "totp", "secret": enrolment.totp_secret, "otpauth_uri": enrolment.otpauth_uri},
        },
        status_code=201,
    )


# Neither the event (it holds the password) nor the response (the TOTP secret) is logged or traced.
handler = api_handler(app)

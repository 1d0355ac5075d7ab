"""Creates an admin user: invoked directly by `vaultpay admin create-user`, never through the API."""

# No `from __future__ import annotations` in handlers (the same rule as the API functions, for uniformity).
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from vaultpay.bootstrap.auth import auth_service
from vaultpay.shared.errors import DomainError, FieldError, ValidationFailed
from vaultpay.shared.observability import bind_log_keys, get_logger, get_tracer

logger = get_logger()
tracer = get_tracer()

_FIELDS = ("email", "password", "full_name", "phone")
# Who ran the command: a direct Invoke carries no caller identity into the function (CloudTrail's Invoke
# record is the authoritative one), so the CLI sends the IAM principal's ARN, or `local:<name>` locally.
_OPERATOR = "operator"
_OPERATOR_MAX = 128  # the audit log's actor: 1..128 visible ASCII characters, no space


def _operator(event: Any) -> str | None:
    value = event.get(_OPERATOR) if isinstance(event, dict) else None
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= _OPERATOR_MAX
        or not all("!" <= c <= "~" for c in value)
    ):
        raise ValidationFailed(
            "The payload is not valid.",
            errors=[FieldError(_OPERATOR, f"must be 1..{_OPERATOR_MAX} visible ASCII characters")],
        )
    return value


def _new_user(event: Any) -> Any:
    """The same body rules as POST /v1/auth/register: exactly these four strings (and who ran it)."""
    from vaultpay.auth.service import NewUser

    if not isinstance(event, dict):
        raise ValidationFailed(
            "The payload must be a JSON object.", errors=[FieldError("body", "must be an object")]
        )
    problems = [
        FieldError(str(name), "is not allowed") for name in event if name not in (*_FIELDS, _OPERATOR)
    ]
    problems += [FieldError(name, "is required") for name in _FIELDS if name not in event]
    problems += [
        FieldError(name, "must be a string")
        for name in _FIELDS
        if name in event and not isinstance(event[name], str)
    ]
    if problems:
        raise ValidationFailed("The payload is not valid.", errors=problems)
    return NewUser(**{name: event[name] for name in _FIELDS})


# The event holds the password and the response the TOTP secret: neither is logged or traced.
@logger.inject_lambda_context(clear_state=True, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    correlation_id = context.aws_request_id
    bind_log_keys(correlation_id=correlation_id)
    try:
        enrolment = auth_service().create_admin(
            _new_user(event), correlation_id=correlation_id, operator=_operator(event)
        )
    except DomainError as exc:
        # The operator's mistake (invalid field, email taken), answered as data for the CLI to show;
        # anything else raises, and the invocation fails.
        logger.info("admin not created", extra={"code": exc.code})
        errors = exc.errors if isinstance(exc, ValidationFailed) else ()
        return {
            "error": {
                "code": exc.code,
                "message": exc.detail,
                "errors": [{"field": e.field, "message": e.message} for e in errors],
            }
        }
    logger.info("admin created", extra={"user_id": enrolment.user_id, "operator": _operator(event)})
    return {
        "user_id": enrolment.user_id,
        "role": enrolment.role.value,
        "mfa": {"type": "totp", "secret": enrolment.totp_secret, "otpauth_uri": enrolment.otpauth_uri},
    }

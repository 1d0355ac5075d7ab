"""The one HTTP resolver factory: validation, RFC 9457 problem+json errors and the correlation id."""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import ResponseBuilder
from aws_lambda_powertools.event_handler.exceptions import ServiceError
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from pydantic import BaseModel, ConfigDict, ValidationError, ValidatorFunctionWrapHandler, WrapValidator

from vaultpay.shared.caller_checks import (
    CallerCheck,
    check_caller,
    decided_for_another_request,
    device_id_required,
    device_mismatch,
)
from vaultpay.shared.errors import (
    BadRequest,
    DomainError,
    FieldError,
    Forbidden,
    RateLimited,
    Unauthorized,
    ValidationFailed,
    VaultPayError,
)
from vaultpay.shared.kernel import new_correlation_id
from vaultpay.shared.observability import bind_log_keys, get_logger
from vaultpay.shared.strict_json import check_json_body

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://vaultpay.dev/problems/"
CORRELATION_HEADER = "X-Correlation-Id"

# A client-supplied id is echoed into logs and responses: accept only short, visible ASCII, and replace
# anything else with a fresh id rather than refuse the request over a tracing header.
_CORRELATION_ID = re.compile(r"[\x21-\x7e]{1,128}")
_CONTEXT_KEY = "correlation_id"

# Where a request-validation error points; the field name a client sees leaves the location out.
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie", "form", "file"})
# Pydantic's message for these names Python types or model classes, which must never reach a client.
_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not allowed",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "dataclass_type": "must be a JSON object",
    "is_instance_of": "has the wrong type",
    "is_subclass_of": "has the wrong type",
}
_VALIDATOR_PREFIXES = ("Value error, ", "Assertion failed, ")
_PRINCIPAL_FIELDS = ("user_id", "role", "device_id")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as the API's authorizer established it (docs/identity-contract.md)."""

    user_id: str
    role: str
    device_id: str
    correlation_id: str


class RequestModel(BaseModel):
    """Base of every request body: unknown fields are rejected (422), and parsed bodies are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def in_contract_words(message: str) -> WrapValidator:
    """A field's own validation (type, length, choices), answered with the contract's message for it
    instead of pydantic's (`Annotated[Literal["A", "B"], in_contract_words("must be A or B")]`). The
    field's JSON schema stays the one its type and constraints give."""

    def validate(value: object, handler: ValidatorFunctionWrapHandler) -> object:
        try:
            return handler(value)
        except ValidationError:
            raise ValueError(message) from None

    return WrapValidator(validate)


class _VaultPayResolver(APIGatewayRestResolver):
    """Answers the authorizer's soft denies (`auth_error`) before routing.

    Powertools runs request validation ahead of every middleware, so a middleware would answer a request
    with a bad body and a wrong device 422 instead of 401, and would tell an unauthenticated caller how its
    body is wrong. Checking here, before a route is even matched, means no handler code and no validation
    ever sees such a request.
    """

    refuse: Callable[[VaultPayError], Response[str]]

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        began = time.perf_counter()
        response: dict[str, Any] = super().resolve(event, context)
        log_request(event, response, (time.perf_counter() - began) * 1000)
        return response

    def _resolve(self) -> ResponseBuilder[Any]:
        event = self.current_event
        check = check_request(self)
        refusal = (
            check.refusal or form_body(event) or undecodable_json_body(event) or ambiguous_json_body(event)
        )
        # A read's count may still be in flight: its 429 outranks a body's refusal, as a settled count's does.
        if refusal is not None:
            refusal = check.settle() or refusal
            return ResponseBuilder(self.refuse(refusal), serializer=self._serializer)
        return self._answer(check, super()._resolve)

    def _answer(self, check: CallerCheck, route: Callable[[], ResponseBuilder[Any]]) -> ResponseBuilder[Any]:
        """The route's answer, unless the count that ran beside it refuses the request (the read's answer is
        then dropped: it changed nothing)."""
        try:
            answer = route()
        finally:
            counted = check.settle()
        if counted is not None:
            return ResponseBuilder(self.refuse(counted), serializer=self._serializer)
        return answer


class _AdminResolver(_VaultPayResolver):
    """A resolver whose every route is admin-only: any other caller is answered 403 before routing.

    Powertools validates a route's body and query before any middleware or handler runs, so a role check
    in the handler would tell a customer how their body is wrong (422) before refusing them. Here the role
    is checked right after the authorizer's soft denies and before any body check: a caller who is not an
    admin learns nothing about the route but that it is not theirs.
    """

    def _resolve(self) -> ResponseBuilder[Any]:
        check = check_request(self)
        refusal = check.refusal or admin_refusal(self.current_event.raw_event)
        if refusal is not None:
            refusal = check.settle() or refusal
            return ResponseBuilder(self.refuse(refusal), serializer=self._serializer)
        return self._answer(check, super()._resolve)


ADMIN_ROLE = "admin"


def admin_refusal(event: Mapping[str, Any]) -> VaultPayError | None:
    """401 when the authorizer named no caller, 403 `forbidden` when the caller is not an admin, else None.

    The authorizer's /v1/admin rule refuses other roles already; this is each admin function's own lock,
    so a route wired without that rule still shows and changes nothing.
    """
    context = _authorizer_context(event)
    if not all(isinstance(context.get(name), str) and context.get(name) for name in _PRINCIPAL_FIELDS):
        return Unauthorized("No authenticated caller.")
    if context.get("role") != ADMIN_ROLE:
        return Forbidden("Only an admin may do this.", code="forbidden")
    return None


class UnsupportedMediaType(DomainError):
    """The request body is not JSON."""

    code = "unsupported_media_type"
    status = 415
    title = "Unsupported media type"


_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


def form_body(event: Any) -> UnsupportedMediaType | None:
    """A 415 for a form or multipart body: bodies are JSON (docs/api.md). Powertools would parse either as the
    route's body model (a form could pass for JSON), and a multipart type without a boundary made it raise."""
    content_type = str(event.headers.get("content-type") or "").strip().lower()
    if not content_type.startswith(_FORM_TYPES):
        return None
    if not event.body and str(event.http_method).upper() in _BODYLESS_METHODS:
        return None
    return UnsupportedMediaType("Send the request body as application/json.")


def undecodable_json_body(event: Any) -> BadRequest | None:
    """A 400 for a JSON body (or one with no type, which Powertools reads as JSON) that is not UTF-8 text.

    API Gateway hands such bytes over base64-encoded, and Powertools' decoding of them raises
    UnicodeDecodeError, which is no JSONDecodeError: it would surface as a 500.
    """
    content_type = str(event.headers.get("content-type") or "").strip()
    if not event.body or not event.is_base64_encoded:
        return None
    if content_type and not content_type.startswith("application/json"):
        return None
    try:
        base64.b64decode(event.body.encode()).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return BadRequest("The request body is not valid JSON (not UTF-8 text).", code="malformed_json")
    return None


def ambiguous_json_body(event: Any) -> VaultPayError | None:
    """A 413/422 for a JSON body that a parser could read two ways or that breaks a limit (strict_json)."""
    content_type = str(event.headers.get("content-type") or "").strip()
    if not event.body or (content_type and not content_type.startswith("application/json")):
        return None
    body: bytes | str = event.body
    if event.is_base64_encoded:
        try:
            body = base64.b64decode(event.body.encode())
        except binascii.Error:
            return None  # undecodable_json_body answers it
    try:
        check_json_body(body)
    except VaultPayError as refused:
        return refused
    return None


REQUEST_LOGGED = "request logged"


def log_request(event: Mapping[str, Any], response: Mapping[str, Any], latency_ms: float) -> None:
    """One structured line per API request, whatever its outcome.

    A CloudWatch Logs subscription filter (`{ $.message = "request logged" }`) turns these lines into
    `vaultpay.gateway.request.logged` events, so request logging costs no DynamoDB write per request.
    Only these fields are logged: never a body, a header value, a token or a query string.
    """
    context = event.get("requestContext") or {}
    authorizer = context.get("authorizer") or {}
    # The REST resolver answers with multiValueHeaders; single-value headers are read too, to be safe.
    headers = {**(response.get("headers") or {}), **(response.get("multiValueHeaders") or {})}
    values = [v for k, v in headers.items() if k.lower() == CORRELATION_HEADER.lower()]
    correlation_id = (values[0][0] if isinstance(values[0], list) else values[0]) if values else None
    get_logger().info(
        REQUEST_LOGGED,
        extra={
            "http_method": event.get("httpMethod"),
            "route": event.get("resource"),
            "status": response.get("statusCode"),
            "latency_us": int(latency_ms * 1000),  # an integer: event data carries no floats
            "user_id": authorizer.get("user_id") or None,
            "source_ip": (context.get("identity") or {}).get("sourceIp"),
            "correlation_id": correlation_id,
        },
    )


def make_resolver() -> APIGatewayRestResolver:
    """A REST API resolver with request validation on, every error as problem+json, a correlation id on
    every response and log line, and the authorizer's soft denies answered before any route runs."""
    return _configured(_VaultPayResolver(enable_validation=True))


def make_admin_resolver() -> APIGatewayRestResolver:
    """`make_resolver` for a function whose routes are all admin-only: a caller who is not an admin gets
    403 `forbidden` (no caller at all, 401) before any route, body or query is looked at, so admin routes
    take pydantic bodies and typed query parameters like customer routes."""
    return _configured(_AdminResolver(enable_validation=True))


def _configured(app: _VaultPayResolver) -> _VaultPayResolver:
    app.use([_correlation_middleware])

    # Each handler binds the correlation id first: request validation fails before any middleware has run,
    # and the log line should carry the id all the same.
    def on_vaultpay_error(exc: VaultPayError) -> Response[str]:
        current_correlation_id(app)
        if exc.status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            get_logger().error("request failed", exc_info=exc, extra={"code": exc.code})
        else:
            get_logger().info("request refused", extra={"code": exc.code, "status": exc.status})
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else {}
        errors = exc.errors if isinstance(exc, ValidationFailed) else None
        return problem(
            app,
            status=exc.status,
            code=exc.code,
            title=exc.title,
            detail=exc.detail,
            errors=errors,
            headers=headers,
        )

    def on_request_validation_error(exc: RequestValidationError) -> Response[str]:
        current_correlation_id(app)
        raw = list(exc.errors())
        if any(error.get("type") == "json_invalid" for error in raw):
            return problem(
                app,
                status=400,
                code="malformed_json",
                title="Bad request",
                detail="The request body is not valid JSON.",
            )
        errors = [_field_error(error) for error in raw]
        get_logger().info("request invalid", extra={"fields": [e.field for e in errors]})
        return problem(
            app,
            status=422,
            code="validation_failed",
            title="Validation failed",
            detail="The request is not valid.",
            errors=errors,
        )

    def on_unsupported_content_type(_exc: RequestUnsupportedContentType) -> Response[str]:
        return problem(
            app,
            status=415,
            code="unsupported_media_type",
            title="Unsupported media type",
            detail="Send the request body as application/json.",
        )

    def on_service_error(exc: ServiceError) -> Response[str]:
        # Powertools' own HTTP errors: an unknown route (404), or a ServiceError raised by a library.
        try:
            status = HTTPStatus(exc.status_code)
        except ValueError:
            status = HTTPStatus.INTERNAL_SERVER_ERROR
        if status is HTTPStatus.NOT_FOUND:
            return problem(
                app,
                status=404,
                code="not_found",
                title="Not found",
                detail="No resource matches this method and path.",
            )
        code = status.phrase.lower().replace(" ", "_").replace("-", "_")
        return problem(app, status=status.value, code=code, title=status.phrase, detail=status.description)

    def on_unexpected_error(exc: Exception) -> Response[str]:
        current_correlation_id(app)
        get_logger().exception("unhandled error", exc_info=exc)
        return problem(
            app,
            status=500,
            code="internal_error",
            title="Internal server error",
            detail="An unexpected error occurred. Quote the correlation id when reporting it.",
        )

    app.refuse = on_vaultpay_error
    # Powertools looks handlers up along the exception's MRO: the catch-all `Exception` gets only what no
    # more specific handler claims, whatever the order of registration.
    app.exception_handler(RequestUnsupportedContentType)(on_unsupported_content_type)
    app.exception_handler(RequestValidationError)(on_request_validation_error)
    app.exception_handler(VaultPayError)(on_vaultpay_error)
    app.exception_handler(ServiceError)(on_service_error)
    app.exception_handler(Exception)(on_unexpected_error)
    return app


def problem(
    app: APIGatewayRestResolver,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: Sequence[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response[str]:
    """An RFC 9457 problem details response carrying the request's correlation id."""
    correlation_id = current_correlation_id(app)
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "correlation_id": correlation_id,
    }
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    return Response(
        status_code=status,
        content_type=PROBLEM_JSON,
        # Powertools serializes only application/json bodies itself.
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        headers={**(headers or {}), CORRELATION_HEADER: correlation_id},
    )


def no_store_json(body: Any, *, status_code: int = 200) -> Response[Any]:
    """A JSON answer that no cache keeps: every route's answer is the caller's own (a balance, a profile, a
    page of someone's history) or an admin's view, so none may be served to anyone else from a cache."""
    return Response(
        status_code=status_code,
        content_type=content_types.APPLICATION_JSON,
        body=body,
        headers={"Cache-Control": "no-store"},
    )


def token_response(body: dict[str, Any]) -> Response[dict[str, Any]]:
    """200 with an access and a refresh token. RFC 6749 §5.1: responses carrying tokens are never cached
    (`Pragma` for the HTTP/1.0 caches that ignore `Cache-Control`)."""
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=body,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def current_correlation_id(app: APIGatewayRestResolver) -> str:
    """The request's correlation id: the client's `X-Correlation-Id` if usable, else API Gateway's request
    id, else a new one. Decided once per request and bound to the logger."""
    known = app.context.get(_CONTEXT_KEY)
    if isinstance(known, str):
        return known
    event = app.current_event
    given = event.headers.get(CORRELATION_HEADER)
    if isinstance(given, str) and _CORRELATION_ID.fullmatch(given):
        correlation_id = given
    else:
        # API Gateway's request id also names the request in its access and execution logs; a hand-made
        # event (a test, a direct invoke) may have none.
        request_id = (event.raw_event.get("requestContext") or {}).get("requestId")
        correlation_id = request_id if isinstance(request_id, str) and request_id else new_correlation_id()
    app.context[_CONTEXT_KEY] = correlation_id
    bind_log_keys(correlation_id=correlation_id)
    return correlation_id


def principal(app: APIGatewayRestResolver) -> Principal:
    """The caller, read only from the authorizer's context (`requestContext.authorizer`): never from the
    body or a client header. Unauthorized when there is none (a public route, or a misconfigured API)."""
    context = _authorizer_context(app.current_event.raw_event)
    refusal = authorizer_refusal(app.current_event.raw_event)
    if refusal is not None:
        # The resolver answers these before routing; this only guards a resolver built some other way.
        raise refusal
    fields = {name: context.get(name) for name in _PRINCIPAL_FIELDS}
    if not all(isinstance(value, str) and value for value in fields.values()):
        raise Unauthorized("No authenticated caller.")
    given = context.get("correlation_id")
    # A cached decision carries the correlation id of the request the authorizer ran for, not this one's.
    fresh = isinstance(given, str) and given and not decided_for_another_request(app.current_event.raw_event)
    correlation_id = str(given) if fresh else current_correlation_id(app)
    bind_log_keys(user_id=str(fields["user_id"]))
    return Principal(
        user_id=str(fields["user_id"]),
        role=str(fields["role"]),
        device_id=str(fields["device_id"]),
        correlation_id=correlation_id,
    )


def check_request(app: APIGatewayRestResolver) -> CallerCheck:
    """The checks that refuse a request before any route runs: the authorizer's soft deny (about the
    token), else the checks a cached decision cannot make (about this request: its device, the count)."""
    event = app.current_event.raw_event
    refusal = authorizer_refusal(event)
    if refusal is not None:
        return CallerCheck(refusal, None)
    return check_caller(event, _authorizer_context(event), current_correlation_id(app))


def authorizer_refusal(event: Mapping[str, Any]) -> VaultPayError | None:
    """The error a request's authorizer soft deny stands for, or None when it has none."""
    context = _authorizer_context(event)
    auth_error = context.get("auth_error")
    if auth_error is None or auth_error == "":
        return None
    # An authorizer of an earlier release checked the device itself (a deploy runs both for a while).
    if auth_error == "device_id_required":
        return device_id_required()
    if auth_error == "device_mismatch":
        return device_mismatch()
    if auth_error == "token_revoked":
        return Unauthorized(
            "This session has ended (signed out, or its refresh token was reused): sign in again.",
            code="token_revoked",
        )
    if auth_error == "rate_limited":
        return RateLimited(
            "Too many requests; retry after the Retry-After interval.",
            retry_after=_int_or(context.get("retry_after"), 1),
        )
    # An error this code does not know must still refuse: failing open here would let the request through.
    return Unauthorized("The request could not be authorized.")


def _authorizer_context(event: Mapping[str, Any]) -> Mapping[str, Any]:
    context = (event.get("requestContext") or {}).get("authorizer")
    return context if isinstance(context, Mapping) else {}


def _int_or(value: Any, default: int) -> int:
    # API Gateway may hand context numbers over as strings.
    try:
        return int(str(value))
    except ValueError:
        return default


def _correlation_middleware(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response[Any]:
    correlation_id = current_correlation_id(app)
    response = next_middleware(app)
    response.headers[CORRELATION_HEADER] = correlation_id
    return response


def _field_error(error: Mapping[str, Any]) -> FieldError:
    return FieldError(field=_field_name(error.get("loc", ())), message=_message(error))


def _field_name(loc: Sequence[Any]) -> str:
    parts = list(loc)
    source = "body"
    if parts and parts[0] in _LOCATIONS:
        source = str(parts.pop(0))
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or source


def _message(error: Mapping[str, Any]) -> str:
    known = _MESSAGES.get(str(error.get("type", "")))
    if known is not None:
        return known
    message = str(error.get("msg") or "is not valid")
    for prefix in _VALIDATOR_PREFIXES:
        message = message.removeprefix(prefix)
    return message


def api_handler(app: APIGatewayRestResolver) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A route function's Lambda entry point: `handler = api_handler(app)`.

    Every API function's handler is the same: the shared logger takes the Lambda context with a clean state
    and never logs the event (it carries tokens and personal data), the tracer wraps the invocation without
    recording the response (it may hold an account number or a token), and the resolver answers."""
    from vaultpay.shared.observability import get_logger, get_tracer

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return app.resolve(event, context)

    traced = get_tracer().capture_lambda_handler(capture_response=False)(handler)
    logged: Callable[[dict[str, Any], Any], dict[str, Any]] = get_logger().inject_lambda_context(
        clear_state=True, log_event=False
    )(traced)
    return logged

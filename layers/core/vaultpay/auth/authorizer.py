"""The API's REQUEST authorizer as pure decisions: token, route role, device binding, per-user rate limit."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from vaultpay.auth.tokens import verify_access_token
from vaultpay.shared import kernel
from vaultpay.shared.errors import RateLimited, Unauthorized
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.kernel import new_correlation_id
from vaultpay.shared.ratelimit import CounterStore, RateLimiter, Window

# Route prefixes that only some roles may call; every other protected route is open to every role.
ROLE_RULES: tuple[tuple[str, frozenset[str]], ...] = (("/v1/admin", frozenset({"admin"})),)
# identity-contract.md: API calls per user, 600 a minute.
API_CALLS = Window(limit=600, period_s=60)
RATE_LIMIT_SCOPE = "api"
# The same values as vaultpay.auth.model (not imported: the authorizer's cold start would pay for the model).
DEVICE_MISMATCH = "vaultpay.auth.device.mismatch"
EVENT_SOURCE = "/vaultpay/auth"
FORBIDDEN = "forbidden"

_BEARER = re.compile(r"Bearer +([A-Za-z0-9_.~+/=-]+)", re.IGNORECASE)
# docs/api.md: 1..128 printable ASCII.
_DEVICE_ID = re.compile(r"[\x20-\x7e]{1,128}")
# The same rule as vaultpay.shared.http (not imported: that module pulls in the whole resolver stack).
_CORRELATION_ID = re.compile(r"[\x21-\x7e]{1,128}")


class AuthError(StrEnum):
    """A "soft deny": the request is allowed through to the function's resolver, which answers this error
    before any handler code runs (API Gateway gives a Deny one fixed status, the contract needs three)."""

    NONE = ""
    DEVICE_ID_REQUIRED = "device_id_required"
    DEVICE_MISMATCH = "device_mismatch"
    RATE_LIMITED = "rate_limited"
    TOKEN_REVOKED = "token_revoked"  # noqa: S105 - an error code, not a secret


class VerificationKeys(Protocol):
    """The public keys that verify access tokens, by key id (the signing-key secret in production)."""

    def public_keys_by_kid(self) -> Mapping[str, Any]: ...


class SessionRevocations(Protocol):
    """Whether a token's session has ended: its refresh family was revoked (logout, reuse detected), or its
    user was disabled (every session and token issued until then ends). The DynamoDB adapter answers from a
    per-container cache at most `SESSION_CHECK_TTL_S` old, so an end takes effect within that."""

    def revoked(self, *, user_id: str, session_id: str | None, issued_at: int) -> bool: ...


class NoSessionRevocations:
    """For tests and tools that decide without a session store: no session has ended."""

    def revoked(self, *, user_id: str, session_id: str | None, issued_at: int) -> bool:
        return False


class OutboxWriter(Protocol):
    """Records a domain event for the relay to publish (an outbox item in the auth table in production)."""

    def write(self, event: DomainEvent) -> None: ...


@dataclass(frozen=True, slots=True)
class AuthorizerRequest:
    """What the authorizer reads of API Gateway's REQUEST authorizer event."""

    method_arn: str
    resource: str  # the route's resource path as API Gateway matched it, e.g. /v1/admin/audit
    http_method: str
    authorization: str | None
    device_id: str | None  # None when the header is missing, repeated or not 1..128 printable ASCII
    correlation_id: str
    source_ip: str | None

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> AuthorizerRequest:
        context = event.get("requestContext") or {}
        # The route's resource template, not the raw path: API Gateway matched it, the client cannot
        # steer it with encodings or double slashes.
        resource = str(event.get("resource") or context.get("resourcePath") or "")
        request_id = context.get("requestId")
        correlation_id = _single_header(event, "x-correlation-id")
        if correlation_id is None or not _CORRELATION_ID.fullmatch(correlation_id):
            # API Gateway's request id also names the request in its own logs.
            has_id = isinstance(request_id, str) and bool(request_id)
            correlation_id = str(request_id) if has_id else new_correlation_id()
        device_id = _single_header(event, "x-device-id")
        if device_id is not None and not _DEVICE_ID.fullmatch(device_id):
            device_id = None
        source_ip = (context.get("identity") or {}).get("sourceIp")
        return cls(
            method_arn=str(event.get("methodArn") or ""),
            resource=resource,
            http_method=str(event.get("httpMethod") or context.get("httpMethod") or ""),
            authorization=_single_header(event, "authorization"),
            device_id=device_id,
            correlation_id=correlation_id,
            source_ip=source_ip if isinstance(source_ip, str) else None,
        )


ContextValue = str | int | bool


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer: an IAM policy for exactly this method ARN, and the context the function receives."""

    allow: bool
    principal_id: str
    method_arn: str
    context: Mapping[str, ContextValue]

    @property
    def auth_error(self) -> str:
        return str(self.context.get("auth_error", ""))

    def response(self) -> dict[str, Any]:
        """The document API Gateway expects back from a Lambda authorizer."""
        return {
            "principalId": self.principal_id,
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Action": "execute-api:Invoke",
                        "Effect": "Allow" if self.allow else "Deny",
                        # This request's ARN only: with the result cache off there is nothing to reuse, and
                        # a wider Allow would be a wider grant for nothing.
                        "Resource": self.method_arn,
                    }
                ],
            },
            "context": dict(self.context),
        }


class Authorizer:
    """Decides one request. Raises `Unauthorized` when the caller is not authenticated (API Gateway: 401);
    returns a Deny for a role the route does not allow (403) and an Allow otherwise, with `auth_error` set
    for the soft denies that the function's resolver turns into 400, 401 or 429."""

    def __init__(
        self,
        *,
        keys: VerificationKeys,
        counters: CounterStore,
        outbox: OutboxWriter,
        issuer: str,
        audience: str,
        sessions: SessionRevocations | None = None,
        clock: Callable[[], float] = kernel.now,
        api_calls: Window = API_CALLS,
    ) -> None:
        self._keys = keys
        self._sessions = sessions or NoSessionRevocations()
        self._limiter = RateLimiter(counters)
        self._outbox = outbox
        self._issuer = issuer
        self._audience = audience
        self._clock = clock
        self._api_calls = api_calls

    def decide(self, request: AuthorizerRequest) -> Decision:
        now = self._clock()
        token = _bearer_token(request.authorization)
        claims = verify_access_token(
            token,
            public_keys_by_kid=self._keys.public_keys_by_kid(),
            issuer=self._issuer,
            audience=self._audience,
            now=now,
        )
        base: dict[str, ContextValue] = {
            "user_id": claims.user_id,
            "role": claims.role,
            "device_id": claims.device_id,
            "correlation_id": request.correlation_id,
        }

        def allow(auth_error: AuthError = AuthError.NONE, retry_after: int = 0) -> Decision:
            context = {**base, "auth_error": auth_error.value, "retry_after": retry_after}
            return Decision(True, claims.user_id, request.method_arn, context)

        # A token of an ended session is refused before anything else it could be told (401 token_revoked).
        if self._sessions.revoked(
            user_id=claims.user_id, session_id=claims.session_id, issued_at=claims.issued_at
        ):
            return allow(AuthError.TOKEN_REVOKED)
        if not role_may_call(claims.role, request.resource):
            return Decision(False, claims.user_id, request.method_arn, {**base, "code": FORBIDDEN})
        if request.device_id is None:
            return allow(AuthError.DEVICE_ID_REQUIRED)
        # Checked before the rate limit, so that someone replaying a stolen token from another device
        # cannot use up the owner's quota, and every mismatch reaches the fraud engine.
        if request.device_id != claims.device_id:
            self._outbox.write(_device_mismatch(request, claims.user_id, claims.device_id))
            return allow(AuthError.DEVICE_MISMATCH)
        try:
            self._limiter.hit(RATE_LIMIT_SCOPE, claims.user_id, self._api_calls, now=now)
        except RateLimited as exc:
            return allow(AuthError.RATE_LIMITED, exc.retry_after)
        return allow()


def role_may_call(role: str, resource: str) -> bool:
    """Whether `role` may call the route `resource` (the first rule whose prefix matches decides)."""
    for prefix, roles in ROLE_RULES:
        if resource == prefix or resource.startswith(prefix + "/"):
            return role in roles
    return True


def _bearer_token(authorization: str | None) -> str:
    match = _BEARER.fullmatch(authorization.strip()) if authorization else None
    if match is None:
        raise Unauthorized("the Authorization header is missing or not a Bearer token", code="invalid_token")
    return match.group(1)


def _single_header(event: Mapping[str, Any], lower_name: str) -> str | None:
    """One header's value, case-insensitively; None when missing or sent more than once (ambiguous)."""
    multi = event.get("multiValueHeaders") or {}
    values = [v for k, vs in multi.items() if k.lower() == lower_name for v in (vs or [])]
    if len(values) > 1:
        return None
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == lower_name and isinstance(value, str):
            return value.strip()
    return values[0].strip() if values and isinstance(values[0], str) else None


def _device_mismatch(request: AuthorizerRequest, user_id: str, token_device_id: str) -> DomainEvent:
    return DomainEvent(
        type=DEVICE_MISMATCH,
        source=EVENT_SOURCE,
        subject=user_id,
        # Whoever holds the token is not known to be its user: that is the point of the event.
        actor=None,
        correlation_id=request.correlation_id,
        data={
            "user_id": user_id,
            "token_device_id": token_device_id,
            "presented_device_id": request.device_id,
            "method": request.http_method,
            "resource": request.resource,
            "source_ip": request.source_ip,
        },
    )

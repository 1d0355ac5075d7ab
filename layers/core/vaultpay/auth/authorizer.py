"""The API's REQUEST authorizer as pure decisions about a token: valid, session live, its role's routes."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from vaultpay.auth.tokens import verify_access_token
from vaultpay.shared import kernel
from vaultpay.shared.caller_checks import single_header
from vaultpay.shared.errors import Unauthorized
from vaultpay.shared.kernel import new_correlation_id

# Route prefixes that only some roles may call; every other protected route is open to every role.
ROLE_RULES: tuple[tuple[str, frozenset[str]], ...] = (("/v1/admin", frozenset({"admin"})),)
FORBIDDEN = "forbidden"

_BEARER = re.compile(r"Bearer +([A-Za-z0-9_.~+/=-]+)", re.IGNORECASE)
# The same rule as vaultpay.shared.http (not imported: that module pulls in the whole resolver stack).
_CORRELATION_ID = re.compile(r"[\x21-\x7e]{1,128}")


class AuthError(StrEnum):
    """A "soft deny": the request is allowed through to the function's resolver, which answers this error
    before any handler code runs (API Gateway gives a Deny one fixed status; the contract needs 401 here)."""

    NONE = ""
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


@dataclass(frozen=True, slots=True)
class AuthorizerRequest:
    """What the authorizer reads of API Gateway's REQUEST authorizer event."""

    method_arn: str
    request_id: str  # API Gateway's id of the request the authorizer runs for ("" when not given)
    resource: str  # the route's resource path as API Gateway matched it, e.g. /v1/admin/audit
    http_method: str
    authorization: str | None
    correlation_id: str

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> AuthorizerRequest:
        context = event.get("requestContext") or {}
        # The route's resource template, not the raw path: API Gateway matched it, the client cannot
        # steer it with encodings or double slashes.
        resource = str(event.get("resource") or context.get("resourcePath") or "")
        request_id = context.get("requestId")
        correlation_id = single_header(event, "x-correlation-id")
        if correlation_id is None or not _CORRELATION_ID.fullmatch(correlation_id):
            # API Gateway's request id also names the request in its own logs.
            has_id = isinstance(request_id, str) and bool(request_id)
            correlation_id = str(request_id) if has_id else new_correlation_id()
        return cls(
            method_arn=str(event.get("methodArn") or ""),
            request_id=request_id if isinstance(request_id, str) else "",
            resource=resource,
            http_method=str(event.get("httpMethod") or context.get("httpMethod") or ""),
            authorization=single_header(event, "authorization"),
            correlation_id=correlation_id,
        )


ContextValue = str | int | bool


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer: `allow` says whether this request's route is open to the caller's role; the policy
    covers every route of the stage, by role, and the context is what the function receives."""

    allow: bool
    principal_id: str
    method_arn: str
    context: Mapping[str, ContextValue]
    role: str

    @property
    def auth_error(self) -> str:
        return str(self.context.get("auth_error", ""))

    def response(self) -> dict[str, Any]:
        """The document API Gateway expects back from a Lambda authorizer."""
        return {
            "principalId": self.principal_id,
            "policyDocument": {"Version": "2012-10-17", "Statement": role_policy(self.method_arn, self.role)},
            "context": dict(self.context),
        }


def role_policy(method_arn: str, role: str) -> list[dict[str, Any]]:
    """The statements for every route of this API stage that `role` may call, and a Deny for the rest.

    API Gateway caches the policy by its identity source (the token) and evaluates the cached one
    against every later request's method ARN: a policy naming only the first request's ARN would deny
    the caller's next route on a cache hit. So the policy never depends on the route that was asked:
    the whole stage is allowed, and each role-restricted prefix the role may not call is denied.
    """
    # arn:aws:execute-api:<region>:<account>:<api id>/<stage>/<METHOD>/<path>
    parts = method_arn.split("/", 2)
    stage_arn = "/".join(parts[:2]) if len(parts) == 3 else method_arn
    statements: list[dict[str, Any]] = [
        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": f"{stage_arn}/*"}
    ]
    denied = [
        resource
        for prefix, roles in ROLE_RULES
        if role not in roles
        for resource in (f"{stage_arn}/*{prefix}", f"{stage_arn}/*{prefix}/*")
    ]
    if denied:
        statements.append({"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": denied})
    return statements


class Authorizer:
    """Decides one token. Raises `Unauthorized` when the caller is not authenticated (API Gateway: 401);
    returns a Deny for a role the route does not allow (403), and an Allow otherwise, with `auth_error` set
    to `token_revoked` when the token's session has ended (the function's resolver answers 401).

    API Gateway caches the decision by the token alone, so it holds nothing about the request it was made
    for but ids: the device header and the per-user count are each request's, and the function behind the
    authorizer checks them (vaultpay.shared.caller_checks), against the token's device named here.
    """

    def __init__(
        self,
        *,
        keys: VerificationKeys,
        issuer: str,
        audience: str,
        sessions: SessionRevocations | None = None,
        clock: Callable[[], float] = kernel.now,
    ) -> None:
        self._keys = keys
        self._sessions = sessions or NoSessionRevocations()
        self._issuer = issuer
        self._audience = audience
        self._clock = clock

    def decide(self, request: AuthorizerRequest) -> Decision:
        token = _bearer_token(request.authorization)
        claims = verify_access_token(
            token,
            public_keys_by_kid=self._keys.public_keys_by_kid(),
            issuer=self._issuer,
            audience=self._audience,
            now=self._clock(),
        )
        base: dict[str, ContextValue] = {
            "user_id": claims.user_id,
            "role": claims.role,
            # The token's device: the function compares each request's X-Device-Id with it.
            "device_id": claims.device_id,
            "correlation_id": request.correlation_id,
            # API Gateway hands a cached decision to later requests: this tells the function which request
            # the decision was made for (vaultpay.shared.caller_checks).
            "request_id": request.request_id,
            # What API Gateway's ACCESS_DENIED answers should the role policy deny a request, this one or,
            # from the cache, a later one (an admin route for a customer).
            "code": FORBIDDEN,
        }

        def allow(auth_error: AuthError = AuthError.NONE) -> Decision:
            context = {**base, "auth_error": auth_error.value, "retry_after": 0}
            return Decision(True, claims.user_id, request.method_arn, context, claims.role)

        # A token of an ended session is refused before anything else it could be told (401 token_revoked).
        if self._sessions.revoked(
            user_id=claims.user_id, session_id=claims.session_id, issued_at=claims.issued_at
        ):
            return allow(AuthError.TOKEN_REVOKED)
        if not role_may_call(claims.role, request.resource):
            return Decision(False, claims.user_id, request.method_arn, base, claims.role)
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

"""Lambda authorizers (TOKEN and REQUEST): their event, their policy's evaluation, their result cache."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from localcloud.apigw.gateway_responses import vtl_text
from localcloud.apigw.integration import IncomingRequest
from localcloud.apigw.routing import RouteMatch
from localcloud.apigw.throttling import Clock
from localcloud.spec import (
    ACCOUNT_ID,
    REGION,
    AuthorizerSpec,
)

_AUTHORIZER_CACHE_MAX_ENTRIES: Final = 10_000

JsonScalar = str | int | float | bool


def method_arn(api_id: str, stage: str, method: str, raw_path: str) -> str:
    """arn:aws:execute-api:<region>:<account>:<apiId>/<stage>/<METHOD>/<path without its leading slash>."""
    return f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{api_id}/{stage}/{method}/{raw_path.lstrip('/')}"


def identity_source_values(
    authorizer: AuthorizerSpec,
    request: IncomingRequest,
    path_parameters: Mapping[str, str] | None,
    stage_variables: Mapping[str, str] | None,
    request_context: Mapping[str, Any] | None = None,
) -> tuple[str, ...] | None:
    """The identity-source values in order, or None when any is missing or empty (API Gateway answers 401)."""
    values: list[str] = []
    for source in authorizer.identity_sources:
        value = _identity_value(source.strip(), request, path_parameters, stage_variables, request_context)
        if not value:
            return None
        values.append(value)
    return tuple(values)


def _identity_value(
    source: str,
    request: IncomingRequest,
    path_parameters: Mapping[str, str] | None,
    stage_variables: Mapping[str, str] | None,
    request_context: Mapping[str, Any] | None,
) -> str | None:
    if source.startswith("context."):  # e.g. context.identity.sourceIp (SAM's Identity.Context)
        value: Any = request_context or {}
        for part in source.split(".")[1:]:
            value = value.get(part) if isinstance(value, Mapping) else None
        return None if value is None else vtl_text(value)
    if source.startswith("method.request.header."):
        return request.header(source[len("method.request.header.") :])
    if source.startswith("method.request.multivalueheader."):
        values = request.lower_multi_headers.get(source[len("method.request.multivalueheader.") :].lower())
        return ",".join(values) if values else None
    if source.startswith("method.request.querystring."):
        return (request.query or {}).get(source[len("method.request.querystring.") :])
    if source.startswith("method.request.multivaluequerystring."):
        multi = (request.multi_query or {}).get(source[len("method.request.multivaluequerystring.") :])
        return ",".join(multi) if multi else None
    if source.startswith("method.request.path."):
        return (path_parameters or {}).get(source[len("method.request.path.") :])
    if source.startswith("stageVariables."):
        return (stage_variables or {}).get(source[len("stageVariables.") :])
    raise ValueError(f"unsupported identity source: {source}")


def build_token_authorizer_event(token: str, arn: str) -> dict[str, Any]:
    return {"type": "TOKEN", "authorizationToken": token, "methodArn": arn}


def build_request_authorizer_event(
    request: IncomingRequest,
    match: RouteMatch,
    request_context: Mapping[str, Any],
    *,
    arn: str,
    stage_variables: Mapping[str, str] | None,
) -> dict[str, Any]:
    """The REQUEST authorizer event; empty maps are {} here (unlike the proxy event's nulls), as AWS sends."""
    return {
        "type": "REQUEST",
        "methodArn": arn,
        "resource": match.route.resource,
        "path": request.raw_path,
        "httpMethod": request.method,
        "headers": request.headers or {},
        "multiValueHeaders": request.multi_headers or {},
        "queryStringParameters": request.query or {},
        "multiValueQueryStringParameters": request.multi_query or {},
        "pathParameters": match.path_parameters or {},
        "stageVariables": dict(stage_variables or {}),
        "requestContext": dict(request_context),
    }


class MalformedAuthorizerResult(ValueError):
    """The authorizer answered something API Gateway cannot use (AUTHORIZER_CONFIGURATION_ERROR)."""


@dataclass(frozen=True, slots=True)
class PolicyStatement:
    allow: bool
    actions: tuple[re.Pattern[str], ...]
    resources: tuple[re.Pattern[str], ...]


@dataclass(frozen=True, slots=True)
class AuthorizerResult:
    principal_id: str
    statements: tuple[PolicyStatement, ...]
    context: dict[str, JsonScalar]
    usage_identifier_key: str | None = None

    def context_for_integration(self, latency_ms: int) -> dict[str, Any]:
        """requestContext.authorizer as the integration (and $context.authorizer) sees it."""
        return {**self.context, "principalId": self.principal_id, "integrationLatency": latency_ms}


_PATTERN_CACHE: dict[tuple[str, bool], re.Pattern[str]] = {}


def _wildcard(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    """IAM-style wildcards: * any run of characters (including / and :), ? exactly one."""
    key = (pattern, ignore_case)
    compiled = _PATTERN_CACHE.get(key)
    if compiled is None:
        body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
        compiled = re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))
        if len(_PATTERN_CACHE) < 4096:  # bounded: policies repeat, but a misbehaving authorizer must not leak
            _PATTERN_CACHE[key] = compiled
    return compiled


def _str_list(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise MalformedAuthorizerResult(f"{what} must be a string or a non-empty list of strings")


def parse_authorizer_result(payload: bytes) -> AuthorizerResult:
    """Validates a REST authorizer's answer and compiles its policy for repeated evaluation."""
    try:
        doc = json.loads(payload)
    except ValueError as exc:
        raise MalformedAuthorizerResult("authorizer result is not JSON") from exc
    if not isinstance(doc, dict):
        raise MalformedAuthorizerResult("authorizer result is not an object")
    principal = doc.get("principalId")
    if isinstance(principal, bool) or not isinstance(principal, str | int | float):
        raise MalformedAuthorizerResult("principalId is missing or not a string")
    policy = doc.get("policyDocument")
    if not isinstance(policy, dict):
        raise MalformedAuthorizerResult("policyDocument is missing or not an object")
    raw_statements = policy.get("Statement")
    if isinstance(raw_statements, dict):
        raw_statements = [raw_statements]
    if not isinstance(raw_statements, list) or not raw_statements:
        raise MalformedAuthorizerResult("policyDocument.Statement is missing or empty")
    statements: list[PolicyStatement] = []
    for raw in raw_statements:
        if not isinstance(raw, dict):
            raise MalformedAuthorizerResult("a policy statement is not an object")
        effect = raw.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise MalformedAuthorizerResult("a policy statement's Effect is not Allow or Deny")
        actions = _str_list(raw.get("Action"), "Action")
        resources = _str_list(raw.get("Resource"), "Resource")
        statements.append(
            PolicyStatement(
                allow=effect == "Allow",
                actions=tuple(_wildcard(a, ignore_case=True) for a in actions),
                resources=tuple(_wildcard(r, ignore_case=False) for r in resources),
            )
        )
    context = doc.get("context")
    if context is None:
        context = {}
    if not isinstance(context, dict) or not all(
        isinstance(v, str | int | float | bool) and isinstance(k, str) for k, v in context.items()
    ):
        # API Gateway refuses objects and arrays as context values.
        raise MalformedAuthorizerResult("context must map names to strings, numbers or booleans")
    usage_key = doc.get("usageIdentifierKey")
    return AuthorizerResult(
        principal_id=str(principal),
        statements=tuple(statements),
        context=dict(context),
        usage_identifier_key=usage_key if isinstance(usage_key, str) else None,
    )


PolicyDecision = Literal["allow", "explicit_deny", "implicit_deny"]


def evaluate_policy(statements: Sequence[PolicyStatement], arn: str) -> PolicyDecision:
    """IAM evaluation for execute-api:Invoke on `arn`: an explicit Deny wins, then any Allow, else deny."""
    allowed = False
    for statement in statements:
        if not any(p.fullmatch("execute-api:Invoke") for p in statement.actions):
            continue
        if not any(p.fullmatch(arn) for p in statement.resources):
            continue
        if not statement.allow:
            return "explicit_deny"
        allowed = True
    return "allow" if allowed else "implicit_deny"


class AuthorizerCache:
    """Authorizer results by (authorizer, identity values), each kept for its authorizer's TTL."""

    def __init__(self, clock: Clock, max_entries: int = _AUTHORIZER_CACHE_MAX_ENTRIES) -> None:
        self._clock = clock
        self._max = max_entries
        self._entries: dict[tuple[str, tuple[str, ...]], tuple[float, AuthorizerResult]] = {}

    def get(self, name: str, key: tuple[str, ...]) -> AuthorizerResult | None:
        entry = self._entries.get((name, key))
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[(name, key)]
            return None
        return entry[1]

    def put(self, name: str, key: tuple[str, ...], result: AuthorizerResult, ttl_s: float) -> None:
        if ttl_s <= 0:
            return
        now = self._clock()
        if len(self._entries) >= self._max:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= self._max:
                self._entries.pop(next(iter(self._entries)))  # oldest insertion first
        self._entries[(name, key)] = (now + ttl_s, result)

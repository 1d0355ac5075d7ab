"""API Gateway REST API emulator: v1 Lambda proxy integration, Lambda authorizers, gateway responses."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import unquote, unquote_plus

from aiohttp import web
from multidict import CIMultiDict

from localcloud.spec import (
    ACCOUNT_ID,
    REGION,
    ApiSpec,
    AuthorizerSpec,
    GatewayResponseSpec,
    Invoker,
    RouteSpec,
)

__all__ = [
    "DEFAULT_INTEGRATION_TIMEOUT_S",
    "EXPLICIT_DENY_MESSAGE",
    "MAX_PAYLOAD_BYTES",
    "AuthorizerCache",
    "AuthorizerResult",
    "BinaryMediaTypes",
    "GatewayResponses",
    "IncomingRequest",
    "MalformedAuthorizerResult",
    "MalformedProxyResponse",
    "PolicyDecision",
    "PolicyStatement",
    "ProxyResponse",
    "RenderScope",
    "RenderedResponse",
    "RequestMeta",
    "RouteMatch",
    "RouteTable",
    "Template",
    "TokenBucket",
    "build_api_app",
    "build_proxy_event",
    "build_request_authorizer_event",
    "build_request_context",
    "build_token_authorizer_event",
    "compile_routes",
    "compile_template",
    "encode_request_body",
    "escape_javascript",
    "evaluate_policy",
    "format_request_time",
    "forwarded_header_pairs",
    "identity_source_values",
    "make_request",
    "method_arn",
    "new_request_meta",
    "parse_authorizer_result",
    "parse_proxy_response",
    "parse_query_string",
    "should_decode_response",
]

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES: Final = 10 * 1024 * 1024  # API Gateway's request payload quota
DEFAULT_INTEGRATION_TIMEOUT_S: Final = 29.0  # API Gateway's default integration timeout
_AUTHORIZER_CACHE_MAX_ENTRIES: Final = 10_000

JsonScalar = str | int | float | bool
Clock = Callable[[], float]


# ----------------------------------------------------------------------------------------------------
# Route matching
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteMatch:
    route: RouteSpec
    resource_id: str
    path_parameters: dict[str, str] | None  # None when the resource has no variables, as API Gateway sends


@dataclass(slots=True)
class _Node:
    resource: str
    literals: dict[str, _Node] = field(default_factory=dict)
    param_name: str | None = None
    param: _Node | None = None
    greedy_name: str | None = None
    greedy: _Node | None = None
    methods: dict[str, RouteSpec] = field(default_factory=dict)


def _resource_id(resource: str) -> str:
    # Stable across restarts so logs and tests can refer to it; AWS ids are 6-10 lowercase characters.
    return hashlib.sha256(resource.encode()).hexdigest()[:6]


def _decode_segment(segment: str) -> str:
    # Unlike the query string, '+' stays '+' in a path.
    return unquote(segment) if "%" in segment else segment


class RouteTable:
    """The API's resource tree, compiled once; `match` walks it without regular expressions."""

    def __init__(self, root: _Node, resource_ids: Mapping[str, str]) -> None:
        self._root = root
        self._resource_ids = dict(resource_ids)

    def match(self, method: str, raw_path: str) -> RouteMatch | None:
        """The most specific resource that has `method` (or ANY): literal, then {param}, then {greedy+}.

        The choice is made on the (resource, method) pair, as API Gateway does: a literal resource without the
        request's method yields to a {param} sibling or a greedy ancestor that has it (measured on AWS).
        """
        segments = [s for s in raw_path.split("/") if s]
        found = self._walk(self._root, segments, 0, method, [])
        if found is None:
            return None
        node, route, captured = found
        params = dict(captured) if captured else None
        return RouteMatch(route=route, resource_id=self._resource_ids[node.resource], path_parameters=params)

    def _walk(
        self, node: _Node, segments: list[str], index: int, method: str, captured: list[tuple[str, str]]
    ) -> tuple[_Node, RouteSpec, list[tuple[str, str]]] | None:
        if index == len(segments):
            route = node.methods.get(method) or node.methods.get("ANY")
            return (node, route, captured) if route is not None else None
        segment = _decode_segment(segments[index])
        literal = node.literals.get(segment)
        if literal is not None:
            found = self._walk(literal, segments, index + 1, method, captured)
            if found is not None:
                return found
        if node.param is not None and node.param_name is not None:
            found = self._walk(
                node.param, segments, index + 1, method, [*captured, (node.param_name, segment)]
            )
            if found is not None:
                return found
        if node.greedy is not None and node.greedy_name is not None:
            route = node.greedy.methods.get(method) or node.greedy.methods.get("ANY")
            if route is not None:
                rest = unquote("/".join(segments[index:]))
                return node.greedy, route, [*captured, (node.greedy_name, rest)]
        return None


_VARIABLE = re.compile(r"^\{([A-Za-z0-9._-]+)(\+?)\}$")


def compile_routes(routes: Iterable[RouteSpec]) -> RouteTable:
    """Builds the resource tree; raises ValueError for a tree API Gateway itself would refuse."""
    root = _Node(resource="/")
    resource_ids = {"/": _resource_id("/")}
    for route in routes:
        method = route.method.upper()
        node = root
        parts = [p for p in route.resource.split("/") if p]
        for position, part in enumerate(parts):
            resource = "/" + "/".join(parts[: position + 1])
            variable = _VARIABLE.match(part)
            if variable is None:
                node = node.literals.setdefault(part, _Node(resource=resource))
            elif variable.group(2):
                if position != len(parts) - 1:
                    raise ValueError(f"greedy path variable must be the last part: {route.resource}")
                name = variable.group(1)
                if node.greedy is None:
                    node.greedy_name, node.greedy = name, _Node(resource=resource)
                elif node.greedy_name != name:
                    raise ValueError(f"two greedy variables under one resource: {route.resource}")
                node = node.greedy
            else:
                name = variable.group(1)
                if node.param is None:
                    node.param_name, node.param = name, _Node(resource=resource)
                elif node.param_name != name:
                    # API Gateway: "A sibling ({x}) of this resource already has a variable path part".
                    raise ValueError(
                        f"conflicting path variables {{{node.param_name}}} and {part}: {route.resource}"
                    )
                node = node.param
            resource_ids.setdefault(node.resource, _resource_id(node.resource))
        if method in node.methods:
            raise ValueError(f"duplicate route {method} {route.resource}")
        node.methods[method] = route
    return RouteTable(root, resource_ids)


# ----------------------------------------------------------------------------------------------------
# The request as API Gateway sees it, and the Lambda proxy event
# ----------------------------------------------------------------------------------------------------


def parse_query_string(raw: str) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    """(queryStringParameters, multiValueQueryStringParameters): last value wins; None when there are none.

    Keys and values are decoded with '+' as a space, as API Gateway does.
    """
    if not raw:
        return None, None
    multi: dict[str, list[str]] = {}
    for pair in raw.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        key = unquote_plus(key) if ("%" in key or "+" in key) else key
        value = unquote_plus(value) if ("%" in value or "+" in value) else value
        multi.setdefault(key, []).append(value)
    if not multi:
        return None, None
    return {k: v[-1] for k, v in multi.items()}, multi


@dataclass(frozen=True, slots=True)
class IncomingRequest:
    """One client request, decoded once and shared by the authorizer and the integration."""

    method: str
    raw_path: str  # as sent, percent-encoded, without the query string
    headers: dict[str, str] | None  # last value per name (original casing)
    multi_headers: dict[str, list[str]] | None
    query: dict[str, str] | None
    multi_query: dict[str, list[str]] | None
    body: bytes
    source_ip: str
    protocol: str
    lower_headers: dict[str, str]  # lower-cased name -> last value, for case-insensitive look-ups
    lower_multi_headers: dict[str, list[str]]

    def header(self, name: str) -> str | None:
        return self.lower_headers.get(name.lower())


def make_request(
    method: str,
    raw_target: str,
    header_pairs: Iterable[tuple[str, str]],
    body: bytes,
    *,
    source_ip: str,
    protocol: str = "HTTP/1.1",
) -> IncomingRequest:
    """Builds an IncomingRequest from the request line, headers (repeats kept, in order) and body."""
    raw_path, _, query_string = raw_target.partition("?")
    multi: dict[str, list[str]] = {}
    lower_multi: dict[str, list[str]] = {}
    canonical: dict[str, str] = {}  # lower name -> the casing first seen, so repeats share one key
    for name, value in header_pairs:
        lower = name.lower()
        key = canonical.setdefault(lower, name)
        multi.setdefault(key, []).append(value)
        lower_multi.setdefault(lower, []).append(value)
    query, multi_query = parse_query_string(query_string)
    return IncomingRequest(
        method=method.upper(),
        raw_path=raw_path or "/",
        headers={k: v[-1] for k, v in multi.items()} or None,
        multi_headers=multi or None,
        query=query,
        multi_query=multi_query,
        body=body,
        source_ip=source_ip,
        protocol=protocol,
        lower_headers={k: v[-1] for k, v in lower_multi.items()},
        lower_multi_headers=lower_multi,
    )


def forwarded_header_pairs(
    pairs: Iterable[tuple[str, str]], *, source_ip: str, port: int, trace_id: str
) -> list[tuple[str, str]]:
    """The client's headers plus what API Gateway adds: X-Forwarded-For/Port/Proto and X-Amzn-Trace-Id."""
    out: list[tuple[str, str]] = []
    forwarded_for: str | None = None
    has_trace = False
    for name, value in pairs:
        lower = name.lower()
        if lower == "x-forwarded-for":
            forwarded_for = value if forwarded_for is None else f"{forwarded_for}, {value}"
            continue
        if lower in ("x-forwarded-port", "x-forwarded-proto"):
            continue  # API Gateway overwrites these with its own listener's values
        has_trace = has_trace or lower == "x-amzn-trace-id"
        out.append((name, value))
    out.append(("X-Forwarded-For", source_ip if forwarded_for is None else f"{forwarded_for}, {source_ip}"))
    out.append(("X-Forwarded-Port", str(port)))
    out.append(("X-Forwarded-Proto", "http"))
    if not has_trace:
        out.append(("X-Amzn-Trace-Id", trace_id))
    return out


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """Per-request identifiers and times that appear in events, templates and response headers."""

    request_id: str
    extended_request_id: str
    trace_id: str
    epoch_s: float
    domain_name: str


_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_request_time(epoch_s: float) -> str:
    """CLF time as in requestContext.requestTime: "09/Apr/2015:12:34:56 +0000" (locale-independent)."""
    t = time.gmtime(epoch_s)
    month = _MONTHS[t.tm_mon - 1]
    return f"{t.tm_mday:02d}/{month}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def new_request_meta(epoch_s: float, domain_name: str, trace_header: str | None) -> RequestMeta:
    # extendedRequestId looks like AWS's (base64 of random bytes); the trace id follows the X-Ray format.
    extended = base64.b64encode(os.urandom(10)).decode()
    trace = trace_header or f"Root=1-{int(epoch_s):08x}-{os.urandom(12).hex()}"
    return RequestMeta(str(uuid.uuid4()), extended, trace, epoch_s, domain_name)


def build_request_context(
    request: IncomingRequest,
    *,
    resource_path: str,
    resource_id: str,
    meta: RequestMeta,
    api_id: str,
    stage: str,
) -> dict[str, Any]:
    """requestContext of the proxy event (and of the REQUEST authorizer event), without `authorizer`."""
    host = meta.domain_name
    return {
        "resourceId": resource_id,
        "resourcePath": resource_path,
        "httpMethod": request.method,
        "extendedRequestId": meta.extended_request_id,
        "requestTime": format_request_time(meta.epoch_s),
        "path": f"/{stage}{request.raw_path}",
        "accountId": ACCOUNT_ID,
        "protocol": request.protocol,
        "stage": stage,
        "domainPrefix": host.split(":", 1)[0].split(".", 1)[0],
        "requestTimeEpoch": int(meta.epoch_s * 1000),
        "requestId": meta.request_id,
        "identity": {
            "cognitoIdentityPoolId": None,
            "accountId": None,
            "cognitoIdentityId": None,
            "caller": None,
            "sourceIp": request.source_ip,
            "principalOrgId": None,
            "accessKey": None,
            "cognitoAuthenticationType": None,
            "cognitoAuthenticationProvider": None,
            "userArn": None,
            "userAgent": request.header("User-Agent"),
            "user": None,
        },
        "domainName": host,
        "apiId": api_id,
    }


class BinaryMediaTypes:
    """The API's binaryMediaTypes: exact types, "type/*" and "*/*"; "~1" (the SAM escape of "/") accepted."""

    def __init__(self, types: Iterable[str]) -> None:
        exact: set[str] = set()
        prefixes: set[str] = set()
        self.any = False
        for raw in types:
            media = raw.replace("~1", "/").strip().lower()
            if media == "*/*":
                self.any = True
            elif media.endswith("/*"):
                prefixes.add(media[:-1])
            elif media:
                exact.add(media)
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)
        self.empty = not (self.any or exact or prefixes)

    def matches(self, content_type: str | None) -> bool:
        if self.empty or not content_type:
            return False
        if self.any:
            return True
        media = content_type.split(";", 1)[0].strip().lower()
        return media in self._exact or media.startswith(self._prefixes)


def encode_request_body(
    body: bytes, content_type: str | None, binary: BinaryMediaTypes
) -> tuple[str | None, bool]:
    """(body, isBase64Encoded) for an event: null when empty; base64 for binary types or non-UTF-8 bytes."""
    if not body:
        return None, False
    if not binary.matches(content_type):
        with contextlib.suppress(UnicodeDecodeError):
            return body.decode("utf-8"), False
    return base64.b64encode(body).decode("ascii"), True


def build_proxy_event(
    request: IncomingRequest,
    match: RouteMatch,
    request_context: Mapping[str, Any],
    *,
    stage_variables: Mapping[str, str] | None,
    binary: BinaryMediaTypes,
    authorizer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The v1 Lambda proxy event, in the shape and key order API Gateway sends."""
    body, is_base64 = encode_request_body(request.body, request.header("Content-Type"), binary)
    context = dict(request_context)
    if authorizer is not None:
        context["authorizer"] = dict(authorizer)
    return {
        "resource": match.route.resource,
        "path": request.raw_path,
        "httpMethod": request.method,
        "headers": request.headers,
        "multiValueHeaders": request.multi_headers,
        "queryStringParameters": request.query,
        "multiValueQueryStringParameters": request.multi_query,
        "pathParameters": match.path_parameters,
        "stageVariables": dict(stage_variables) if stage_variables else None,
        "requestContext": context,
        "body": body,
        "isBase64Encoded": is_base64,
    }


# ----------------------------------------------------------------------------------------------------
# Lambda authorizers
# ----------------------------------------------------------------------------------------------------


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
        return None if value is None else _vtl_text(value)
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


# ----------------------------------------------------------------------------------------------------
# The Lambda's proxy response
# ----------------------------------------------------------------------------------------------------


class MalformedProxyResponse(ValueError):
    """The function answered something that is not a valid Lambda proxy response (502)."""


@dataclass(frozen=True, slots=True)
class ProxyResponse:
    status: int
    headers: CIMultiDict[str]  # headers and multiValueHeaders merged
    body: str | None
    is_base64: bool


_RESPONSE_KEYS: Final = frozenset(
    {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded", "base64Encoded", "cookies"}
)
# Framing belongs to our HTTP server, not to the function; forwarding these would corrupt the response.
_DROPPED_RESPONSE_HEADERS: Final = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive"}
)


def _scalar_text(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise MalformedProxyResponse(f"{what} must be a string")


def parse_proxy_response(payload: bytes) -> ProxyResponse:
    """Validates a v1 proxy response as a REST API does (unknown keys and a missing statusCode are errors)."""
    try:
        doc = json.loads(payload)
    except ValueError as exc:
        raise MalformedProxyResponse("response is not JSON") from exc
    if not isinstance(doc, dict):
        raise MalformedProxyResponse("response is not a JSON object")
    unknown = doc.keys() - _RESPONSE_KEYS
    if unknown:
        raise MalformedProxyResponse(f"unknown response keys: {sorted(unknown)}")
    status = doc.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise MalformedProxyResponse("statusCode is missing or not an HTTP status")
    headers: CIMultiDict[str] = CIMultiDict()
    multi = doc.get("multiValueHeaders") or {}
    single = doc.get("headers") or {}
    if not isinstance(multi, dict) or not isinstance(single, dict):
        raise MalformedProxyResponse("headers and multiValueHeaders must be objects")
    for name, values in multi.items():
        if not isinstance(values, list):
            raise MalformedProxyResponse("multiValueHeaders values must be lists")
        for value in values:
            if value is not None:
                headers.add(name, _scalar_text(value, "a header value"))
    for name, value in single.items():
        if value is None:
            continue
        text = _scalar_text(value, "a header value")
        # API Gateway merges both maps; a pair present in both appears once.
        if text not in headers.getall(name, []):
            headers.add(name, text)
    for name in _DROPPED_RESPONSE_HEADERS:
        headers.popall(name, None)
    body = doc.get("body")
    if body is not None and not isinstance(body, str):
        if isinstance(body, dict | list):
            raise MalformedProxyResponse("body must be a string")
        body = _scalar_text(body, "body")
    flag = doc.get("base64Encoded", doc.get("isBase64Encoded", False))
    if isinstance(flag, str) and flag.lower() in ("true", "false"):
        flag = flag.lower() == "true"
    if not isinstance(flag, bool):
        raise MalformedProxyResponse("isBase64Encoded must be a boolean")
    return ProxyResponse(status=status, headers=headers, body=body, is_base64=flag)


def should_decode_response(accept: str | None, content_type: str | None, binary: BinaryMediaTypes) -> bool:
    """API Gateway decodes a base64 body only when the first Accept type is a binary media type.

    Without an Accept header the response's own Content-Type decides (an emulator choice, documented).
    """
    if binary.empty:
        return False
    if accept:
        return binary.matches(accept.split(",", 1)[0])
    return binary.matches(content_type)


# ----------------------------------------------------------------------------------------------------
# Gateway responses and the small VTL subset they need
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Builtin:
    status: int
    error_type: str
    message: str | None
    template: str = '{"message":$context.error.messageString}'


_BUILTINS: Final[dict[str, _Builtin]] = {
    "MISSING_AUTHENTICATION_TOKEN": _Builtin(
        403, "MissingAuthenticationTokenException", "Missing Authentication Token"
    ),
    "UNAUTHORIZED": _Builtin(401, "UnauthorizedException", "Unauthorized"),
    # API Gateway's built-in ACCESS_DENIED body really says "Message" with a capital M.
    "ACCESS_DENIED": _Builtin(
        403,
        "AccessDeniedException",
        "User is not authorized to access this resource",
        '{"Message":$context.error.messageString}',
    ),
    "THROTTLED": _Builtin(429, "TooManyRequestsException", "Too Many Requests"),
    "AUTHORIZER_FAILURE": _Builtin(500, "AuthorizerFailureException", None),
    "AUTHORIZER_CONFIGURATION_ERROR": _Builtin(500, "AuthorizerConfigurationException", None),
    # Function errors, invoke failures and malformed proxy responses: 502 "Internal server error".
    "INTEGRATION_FAILURE": _Builtin(502, "InternalServerErrorException", "Internal server error"),
    "INTEGRATION_TIMEOUT": _Builtin(504, "InternalServerErrorException", "Endpoint request timed out"),
    "REQUEST_TOO_LARGE": _Builtin(413, "RequestTooLargeException", "Request Too Long"),
    "DEFAULT_4XX": _Builtin(400, "BadRequestException", None),
    "DEFAULT_5XX": _Builtin(500, "InternalServerErrorException", None),
}
# Every type AWS::ApiGateway::GatewayResponse accepts; the emulator raises only those in _BUILTINS.
_RESPONSE_TYPES: Final = frozenset(
    {
        *_BUILTINS,
        "API_CONFIGURATION_ERROR",
        "BAD_REQUEST_BODY",
        "BAD_REQUEST_PARAMETERS",
        "EXPIRED_TOKEN",
        "INVALID_API_KEY",
        "INVALID_SIGNATURE",
        "QUOTA_EXCEEDED",
        "RESOURCE_NOT_FOUND",
        "UNSUPPORTED_MEDIA_TYPE",
        "WAF_FILTERED",
    }
)
EXPLICIT_DENY_MESSAGE: Final = "User is not authorized to access this resource with an explicit deny"


@dataclass(frozen=True, slots=True)
class RenderScope:
    """What $context / stageVariables / method.request.* resolve against when rendering a response."""

    context: Mapping[str, Any]
    stage_variables: Mapping[str, str]
    request: IncomingRequest | None
    path_parameters: Mapping[str, str] | None

    def resolve(self, path: tuple[str, ...]) -> Any:
        head, rest = path[0], path[1:]
        if head == "context":
            value: Any = self.context
            for part in rest:
                if not isinstance(value, Mapping):
                    return None
                value = value.get(part)
            return value
        if head == "stageVariables":
            return self.stage_variables.get(rest[0]) if len(rest) == 1 else None
        if head == "method" and len(rest) == 3 and rest[0] == "request":
            kind, name = rest[1], rest[2]
            request = self.request
            if request is None:
                return None
            if kind == "header":
                return request.header(name)
            if kind == "multivalueheader":
                values = request.lower_multi_headers.get(name.lower())
                return ",".join(values) if values else None
            if kind == "querystring":
                return (request.query or {}).get(name)
            if kind == "multivaluequerystring":
                multi = (request.multi_query or {}).get(name)
                return ",".join(multi) if multi else None
            if kind == "path":
                return (self.path_parameters or {}).get(name)
        return None


def _vtl_text(value: Any) -> str:
    """How Velocity prints a value: missing renders empty, booleans lower-case."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, separators=(",", ":"))


def escape_javascript(text: str) -> str:
    """$util.escapeJavaScript: Java StringEscapeUtils rules, \\' too (invalid JSON, as on AWS)."""
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch in "\"'\\/":
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif code < 0x20 or code > 0x7E:
            out.extend(f"\\u{unit:04X}" for unit in _utf16_units(code))
        else:
            out.append(ch)
    return "".join(out)


def _utf16_units(code: int) -> tuple[int, ...]:
    if code <= 0xFFFF:
        return (code,)
    code -= 0x10000
    return (0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF))


_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_REF_PATH = rf"(?:context|stageVariables)(?:\.{_IDENT})+"
_TEMPLATE_TOKEN = re.compile(
    rf"\$util\.escapeJavaScript\(\s*\$!?(?P<eb>\{{)?(?P<escaped>{_REF_PATH})(?(eb)\}})\s*\)"
    rf"|\$(?P<quiet>!)?(?P<brace>\{{)?(?P<ref>{_REF_PATH})(?(brace)\}})"
)
_UNSUPPORTED_VTL = re.compile(
    r"#(?:set|if|elseif|foreach|macro|define|parse|include|evaluate)\s*\(|#(?:else|end)\b|\$!?\{?[A-Za-z]"
)


@dataclass(frozen=True, slots=True)
class _Ref:
    path: tuple[str, ...]
    escape: bool


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled mapping template: literal text and $context / $stageVariables references."""

    parts: tuple[str | _Ref, ...]

    def render(self, scope: RenderScope) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                text = _vtl_text(scope.resolve(part.path))
                out.append(escape_javascript(text) if part.escape else text)
        return "".join(out)


def compile_template(text: str) -> Template:
    """Compiles the supported VTL subset; raises ValueError on anything else rather than render it wrongly.

    Supported: $context.x.y / ${context.x.y} / $!context.x.y, the same for $stageVariables.name, and
    $util.escapeJavaScript(<one of those>). Directives (#set, #if, #foreach ...), $input and other $util
    functions are refused.
    """
    parts: list[str | _Ref] = []
    position = 0
    for token in _TEMPLATE_TOKEN.finditer(text):
        literal = text[position : token.start()]
        _refuse_unsupported(literal, text)
        if literal:
            parts.append(literal)
        path = token.group("escaped") or token.group("ref")
        parts.append(_Ref(tuple(path.split(".")), escape=token.group("escaped") is not None))
        position = token.end()
    tail = text[position:]
    _refuse_unsupported(tail, text)
    if tail:
        parts.append(tail)
    return Template(tuple(parts))


def _refuse_unsupported(literal: str, template: str) -> None:
    found = _UNSUPPORTED_VTL.search(literal)
    if found is not None:
        raise ValueError(f"unsupported VTL at {found.group(0)!r} in gateway response template {template!r}")


ValueExpr = Callable[[RenderScope], str | None]


def _compile_parameter(expression: str) -> ValueExpr:
    """A response parameter's source: 'literal', method.request.*, context.*, stageVariables.*."""
    expression = expression.strip()
    if len(expression) >= 2 and expression[0] == expression[-1] == "'":
        literal = expression[1:-1]
        return lambda _scope: literal
    path = tuple(expression.split("."))
    valid = (
        (path[0] == "context" and len(path) >= 2)
        or (path[0] == "stageVariables" and len(path) == 2)
        or (
            len(path) == 4
            and path[:2] == ("method", "request")
            and path[2] in ("header", "multivalueheader", "querystring", "multivaluequerystring", "path")
        )
    )
    if not valid:
        raise ValueError(f"unsupported gateway response parameter source: {expression!r}")

    def resolve(scope: RenderScope) -> str | None:
        value = scope.resolve(path)
        return None if value is None else _vtl_text(value)

    return resolve


@dataclass(frozen=True, slots=True)
class RenderedResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True, slots=True)
class _CompiledGatewayResponse:
    status: int | None
    headers: tuple[tuple[str, ValueExpr], ...]
    templates: tuple[tuple[str, Template], ...]  # application/json first


class GatewayResponses:
    """The API's gateway responses, compiled once, with API Gateway's fallbacks.

    A type's own definition wins; otherwise DEFAULT_4XX or DEFAULT_5XX (by the type's status class); otherwise
    the built-in response. The definition in force supplies status override, headers and template; a missing
    template falls back to the built-in one.
    """

    def __init__(self, specs: Iterable[GatewayResponseSpec]) -> None:
        self._compiled: dict[str, _CompiledGatewayResponse] = {}
        self._builtin_templates = {name: compile_template(b.template) for name, b in _BUILTINS.items()}
        for spec in specs:
            if spec.response_type not in _RESPONSE_TYPES:
                raise ValueError(f"unknown gateway response type: {spec.response_type!r}")
            headers: list[tuple[str, ValueExpr]] = []
            for key, expression in spec.response_parameters.items():
                prefix = "gatewayresponse.header."
                if not key.startswith(prefix):
                    raise ValueError(f"unsupported gateway response parameter: {key!r}")
                headers.append((key[len(prefix) :], _compile_parameter(expression)))
            templates = sorted(spec.response_templates.items(), key=lambda kv: kv[0] != "application/json")
            self._compiled[spec.response_type] = _CompiledGatewayResponse(
                status=spec.status_code,
                headers=tuple(headers),
                templates=tuple((ct, compile_template(t)) for ct, t in templates),
            )

    def render(self, response_type: str, scope: RenderScope) -> RenderedResponse:
        builtin = _BUILTINS[response_type]
        spec = self._compiled.get(response_type) or self._compiled.get(
            "DEFAULT_4XX" if builtin.status < 500 else "DEFAULT_5XX"
        )
        status = spec.status if spec is not None and spec.status is not None else builtin.status
        if spec is not None and spec.templates:
            content_type, template = spec.templates[0]
        else:
            content_type, template = "application/json", self._builtin_templates[response_type]
        headers = [("Content-Type", content_type)]
        if spec is not None:
            for name, expression in spec.headers:
                value = expression(scope)
                if value:
                    if name.lower() == "content-type":
                        headers[0] = ("Content-Type", value)
                    else:
                        headers.append((name, value))
        return RenderedResponse(status=status, headers=headers, body=template.render(scope).encode())


# ----------------------------------------------------------------------------------------------------
# Stage throttling
# ----------------------------------------------------------------------------------------------------


class TokenBucket:
    """Stage throttling: `burst` tokens, refilled at `rate` per second."""

    def __init__(self, rate: float, burst: int | None, clock: Clock) -> None:
        self._rate = max(rate, 0.0)
        self._capacity = float(burst if burst is not None else max(1, math.ceil(rate)))
        self._tokens = self._capacity
        self._clock = clock
        self._last = clock()

    def try_acquire(self) -> bool:
        now = self._clock()
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
            self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


# ----------------------------------------------------------------------------------------------------
# The HTTP server
# ----------------------------------------------------------------------------------------------------


class _GatewayError(Exception):
    """Ends a request with a gateway response of `response_type`."""

    def __init__(
        self, response_type: str, message: str | None = None, authorizer: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(response_type)
        self.response_type = response_type
        self.message = message if message is not None else _BUILTINS[response_type].message
        self.authorizer = authorizer


class _FunctionFailed(Exception):
    """The invoke failed, or the function raised (then `error_message` is its errorMessage)."""

    def __init__(self, reason: str, error_message: str | None = None) -> None:
        super().__init__(reason)
        self.error_message = error_message


class _ApiGateway:
    """One REST API stage served over HTTP; state: throttle bucket, authorizer cache, in-flight invokes."""

    def __init__(
        self,
        api: ApiSpec,
        invoker: Invoker,
        *,
        clock: Clock,
        integration_timeout_s: float,
        stage_variables: Mapping[str, str] | None,
    ) -> None:
        self._api = api
        self._invoker = invoker
        self._clock = clock
        self._timeout_s = integration_timeout_s
        self._stage_variables = dict(stage_variables or {})
        self._routes = compile_routes(api.routes)
        self._responses = GatewayResponses(api.gateway_responses)
        self._binary = BinaryMediaTypes(api.binary_media_types)
        self._bucket = (
            TokenBucket(api.throttle_rate, api.throttle_burst, clock)
            if api.throttle_rate is not None
            else None
        )
        self._cache = AuthorizerCache(clock)
        self._in_flight: set[asyncio.Future[Any]] = set()
        for route in api.routes:
            if route.authorizer is not None:
                _check_authorizer(route.authorizer)

    async def close(self, _app: web.Application) -> None:
        for task in list(self._in_flight):
            task.cancel()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        # Not request.host: without a Host header it falls back to a DNS look-up of our own name.
        host = request.headers.get("Host") or "127.0.0.1"
        meta = new_request_meta(self._clock(), host, request.headers.get("X-Amzn-Trace-Id"))
        incoming: IncomingRequest | None = None
        match: RouteMatch | None = None
        try:
            if self._bucket is not None and not self._bucket.try_acquire():
                raise _GatewayError("THROTTLED")
            if (request.content_length or 0) > MAX_PAYLOAD_BYTES:
                raise _GatewayError("REQUEST_TOO_LARGE")
            raw_path = request.raw_path.partition("?")[0]
            match = self._routes.match(request.method, raw_path)
            if match is None:
                raise _GatewayError("MISSING_AUTHENTICATION_TOKEN")
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise _GatewayError("REQUEST_TOO_LARGE") from None
            incoming = self._incoming(request, body, meta)
            return await self._serve(incoming, match, meta)
        except _GatewayError as error:
            if incoming is None:  # method.request.* and $context still resolve on early errors
                incoming = self._incoming(request, b"", meta)
            return self._error_response(error, meta, incoming, match)

    def _incoming(self, request: web.Request, body: bytes, meta: RequestMeta) -> IncomingRequest:
        source_ip = request.remote or "127.0.0.1"
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        port = sockname[1] if isinstance(sockname, tuple) and len(sockname) >= 2 else 0
        # raw_headers, not headers: aiohttp re-cases well-known names (X-Correlation-Id -> X-Correlation-ID),
        # while API Gateway hands the function the client's own casing.
        sent = [(name.decode("latin-1"), _header_text(value)) for name, value in request.raw_headers]
        pairs = forwarded_header_pairs(sent, source_ip=source_ip, port=port, trace_id=meta.trace_id)
        version = request.version
        return make_request(
            request.method,
            request.raw_path,
            pairs,
            body,
            source_ip=source_ip,
            protocol=f"HTTP/{version.major}.{version.minor}",
        )

    async def _serve(self, incoming: IncomingRequest, match: RouteMatch, meta: RequestMeta) -> web.Response:
        api = self._api
        context = build_request_context(
            incoming,
            resource_path=match.route.resource,
            resource_id=match.resource_id,
            meta=meta,
            api_id=api.rest_api_id,
            stage=api.stage_name,
        )
        authorizer_context = None
        if match.route.authorizer is not None:
            authorizer_context = await self._authorize(match.route.authorizer, incoming, match, context)
        function = match.route.function_name
        if function is None:
            log.warning("%s %s has no Lambda proxy integration", match.route.method, match.route.resource)
            raise _GatewayError("INTEGRATION_FAILURE")
        event = build_proxy_event(
            incoming,
            match,
            context,
            stage_variables=self._stage_variables,
            binary=self._binary,
            authorizer=authorizer_context,
        )
        try:
            result_payload = await self._invoke(function, event)
        except _FunctionFailed as failure:
            log.warning("integration %s failed: %s", function, failure)
            raise _GatewayError("INTEGRATION_FAILURE") from None
        try:
            proxy = parse_proxy_response(result_payload)
        except MalformedProxyResponse as exc:
            log.warning("malformed Lambda proxy response from %s: %s", function, exc)
            raise _GatewayError("INTEGRATION_FAILURE") from None
        return self._integration_response(proxy, incoming, meta)

    async def _invoke(self, function: str, event: Mapping[str, Any]) -> bytes:
        """Invokes with the integration timeout; on timeout the function keeps running, as on AWS."""
        payload = json.dumps(event, separators=(",", ":")).encode()
        task = asyncio.ensure_future(self._invoker.invoke(function, payload))
        self._in_flight.add(task)
        task.add_done_callback(self._forget)
        try:
            result = await asyncio.wait_for(asyncio.shield(task), self._timeout_s)
        except TimeoutError:
            raise _GatewayError("INTEGRATION_TIMEOUT") from None
        except Exception as exc:  # FunctionNotFound, connection errors: the integration could not be reached
            raise _FunctionFailed(f"invoke failed: {type(exc).__name__}") from exc
        if result.function_error:
            raise _FunctionFailed(f"function error ({result.function_error})", _error_message(result.payload))
        if result.status != 200:
            raise _FunctionFailed(f"invoke answered HTTP {result.status}")
        return result.payload

    def _forget(self, task: asyncio.Future[Any]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so a timed-out invoke that later fails is not reported as unhandled

    async def _authorize(
        self,
        authorizer: AuthorizerSpec,
        incoming: IncomingRequest,
        match: RouteMatch,
        request_context: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Runs (or reuses) the authorizer; returns requestContext.authorizer or raises _GatewayError."""
        api = self._api
        key = identity_source_values(
            authorizer, incoming, match.path_parameters, self._stage_variables, request_context
        )
        if key is None:
            raise _GatewayError("UNAUTHORIZED")
        arn = method_arn(api.rest_api_id, api.stage_name, incoming.method, incoming.raw_path)
        cacheable = authorizer.ttl_s > 0 and bool(authorizer.identity_sources)
        result = self._cache.get(authorizer.name, key) if cacheable else None
        latency_ms = 0
        if result is None:
            if authorizer.kind.lower() == "token":
                event = build_token_authorizer_event(key[0], arn)
            else:
                event = build_request_authorizer_event(
                    incoming, match, request_context, arn=arn, stage_variables=self._stage_variables
                )
            started = time.perf_counter()
            try:
                payload = await self._invoke(authorizer.function_name, event)
            except _GatewayError:
                raise _GatewayError("AUTHORIZER_FAILURE") from None
            except _FunctionFailed as failure:
                if failure.error_message == "Unauthorized":
                    raise _GatewayError("UNAUTHORIZED") from None
                log.warning("authorizer %s failed: %s", authorizer.name, failure)
                kind = (
                    "AUTHORIZER_CONFIGURATION_ERROR"
                    if failure.error_message is not None
                    else "AUTHORIZER_FAILURE"
                )
                raise _GatewayError(kind) from None
            latency_ms = int((time.perf_counter() - started) * 1000)
            try:
                result = parse_authorizer_result(payload)
            except MalformedAuthorizerResult as exc:
                log.warning("authorizer %s answered a malformed result: %s", authorizer.name, exc)
                raise _GatewayError("AUTHORIZER_CONFIGURATION_ERROR") from None
            if cacheable:
                self._cache.put(authorizer.name, key, result, authorizer.ttl_s)
        context = result.context_for_integration(latency_ms)
        decision = evaluate_policy(result.statements, arn)
        if decision == "explicit_deny":
            raise _GatewayError("ACCESS_DENIED", EXPLICIT_DENY_MESSAGE, context)
        if decision == "implicit_deny":
            raise _GatewayError("ACCESS_DENIED", authorizer=context)
        return context

    def _integration_response(
        self, proxy: ProxyResponse, incoming: IncomingRequest, meta: RequestMeta
    ) -> web.Response:
        headers = proxy.headers
        if "Content-Type" not in headers:
            headers["Content-Type"] = "application/json"  # API Gateway's default for proxy responses
        body = b""
        if proxy.body:
            if proxy.is_base64 and should_decode_response(
                incoming.header("Accept"), headers.get("Content-Type"), self._binary
            ):
                try:
                    body = base64.b64decode(proxy.body, validate=False)
                except (binascii.Error, ValueError):
                    log.warning("Lambda proxy response body is not valid base64")
                    raise _GatewayError("INTEGRATION_FAILURE") from None
            else:
                body = proxy.body.encode()
        _add_request_headers(headers, meta)
        return web.Response(status=proxy.status, body=body, headers=headers)

    def _error_response(
        self,
        error: _GatewayError,
        meta: RequestMeta,
        incoming: IncomingRequest,
        match: RouteMatch | None,
    ) -> web.Response:
        api = self._api
        message = error.message
        context: dict[str, Any] = {
            "requestId": meta.request_id,
            "extendedRequestId": meta.extended_request_id,
            "apiId": api.rest_api_id,
            "stage": api.stage_name,
            "accountId": ACCOUNT_ID,
            "domainName": meta.domain_name,
            "requestTime": format_request_time(meta.epoch_s),
            "requestTimeEpoch": int(meta.epoch_s * 1000),
            "resourcePath": match.route.resource if match is not None else "",
            "resourceId": match.resource_id if match is not None else "",
            "httpMethod": incoming.method,
            "path": f"/{api.stage_name}{incoming.raw_path}",
            "identity": {"sourceIp": incoming.source_ip, "userAgent": incoming.header("User-Agent")},
            "authorizer": dict(error.authorizer or {}),
            "error": {
                "message": message,
                "messageString": json.dumps(message),
                "responseType": error.response_type,
            },
        }
        scope = RenderScope(
            context=context,
            stage_variables=self._stage_variables,
            request=incoming,
            path_parameters=match.path_parameters if match is not None else None,
        )
        rendered = self._responses.render(error.response_type, scope)
        headers: CIMultiDict[str] = CIMultiDict(rendered.headers)
        headers["x-amzn-ErrorType"] = _BUILTINS[error.response_type].error_type
        _add_request_headers(headers, meta)
        return web.Response(status=rendered.status, body=rendered.body, headers=headers)


def _header_text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _add_request_headers(headers: CIMultiDict[str], meta: RequestMeta) -> None:
    headers["x-amzn-RequestId"] = meta.request_id
    headers["x-amz-apigw-id"] = meta.extended_request_id
    headers["X-Amzn-Trace-Id"] = meta.trace_id


def _error_message(payload: bytes) -> str:
    """errorMessage of a function error payload ({"errorMessage", "errorType", ...}); "" when it has none."""
    with contextlib.suppress(ValueError):
        doc = json.loads(payload)
        if isinstance(doc, dict) and isinstance(doc.get("errorMessage"), str):
            return str(doc["errorMessage"])
    return ""


_IDENTITY_SOURCE_PREFIXES: Final = (
    "method.request.header.",
    "method.request.multivalueheader.",
    "method.request.querystring.",
    "method.request.multivaluequerystring.",
    "method.request.path.",
    "stageVariables.",
    "context.",
)


def _check_authorizer(authorizer: AuthorizerSpec) -> None:
    kind = authorizer.kind.lower()
    if kind not in ("token", "request"):
        raise ValueError(f"authorizer {authorizer.name}: unsupported type {authorizer.kind!r}")
    sources = [s.strip() for s in authorizer.identity_sources]
    if kind == "token" and (len(sources) != 1 or not sources[0].startswith("method.request.header.")):
        raise ValueError(
            f"TOKEN authorizer {authorizer.name} needs exactly one method.request.header.* source"
        )
    for source in sources:
        if not source.startswith(_IDENTITY_SOURCE_PREFIXES):
            raise ValueError(f"authorizer {authorizer.name}: unsupported identity source {source!r}")


def build_api_app(
    api: ApiSpec,
    invoker: Invoker,
    *,
    clock: Clock = time.time,
    integration_timeout_s: float = DEFAULT_INTEGRATION_TIMEOUT_S,
    stage_variables: Mapping[str, str] | None = None,
) -> web.Application:
    """An aiohttp app serving `api`'s stage at the root, as its execute-api endpoint does.

    Raises ValueError for a definition API Gateway would refuse or the emulator cannot honour (conflicting
    routes, VTL beyond the supported subset). `clock` drives request times, throttling and the authorizer
    cache. Not emulated: non-Lambda integrations (MOCK, HTTP, AWS service; such routes answer 502), IAM and
    Cognito authorizers, API keys and usage plans, request validators, per-method throttling, WAF, mutual TLS,
    custom domains and base path mappings, response streaming, and the 6 MB Lambda payload quota (the
    runtime enforces its own).
    """
    gateway = _ApiGateway(
        api,
        invoker,
        clock=clock,
        integration_timeout_s=integration_timeout_s,
        stage_variables=stage_variables,
    )
    from localcloud.localguard import local_only

    app = web.Application(client_max_size=MAX_PAYLOAD_BYTES, middlewares=[local_only])
    # Any path reaches the gateway, even one whose decoded form holds a newline (`.` would not match it and
    # aiohttp would answer its own text/plain 404): API Gateway routes it, or answers with a gateway response.
    app.router.add_route("*", r"/{tail:[\s\S]*}", gateway.handle)
    app.on_cleanup.append(gateway.close)
    return app

"""The Lambda proxy integration: the request as API Gateway sees it, the v1 proxy event, the response."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote_plus

from multidict import CIMultiDict

from localcloud.apigw.routing import RouteMatch
from localcloud.spec import (
    ACCOUNT_ID,
)


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


# The Lambda's proxy response


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

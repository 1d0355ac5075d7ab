"""The API Gateway emulator's Lambda proxy event and its parsing of the proxy response."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from localcloud.apigw import (
    BinaryMediaTypes,
    MalformedProxyResponse,
    RequestMeta,
    build_proxy_event,
    build_request_context,
    compile_routes,
    encode_request_body,
    format_request_time,
    forwarded_header_pairs,
    make_request,
    parse_proxy_response,
    parse_query_string,
    should_decode_response,
)
from localcloud.spec import ACCOUNT_ID, RouteSpec

pytestmark = pytest.mark.unit

META = RequestMeta(
    request_id="req-1",
    extended_request_id="ext-1",
    trace_id="Root=1-00000000-000000000000000000000000",
    epoch_s=1428582896.123,
    domain_name="127.0.0.1:3000",
)


def event_for(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes = b"",
    *,
    resource: str = "/v1/things/{thing_id}",
    binary: tuple[str, ...] = (),
    stage_variables: dict[str, str] | None = None,
) -> dict[str, Any]:
    request = make_request(method, target, headers, body, source_ip="10.0.0.7")
    match = compile_routes([RouteSpec(method, resource, "fn")]).match(method, request.raw_path)
    assert match is not None
    context = build_request_context(
        request, resource_path=resource, resource_id=match.resource_id, meta=META, api_id="abc123", stage="v1"
    )
    return build_proxy_event(
        request, match, context, stage_variables=stage_variables, binary=BinaryMediaTypes(binary)
    )


def test_query_string_keeps_every_value_and_the_single_map_has_the_last() -> None:
    single, multi = parse_query_string("a=1&b=x&a=2&empty&c=")

    assert single == {"a": "2", "b": "x", "empty": "", "c": ""}
    assert multi == {"a": ["1", "2"], "b": ["x"], "empty": [""], "c": [""]}


def test_query_string_decodes_percent_and_plus_as_space() -> None:
    single, _ = parse_query_string("sort=-+created_at&email=a%2Bb%40x.com&k%20ey=v")

    assert single == {"sort": "- created_at", "email": "a+b@x.com", "k ey": "v"}


def test_no_query_string_is_null_in_both_maps() -> None:
    assert parse_query_string("") == (None, None)
    event = event_for("GET", "/v1/things/t1", [("Host", "h")])
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None


def test_repeated_headers_are_all_in_multi_value_headers_and_last_in_headers() -> None:
    event = event_for("GET", "/v1/things/t1", [("Host", "h"), ("X-Tag", "a"), ("x-tag", "b")])

    assert event["multiValueHeaders"]["X-Tag"] == ["a", "b"]
    assert event["headers"]["X-Tag"] == "b"


def test_no_headers_is_null() -> None:
    request = make_request("GET", "/", [], b"", source_ip="1.2.3.4")

    assert request.headers is None
    assert request.multi_headers is None


def test_forwarded_headers_are_added_as_api_gateway_does() -> None:
    pairs = forwarded_header_pairs(
        [("Host", "h"), ("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Port", "1")],
        source_ip="10.0.0.7",
        port=3000,
        trace_id="Root=1-abc",
    )

    assert dict(pairs) == {
        "Host": "h",
        "X-Forwarded-For": "203.0.113.9, 10.0.0.7",
        "X-Forwarded-Port": "3000",
        "X-Forwarded-Proto": "http",
        "X-Amzn-Trace-Id": "Root=1-abc",
    }


def test_event_has_the_proxy_shape_with_stage_in_request_context_path() -> None:
    event = event_for(
        "POST",
        "/v1/things/t%201?x=1",
        [("Host", "127.0.0.1:3000"), ("User-Agent", "ua/1"), ("Content-Type", "application/json")],
        b'{"a":1}',
        stage_variables={"env": "local"},
    )

    assert event["resource"] == "/v1/things/{thing_id}"
    assert event["path"] == "/v1/things/t%201"
    assert event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"thing_id": "t 1"}
    assert event["stageVariables"] == {"env": "local"}
    assert event["body"] == '{"a":1}'
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["path"] == "/v1/v1/things/t%201"
    assert context["stage"] == "v1"
    assert context["resourcePath"] == "/v1/things/{thing_id}"
    assert context["requestTime"] == "09/Apr/2015:12:34:56 +0000"
    assert context["requestTimeEpoch"] == 1428582896123
    assert context["accountId"] == ACCOUNT_ID
    assert context["apiId"] == "abc123"
    assert context["identity"]["sourceIp"] == "10.0.0.7"
    assert context["identity"]["userAgent"] == "ua/1"
    assert context["domainName"] == "127.0.0.1:3000"
    assert context["domainPrefix"] == "127"
    assert "authorizer" not in context


def test_event_without_body_has_null_body() -> None:
    event = event_for("GET", "/v1/things/t1", [("Host", "h")])

    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    assert event["stageVariables"] is None


@pytest.mark.parametrize(
    ("content_type", "binary", "body", "expect_base64"),
    [
        ("application/json", (), b'{"a":"\xc3\xa9"}', False),
        ("image/png", ("image/png",), b"\x89PNG", True),
        ("image/png; charset=binary", ("image/*",), b"text is fine too", True),
        ("application/octet-stream", ("application~1octet-stream",), b"abc", True),  # SAM's ~1 escape
        ("text/plain", ("*/*",), b"abc", True),
        ("application/octet-stream", (), b"\xff\xfe\x00", True),  # not UTF-8: base64 anyway
    ],
)
def test_request_body_base64_rules(
    content_type: str, binary: tuple[str, ...], body: bytes, expect_base64: bool
) -> None:
    encoded, is_base64 = encode_request_body(body, content_type, BinaryMediaTypes(binary))

    assert is_base64 is expect_base64
    assert encoded is not None
    assert (base64.b64decode(encoded) if is_base64 else encoded.encode()) == body


def test_request_time_is_locale_independent_clf() -> None:
    assert format_request_time(0) == "01/Jan/1970:00:00:00 +0000"
    assert format_request_time(1428582896) == "09/Apr/2015:12:34:56 +0000"


def response(**doc: Any) -> bytes:
    return json.dumps(doc).encode()


def test_response_headers_and_multi_value_headers_are_merged_once() -> None:
    parsed = parse_proxy_response(
        response(
            statusCode=201,
            headers={"Set-Cookie": "a=1", "X-One": "1"},
            multiValueHeaders={"Set-Cookie": ["a=1", "b=2"]},
            body="ok",
        )
    )

    assert parsed.status == 201
    assert parsed.headers.getall("Set-Cookie") == ["a=1", "b=2"]
    assert parsed.headers["X-One"] == "1"
    assert parsed.body == "ok"
    assert parsed.is_base64 is False


def test_response_framing_headers_from_the_function_are_dropped() -> None:
    parsed = parse_proxy_response(response(statusCode=200, headers={"Content-Length": "999", "X-A": "1"}))

    assert "Content-Length" not in parsed.headers
    assert parsed.headers["X-A"] == "1"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (response(body="x"), "statusCode"),
        (response(statusCode="abc"), "statusCode"),
        (response(statusCode=99), "statusCode"),
        (response(statusCode=True), "statusCode"),
        (response(statusCode=200, extra=1), "unknown response keys"),
        (response(statusCode=200, body={"a": 1}), "body must be a string"),
        (response(statusCode=200, headers={"a": {"b": 1}}), "header value"),
        (response(statusCode=200, multiValueHeaders={"a": "b"}), "must be lists"),
        (response(statusCode=200, isBase64Encoded="maybe"), "isBase64Encoded"),
    ],
)
def test_malformed_proxy_responses_are_refused(payload: bytes, reason: str) -> None:
    with pytest.raises(MalformedProxyResponse, match=reason):
        parse_proxy_response(payload)


def test_numeric_status_string_and_scalar_header_values_are_accepted() -> None:
    parsed = parse_proxy_response(response(statusCode="204", headers={"X-Count": 3, "X-Ok": True}))

    assert parsed.status == 204
    assert parsed.headers["X-Count"] == "3"
    assert parsed.headers["X-Ok"] == "true"


@pytest.mark.parametrize(
    ("accept", "content_type", "binary", "decode"),
    [
        ("image/png", "image/png", ("image/png",), True),
        ("*/*", "image/png", ("image/png",), False),  # the classic API Gateway gotcha
        ("*/*", "image/png", ("*/*",), True),
        ("application/json, image/png", "image/png", ("image/png",), False),  # only the first Accept counts
        (None, "image/png", ("image/png",), True),
        ("image/png", "image/png", (), False),
    ],
)
def test_base64_response_is_decoded_only_for_binary_accept(
    accept: str | None, content_type: str, binary: tuple[str, ...], decode: bool
) -> None:
    assert should_decode_response(accept, content_type, BinaryMediaTypes(binary)) is decode

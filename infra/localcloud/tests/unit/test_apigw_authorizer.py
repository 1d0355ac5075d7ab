"""Lambda authorizer logic of the API Gateway emulator: events, results, policy evaluation, cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from localcloud.apigw import (
    AuthorizerCache,
    MalformedAuthorizerResult,
    RequestMeta,
    build_request_authorizer_event,
    build_request_context,
    build_token_authorizer_event,
    compile_routes,
    evaluate_policy,
    identity_source_values,
    make_request,
    method_arn,
    parse_authorizer_result,
)
from localcloud.spec import AuthorizerSpec, RouteSpec

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "apigw"
ARN = "arn:aws:execute-api:us-east-1:000000000000:abc123/v1/GET/v1/accounts/acc-1"


def result_with(*statements: dict[str, Any], context: dict[str, Any] | None = None) -> bytes:
    doc: dict[str, Any] = {
        "principalId": "u-1",
        "policyDocument": {"Version": "2012-10-17", "Statement": list(statements)},
    }
    if context is not None:
        doc["context"] = context
    return json.dumps(doc).encode()


def statement(
    effect: str, resource: str | list[str], action: str | list[str] = "execute-api:Invoke"
) -> dict[str, Any]:
    return {"Action": action, "Effect": effect, "Resource": resource}


def test_method_arn_has_stage_method_and_path_without_leading_slash() -> None:
    assert method_arn("abc123", "v1", "GET", "/v1/accounts/acc-1") == ARN
    assert method_arn("abc123", "v1", "GET", "/").endswith("abc123/v1/GET/")


@pytest.mark.parametrize(
    ("statements", "decision"),
    [
        ([statement("Allow", ARN)], "allow"),
        ([statement("Allow", "arn:aws:execute-api:us-east-1:000000000000:abc123/v1/*")], "allow"),
        ([statement("Allow", "arn:aws:execute-api:*:*:abc123/*/GET/v1/accounts/acc-?")], "allow"),
        ([statement("Allow", "arn:aws:execute-api:*:*:abc123/*/POST/*")], "implicit_deny"),
        ([statement("Allow", "arn:aws:execute-api:*:*:abc123/*/GET/v1/accounts/acc-??")], "implicit_deny"),
        ([statement("Allow", ["arn:aws:execute-api:*:*:other/*", ARN])], "allow"),
        ([statement("Allow", "*"), statement("Deny", ARN)], "explicit_deny"),
        ([statement("Deny", "arn:aws:execute-api:*:*:abc123/*/DELETE/*"), statement("Allow", "*")], "allow"),
        ([statement("Allow", "*", action="execute-api:*")], "allow"),
        ([statement("Allow", "*", action="EXECUTE-API:invoke")], "allow"),  # actions are case-insensitive
        ([statement("Allow", "*", action="execute-api:ManageConnections")], "implicit_deny"),
    ],
)
def test_policy_evaluation(statements: list[dict[str, Any]], decision: str) -> None:
    result = parse_authorizer_result(result_with(*statements))

    assert evaluate_policy(result.statements, ARN) == decision


def test_resources_are_case_sensitive() -> None:
    result = parse_authorizer_result(result_with(statement("Allow", ARN.upper())))

    assert evaluate_policy(result.statements, ARN) == "implicit_deny"


def test_allow_result_fixture_parses_with_typed_context() -> None:
    result = parse_authorizer_result((FIXTURES / "authorizer_allow.json").read_bytes())

    assert result.principal_id == "u-123"
    assert result.context["mfa"] is True
    assert result.context["auth_time"] == 1764300000
    assert result.context_for_integration(7) == {
        "user_id": "u-123",
        "role": "customer",
        "device_id": "d-1",
        "mfa": True,
        "auth_time": 1764300000,
        "principalId": "u-123",
        "integrationLatency": 7,
    }


def test_single_statement_object_is_accepted() -> None:
    doc = json.loads(result_with(statement("Allow", "*")))
    doc["policyDocument"]["Statement"] = doc["policyDocument"]["Statement"][0]

    result = parse_authorizer_result(json.dumps(doc).encode())

    assert evaluate_policy(result.statements, ARN) == "allow"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"nope", "not JSON"),
        (b'"Allow"', "not an object"),
        (json.dumps({"policyDocument": {"Statement": [statement("Allow", "*")]}}).encode(), "principalId"),
        (json.dumps({"principalId": "u"}).encode(), "policyDocument"),
        (json.dumps({"principalId": "u", "policyDocument": {"Statement": []}}).encode(), "Statement"),
        (result_with(statement("allow", "*")), "Effect"),
        (result_with({"Effect": "Allow", "Resource": "*"}), "Action"),
        (result_with({"Effect": "Allow", "Action": "execute-api:Invoke"}), "Resource"),
        (result_with(statement("Allow", "*"), context={"nested": {"a": 1}}), "context"),
        (result_with(statement("Allow", "*"), context={"list": [1]}), "context"),
    ],
)
def test_malformed_authorizer_results_are_refused(payload: bytes, reason: str) -> None:
    with pytest.raises(MalformedAuthorizerResult, match=reason):
        parse_authorizer_result(payload)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_keeps_a_result_for_its_ttl_only() -> None:
    clock = FakeClock()
    cache = AuthorizerCache(clock)
    result = parse_authorizer_result(result_with(statement("Allow", "*")))

    cache.put("auth", ("token-a",), result, ttl_s=300)

    assert cache.get("auth", ("token-a",)) is result
    assert cache.get("auth", ("token-b",)) is None
    assert cache.get("other", ("token-a",)) is None
    clock.now += 300
    assert cache.get("auth", ("token-a",)) is None


def test_cache_with_ttl_zero_keeps_nothing() -> None:
    cache = AuthorizerCache(FakeClock())
    cache.put("auth", ("t",), parse_authorizer_result(result_with(statement("Allow", "*"))), ttl_s=0)

    assert cache.get("auth", ("t",)) is None


def test_cache_is_bounded() -> None:
    cache = AuthorizerCache(FakeClock(), max_entries=3)
    result = parse_authorizer_result(result_with(statement("Allow", "*")))

    for i in range(10):
        cache.put("auth", (str(i),), result, ttl_s=60)

    assert cache.get("auth", ("9",)) is result
    assert cache.get("auth", ("0",)) is None


AUTH = AuthorizerSpec(
    name="JwtAuthorizer",
    function_name="authorizer",
    kind="request",
    identity_sources=("method.request.header.Authorization", "method.request.header.X-Device-Id"),
)


def test_identity_sources_are_read_case_insensitively_in_order() -> None:
    request = make_request(
        "GET", "/v1/me", [("authorization", "Bearer t"), ("x-device-id", "d-1")], b"", source_ip="1.1.1.1"
    )

    assert identity_source_values(AUTH, request, None, None) == ("Bearer t", "d-1")


@pytest.mark.parametrize(
    "headers",
    [[("Authorization", "Bearer t")], [("Authorization", "Bearer t"), ("X-Device-Id", "")], []],
)
def test_a_missing_or_empty_identity_source_means_no_identity(headers: list[tuple[str, str]]) -> None:
    request = make_request("GET", "/v1/me", headers, b"", source_ip="1.1.1.1")

    assert identity_source_values(AUTH, request, None, None) is None


def test_query_string_path_and_stage_variable_identity_sources() -> None:
    spec = AuthorizerSpec(
        name="a",
        function_name="f",
        kind="request",
        identity_sources=("method.request.querystring.key", "method.request.path.id", "stageVariables.env"),
    )
    request = make_request("GET", "/x/7?key=k1", [], b"", source_ip="1.1.1.1")

    assert identity_source_values(spec, request, {"id": "7"}, {"env": "local"}) == ("k1", "7", "local")


def test_context_identity_sources_read_the_request_context() -> None:
    spec = AuthorizerSpec("a", "f", "request", ("context.identity.sourceIp", "context.stage"))
    request = make_request("GET", "/x", [], b"", source_ip="1.1.1.1")
    context = {"identity": {"sourceIp": "1.1.1.1"}, "stage": "v1"}

    assert identity_source_values(spec, request, None, None, context) == ("1.1.1.1", "v1")
    assert identity_source_values(spec, request, None, None, {"stage": "v1"}) is None


def test_request_authorizer_event_shape() -> None:
    request = make_request(
        "GET", "/v1/accounts/acc-1", [("Authorization", "Bearer t")], b"", source_ip="1.1.1.1"
    )
    match = compile_routes([RouteSpec("GET", "/v1/accounts/{account_id}", "fn")]).match(
        "GET", request.raw_path
    )
    assert match is not None
    meta = RequestMeta("r", "e", "Root=1-x", 0.0, "h")
    context = build_request_context(
        request, resource_path=match.route.resource, resource_id="abc", meta=meta, api_id="abc123", stage="v1"
    )

    event = build_request_authorizer_event(request, match, context, arn=ARN, stage_variables=None)

    assert event["type"] == "REQUEST"
    assert event["methodArn"] == ARN
    assert event["resource"] == "/v1/accounts/{account_id}"
    assert event["path"] == "/v1/accounts/acc-1"
    assert event["httpMethod"] == "GET"
    assert event["headers"] == {"Authorization": "Bearer t"}
    assert event["multiValueHeaders"] == {"Authorization": ["Bearer t"]}
    assert event["queryStringParameters"] == {}
    assert event["multiValueQueryStringParameters"] == {}
    assert event["pathParameters"] == {"account_id": "acc-1"}
    assert event["stageVariables"] == {}
    assert event["requestContext"]["requestId"] == "r"
    assert "authorizer" not in event["requestContext"]


def test_token_authorizer_event_shape() -> None:
    assert build_token_authorizer_event("Bearer t", ARN) == {
        "type": "TOKEN",
        "authorizationToken": "Bearer t",
        "methodArn": ARN,
    }

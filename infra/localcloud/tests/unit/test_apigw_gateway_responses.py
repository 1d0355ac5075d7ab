"""Gateway responses, their VTL subset, and stage throttling in the API Gateway emulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from localcloud.apigw import (
    GatewayResponses,
    RenderScope,
    TokenBucket,
    compile_template,
    escape_javascript,
    make_request,
)
from localcloud.spec import GatewayResponseSpec

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "apigw"


def scope(
    response_type: str = "ACCESS_DENIED",
    message: str | None = "User is not authorized to access this resource",
    authorizer: dict[str, Any] | None = None,
) -> RenderScope:
    request = make_request(
        "GET",
        "/v1/accounts/a1?lang=en",
        [("Origin", "https://app.example"), ("X-Correlation-Id", "corr-1")],
        b"",
        source_ip="10.0.0.1",
    )
    context = {
        "requestId": "req-1",
        "extendedRequestId": "ext-1",
        "authorizer": authorizer or {},
        "error": {"message": message, "messageString": json.dumps(message), "responseType": response_type},
    }
    return RenderScope(
        context=context,
        stage_variables={"env": "local"},
        request=request,
        path_parameters={"account_id": "a1"},
    )


def test_template_substitutes_context_references_in_every_form() -> None:
    template = compile_template(
        '{"a":"$context.authorizer.code","b":"${context.requestId}x","c":"$!context.authorizer.none",'
        '"d":$context.error.messageString,"e":"$context.error.responseType","f":"$stageVariables.env"}'
    )

    rendered = template.render(scope(authorizer={"code": "device_mismatch"}))

    assert json.loads(rendered) == {
        "a": "device_mismatch",
        "b": "req-1x",
        "c": "",
        "d": "User is not authorized to access this resource",
        "e": "ACCESS_DENIED",
        "f": "local",
    }


def test_template_prints_numbers_and_booleans_like_velocity_and_missing_as_empty() -> None:
    template = compile_template("$context.authorizer.n/$context.authorizer.ok/$context.authorizer.missing.")

    assert template.render(scope(authorizer={"n": 401, "ok": False})) == "401/false/."


def test_null_message_renders_as_json_null() -> None:
    rendered = compile_template('{"message":$context.error.messageString}').render(scope(message=None))

    assert json.loads(rendered) == {"message": None}


def test_escape_javascript_follows_java_rules() -> None:
    assert escape_javascript('a"b\\c/d\ne\tf') == 'a\\"b\\\\c\\/d\\ne\\tf'
    assert escape_javascript("it's") == "it\\'s"
    assert escape_javascript("é😀") == "\\u00E9\\uD83D\\uDE00"


@pytest.mark.parametrize(
    "text",
    [
        "#set($x = 1)",
        "#if($context.x) a #end",
        "$input.path('$')",
        "$util.base64Encode($context.requestId)",
        "$context",
        "#foreach($k in $list)",
    ],
)
def test_unsupported_vtl_is_refused_at_compile_time(text: str) -> None:
    with pytest.raises(ValueError, match="unsupported VTL"):
        compile_template(text)


def test_dollar_amounts_and_hashes_in_plain_text_are_not_vtl() -> None:
    assert compile_template('{"note":"costs $5 #1"}').render(scope()) == '{"note":"costs $5 #1"}'


def test_builtin_responses_match_api_gateway() -> None:
    responses = GatewayResponses(())

    denied = responses.render("ACCESS_DENIED", scope())
    failure = responses.render("AUTHORIZER_FAILURE", scope("AUTHORIZER_FAILURE", None))
    missing = responses.render("MISSING_AUTHENTICATION_TOKEN", scope(message="Missing Authentication Token"))

    assert (denied.status, json.loads(denied.body)) == (
        403,
        {"Message": "User is not authorized to access this resource"},
    )
    assert (failure.status, json.loads(failure.body)) == (500, {"message": None})
    assert (missing.status, json.loads(missing.body)) == (403, {"message": "Missing Authentication Token"})
    assert denied.headers == [("Content-Type", "application/json")]


def test_problem_json_template_renders_from_authorizer_context() -> None:
    # Given the project's ACCESS_DENIED gateway response and a Deny carrying a problem in its context
    authorizer = json.loads((FIXTURES / "authorizer_deny_device_mismatch.json").read_text())["context"]
    responses = GatewayResponses(
        [
            GatewayResponseSpec(
                response_type="ACCESS_DENIED",
                status_code=401,
                response_parameters={
                    "gatewayresponse.header.Content-Type": "'application/problem+json'",
                    "gatewayresponse.header.X-Correlation-Id": "method.request.header.X-Correlation-Id",
                    "gatewayresponse.header.X-Problem-Code": "context.authorizer.code",
                },
                response_templates={"application/json": (FIXTURES / "problem_json.vtl").read_text()},
            )
        ]
    )

    # When
    rendered = responses.render("ACCESS_DENIED", scope(authorizer=authorizer))

    # Then
    assert rendered.status == 401
    assert dict(rendered.headers) == {
        "Content-Type": "application/problem+json",
        "X-Correlation-Id": "corr-1",
        "X-Problem-Code": "device_mismatch",
    }
    assert json.loads(rendered.body) == {
        "type": "https://vaultpay.dev/problems/device_mismatch",
        "title": "Device mismatch",
        "status": 401,
        "detail": "The X-Device-Id header does not match the device of the token",
        "code": "device_mismatch",
        "correlation_id": "req-1",
    }


def test_specific_type_then_default_4xx_then_builtin() -> None:
    responses = GatewayResponses(
        [
            GatewayResponseSpec(
                "DEFAULT_4XX",
                None,
                {"gatewayresponse.header.Access-Control-Allow-Origin": "'*'"},
                {"application/json": '{"error":"$context.error.responseType"}'},
            ),
            GatewayResponseSpec("UNAUTHORIZED", 418, {}, {}),
        ]
    )

    throttled = responses.render("THROTTLED", scope("THROTTLED", "Too Many Requests"))
    unauthorized = responses.render("UNAUTHORIZED", scope("UNAUTHORIZED", "Unauthorized"))
    timeout = responses.render(
        "INTEGRATION_TIMEOUT", scope("INTEGRATION_TIMEOUT", "Endpoint request timed out")
    )

    # DEFAULT_4XX applies to a 4xx type without its own definition, keeping the type's status
    assert throttled.status == 429
    assert ("Access-Control-Allow-Origin", "*") in throttled.headers
    assert json.loads(throttled.body) == {"error": "THROTTLED"}
    # the specific definition wins (no template of its own: the built-in body)
    assert unauthorized.status == 418
    assert json.loads(unauthorized.body) == {"message": "Unauthorized"}
    # 5xx types do not pick up DEFAULT_4XX
    assert (timeout.status, json.loads(timeout.body)) == (504, {"message": "Endpoint request timed out"})


def test_method_request_querystring_and_path_parameters_resolve() -> None:
    responses = GatewayResponses(
        [
            GatewayResponseSpec(
                "DEFAULT_4XX",
                None,
                {
                    "gatewayresponse.header.X-Lang": "method.request.querystring.lang",
                    "gatewayresponse.header.X-Account": "method.request.path.account_id",
                    "gatewayresponse.header.X-Absent": "method.request.header.X-Nope",
                },
            )
        ]
    )

    headers = dict(responses.render("UNAUTHORIZED", scope("UNAUTHORIZED", "Unauthorized")).headers)

    assert headers["X-Lang"] == "en"
    assert headers["X-Account"] == "a1"
    assert "X-Absent" not in headers


@pytest.mark.parametrize(
    "spec",
    [
        GatewayResponseSpec("NOT_A_TYPE", None),
        GatewayResponseSpec("DEFAULT_4XX", None, {"gatewayresponse.body": "'x'"}),
        GatewayResponseSpec("DEFAULT_4XX", None, {"gatewayresponse.header.X": "integration.response.body"}),
        GatewayResponseSpec("DEFAULT_4XX", None, {}, {"application/json": "#if($x)#end"}),
    ],
)
def test_definitions_the_emulator_cannot_honour_fail_loudly(spec: GatewayResponseSpec) -> None:
    with pytest.raises(ValueError, match=r"unknown|unsupported"):
        GatewayResponses([spec])


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_burst_then_refills_at_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)

    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token at 2/s
    assert [bucket.try_acquire() for _ in range(2)] == [True, False]
    clock.now += 100  # refills to the burst, no further
    assert sum(bucket.try_acquire() for _ in range(10)) == 3


def test_token_bucket_without_burst_allows_one_second_of_rate() -> None:
    bucket = TokenBucket(rate=5.0, burst=None, clock=FakeClock())

    assert sum(bucket.try_acquire() for _ in range(10)) == 5

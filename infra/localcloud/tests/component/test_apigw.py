"""The API Gateway emulator over real HTTP, with a fake Lambda invoker that records events."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from multidict import CIMultiDict

from localcloud.apigw import MAX_PAYLOAD_BYTES, build_api_app
from localcloud.spec import (
    ApiSpec,
    AuthorizerSpec,
    FunctionNotFound,
    GatewayResponseSpec,
    InvokeResult,
    RouteSpec,
)

pytestmark = pytest.mark.component

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "apigw"
API_ID = "abc123"
STAGE = "v1"
ARN_PREFIX = f"arn:aws:execute-api:us-east-1:000000000000:{API_ID}/{STAGE}"

Handler = Callable[[dict[str, Any]], InvokeResult | Awaitable[InvokeResult]]


class FakeInvoker:
    """Records every invoke and answers with what the test's handler for that function returns."""

    def __init__(self, handlers: dict[str, Handler] | None = None) -> None:
        self.handlers: dict[str, Handler] = handlers or {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def invoke(
        self,
        function: str,
        payload: bytes,
        *,
        invocation_type: str = "RequestResponse",
        log_type: str = "None",
    ) -> InvokeResult:
        event = json.loads(payload)
        self.calls.append((function, event))
        if function not in self.handlers:
            raise FunctionNotFound(function)
        result = self.handlers[function](event)
        return await result if isinstance(result, Awaitable) else result

    def events_for(self, function: str) -> list[dict[str, Any]]:
        return [event for name, event in self.calls if name == function]


def proxy_result(status: int = 200, body: Any = None, **extra: Any) -> InvokeResult:
    doc: dict[str, Any] = {"statusCode": status, **extra}
    if body is not None:
        doc["body"] = body if isinstance(body, str) else json.dumps(body)
    return InvokeResult(status=200, payload=json.dumps(doc).encode())


def raised(message: str) -> InvokeResult:
    error = {"errorMessage": message, "errorType": "Exception", "stackTrace": []}
    return InvokeResult(status=200, payload=json.dumps(error).encode(), function_error="Unhandled")


def policy(effect: str, resource: str = "*", context: dict[str, Any] | None = None) -> InvokeResult:
    doc = {
        "principalId": "u-123",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
        "context": context or {},
    }
    return InvokeResult(status=200, payload=json.dumps(doc).encode())


def answer_ok(event: dict[str, Any]) -> InvokeResult:
    return proxy_result(200, {"ok": True})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_764_300_000.0

    def __call__(self) -> float:
        return self.now


def api_spec(*routes: RouteSpec, **overrides: Any) -> ApiSpec:
    fields: dict[str, Any] = {
        "logical_id": "VaultPayApi",
        "rest_api_id": API_ID,
        "stage_name": STAGE,
        "routes": routes,
    }
    fields.update(overrides)
    return ApiSpec(**fields)


Serve = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Starts the emulator on a free loopback port and returns a client for it."""
    clients: list[TestClient[web.Request, web.Application]] = []

    async def start(
        api: ApiSpec, invoker: FakeInvoker, **options: Any
    ) -> TestClient[web.Request, web.Application]:
        client = TestClient(TestServer(build_api_app(api, invoker, **options)))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


# ----------------------------------------------------------------------------------------------------
# Routing and the proxy event
# ----------------------------------------------------------------------------------------------------


def sam_sample_event() -> dict[str, Any]:
    sam = Path(sys.executable).with_name("sam")
    out = subprocess.run(
        [str(sam), "local", "generate-event", "apigateway", "aws-proxy"],
        capture_output=True,
        check=True,
        timeout=60,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
    )
    sample: dict[str, Any] = json.loads(out.stdout)
    return sample


# Keys API Gateway sends today that the SAM CLI sample (written in 2016) predates.
NEWER_THAN_SAM_SAMPLE = {
    "requestContext": {"extendedRequestId", "domainPrefix", "domainName"},
    "requestContext.identity": {"principalOrgId"},
}


def assert_same_shape(ours: dict[str, Any], sample: dict[str, Any], where: str = "") -> None:
    extra = NEWER_THAN_SAM_SAMPLE.get(where, set())
    assert set(ours) == set(sample) | extra, f"keys differ at {where or 'top level'}"
    for key, expected in sample.items():
        path = f"{where}.{key}" if where else key
        if isinstance(expected, dict) and key in ("requestContext", "identity"):
            assert_same_shape(ours[key], expected, path)
        elif expected is None:
            assert ours[key] is None, f"{path} should be null"
        else:
            assert type(ours[key]) is type(expected), f"{path}: {type(ours[key])} vs {type(expected)}"


async def test_proxy_event_has_the_keys_and_types_of_the_sam_sample(serve: Serve) -> None:
    # Given the SAM sample's own route shape (ANY /{proxy+}) and stage variables
    invoker = FakeInvoker({"fn": answer_ok})
    client = await serve(
        api_spec(RouteSpec("ANY", "/{proxy+}", "fn")), invoker, stage_variables={"baz": "qux"}
    )

    # When a request like the sample's is sent
    response = await client.post(
        "/path/to/resource?foo=bar",
        data=b'{"test":"body"}',
        headers={"User-Agent": "Custom User Agent String"},
    )

    # Then the event has the same keys at every level and the same value types
    assert response.status == 200
    (event,) = invoker.events_for("fn")
    assert_same_shape(event, sam_sample_event())
    assert event["pathParameters"] == {"proxy": "path/to/resource"}
    assert event["requestContext"]["path"] == f"/{STAGE}/path/to/resource"
    assert event["requestContext"]["stage"] == STAGE
    assert event["requestContext"]["identity"]["userAgent"] == "Custom User Agent String"
    assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"


async def test_unknown_route_is_403_missing_authentication_token(serve: Serve) -> None:
    invoker = FakeInvoker({"fn": answer_ok})
    client = await serve(api_spec(RouteSpec("GET", "/v1/health", "fn")), invoker)

    for method, path in (("GET", "/v1/nope"), ("POST", "/v1/health"), ("GET", "/")):
        response = await client.request(method, path)

        assert response.status == 403
        assert await response.json() == {"message": "Missing Authentication Token"}
        assert response.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
        assert response.headers["Content-Type"] == "application/json"
    assert invoker.calls == []


async def test_precedence_reaches_the_right_function(serve: Serve) -> None:
    invoker = FakeInvoker({"literal": answer_ok, "param": answer_ok, "greedy": answer_ok})
    client = await serve(
        api_spec(
            RouteSpec("GET", "/v1/accounts/summary", "literal"),
            RouteSpec("GET", "/v1/accounts/{account_id}", "param"),
            RouteSpec("ANY", "/v1/{proxy+}", "greedy"),
        ),
        invoker,
    )

    for path in ("/v1/accounts/summary", "/v1/accounts/acc-1", "/v1/accounts/acc-1/statement"):
        assert (await client.get(path)).status == 200

    assert [name for name, _ in invoker.calls] == ["literal", "param", "greedy"]
    assert invoker.calls[2][1]["pathParameters"] == {"proxy": "accounts/acc-1/statement"}


async def test_a_path_with_an_encoded_newline_is_routed_not_refused_by_aiohttp(serve: Serve) -> None:
    # Found by schemathesis: `.*` in the catch-all route did not match a decoded newline, so aiohttp answered
    # its own text/plain 404 instead of the gateway routing the request.
    invoker = FakeInvoker({"param": answer_ok})
    client = await serve(api_spec(RouteSpec("GET", "/v1/transfers/{transfer_id}", "param")), invoker)

    routed = await client.get("/v1/transfers/a%0Ab%0D")
    unknown = await client.get("/v1/nope%0A/x")

    assert routed.status == 200
    assert invoker.calls[0][1]["pathParameters"] == {"transfer_id": "a\nb\r"}
    assert unknown.status == 403
    assert unknown.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


async def test_path_query_and_repeated_headers_reach_the_event(serve: Serve) -> None:
    invoker = FakeInvoker({"fn": answer_ok})
    client = await serve(api_spec(RouteSpec("GET", "/v1/accounts/{account_id}/statement", "fn")), invoker)

    await client.get(
        "/v1/accounts/acc%201/statement?limit=10&type=debit&type=credit&q=a+b",
        headers=CIMultiDict([("X-Tag", "one"), ("X-Tag", "two"), ("X-Correlation-Id", "corr-1")]),
    )

    (event,) = invoker.events_for("fn")
    assert event["path"] == "/v1/accounts/acc%201/statement"
    assert event["pathParameters"] == {"account_id": "acc 1"}
    assert event["queryStringParameters"] == {"limit": "10", "type": "credit", "q": "a b"}
    assert event["multiValueQueryStringParameters"] == {
        "limit": ["10"],
        "type": ["debit", "credit"],
        "q": ["a b"],
    }
    assert event["multiValueHeaders"]["X-Tag"] == ["one", "two"]
    assert event["headers"]["X-Tag"] == "two"
    assert event["headers"]["X-Correlation-Id"] == "corr-1"
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert event["headers"]["X-Amzn-Trace-Id"].startswith("Root=1-")
    assert event["body"] is None
    assert event["stageVariables"] is None


async def test_binary_and_non_utf8_request_bodies_are_base64(serve: Serve) -> None:
    invoker = FakeInvoker({"fn": answer_ok})
    client = await serve(
        api_spec(RouteSpec("POST", "/v1/files", "fn"), binary_media_types=("image/png",)), invoker
    )
    png = b"\x89PNG\r\n\x1a\n\x00\x01"

    await client.post("/v1/files", data=png, headers={"Content-Type": "image/png"})
    await client.post("/v1/files", data=b"\xff\xfe", headers={"Content-Type": "text/plain"})
    await client.post("/v1/files", data='{"name":"é"}'.encode(), headers={"Content-Type": "application/json"})

    events = invoker.events_for("fn")
    assert [e["isBase64Encoded"] for e in events] == [True, True, False]
    assert base64.b64decode(events[0]["body"]) == png
    assert base64.b64decode(events[1]["body"]) == b"\xff\xfe"
    assert events[2]["body"] == '{"name":"é"}'


# ----------------------------------------------------------------------------------------------------
# The integration response
# ----------------------------------------------------------------------------------------------------


async def test_response_status_merged_headers_and_request_ids(serve: Serve) -> None:
    invoker = FakeInvoker(
        {
            "fn": lambda _e: proxy_result(
                201,
                {"id": "t-1"},
                headers={"X-One": "1", "Set-Cookie": "a=1"},
                multiValueHeaders={"Set-Cookie": ["a=1", "b=2"]},
            )
        }
    )
    client = await serve(api_spec(RouteSpec("POST", "/v1/transfers", "fn")), invoker)

    response = await client.post("/v1/transfers", json={"amount": 100})

    assert response.status == 201
    assert await response.json() == {"id": "t-1"}
    assert response.headers["Content-Type"] == "application/json"  # API Gateway's default
    assert response.headers["X-One"] == "1"
    assert response.headers.getall("Set-Cookie") == ["a=1", "b=2"]
    request_id = response.headers["x-amzn-RequestId"]
    assert request_id == invoker.calls[0][1]["requestContext"]["requestId"]
    assert response.headers["X-Amzn-Trace-Id"] == invoker.calls[0][1]["headers"]["X-Amzn-Trace-Id"]
    assert response.headers["x-amz-apigw-id"] == invoker.calls[0][1]["requestContext"]["extendedRequestId"]


async def test_base64_response_is_decoded_for_a_binary_accept_only(serve: Serve) -> None:
    png = b"\x89PNG\r\n\x1a\n"
    invoker = FakeInvoker(
        {
            "fn": lambda _e: proxy_result(
                200,
                base64.b64encode(png).decode(),
                headers={"Content-Type": "image/png"},
                isBase64Encoded=True,
            )
        }
    )
    client = await serve(
        api_spec(RouteSpec("GET", "/v1/logo", "fn"), binary_media_types=("image/png",)), invoker
    )

    binary = await client.get("/v1/logo", headers={"Accept": "image/png"})
    text = await client.get("/v1/logo", headers={"Accept": "*/*"})

    assert await binary.read() == png
    assert await text.read() == base64.b64encode(png)


@pytest.mark.parametrize(
    "result",
    [
        raised("boom"),
        InvokeResult(status=200, payload=b"not json"),
        InvokeResult(status=200, payload=json.dumps({"body": "no status"}).encode()),
        InvokeResult(status=200, payload=json.dumps({"statusCode": 200, "body": {"a": 1}}).encode()),
    ],
    ids=["function-error", "not-json", "no-status-code", "body-not-string"],
)
async def test_function_error_or_malformed_response_is_502(serve: Serve, result: InvokeResult) -> None:
    client = await serve(api_spec(RouteSpec("GET", "/v1/x", "fn")), FakeInvoker({"fn": lambda _e: result}))

    response = await client.get("/v1/x")

    assert response.status == 502
    assert await response.json() == {"message": "Internal server error"}
    assert "x-amzn-RequestId" in response.headers


async def test_invoke_failure_is_502(serve: Serve) -> None:
    client = await serve(api_spec(RouteSpec("GET", "/v1/x", "missing-function")), FakeInvoker())

    response = await client.get("/v1/x")

    assert response.status == 502
    assert await response.json() == {"message": "Internal server error"}


async def test_integration_timeout_is_504_and_the_function_keeps_running(serve: Serve) -> None:
    finished = asyncio.Event()

    async def slow(_event: dict[str, Any]) -> InvokeResult:
        await asyncio.sleep(0.2)
        finished.set()
        return proxy_result(200, {"late": True})

    client = await serve(
        api_spec(RouteSpec("POST", "/v1/transfers", "fn")),
        FakeInvoker({"fn": slow}),
        integration_timeout_s=0.05,
    )

    response = await client.post("/v1/transfers")

    assert response.status == 504
    assert await response.json() == {"message": "Endpoint request timed out"}
    await asyncio.wait_for(finished.wait(), 2)  # as on AWS, the timed-out function still completes


async def test_request_over_10_mb_is_413(serve: Serve) -> None:
    invoker = FakeInvoker({"fn": answer_ok})
    client = await serve(api_spec(RouteSpec("POST", "/v1/files", "fn")), invoker)

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit is enforced while reading
        for _ in range(11):
            yield b"x" * (1024 * 1024)

    too_big = await client.post("/v1/files", data=b"x" * (MAX_PAYLOAD_BYTES + 1))
    too_big_chunked = await client.post("/v1/files", data=chunked())
    just_fits = await client.post("/v1/files", data=b"x" * MAX_PAYLOAD_BYTES)

    assert too_big.status == too_big_chunked.status == 413
    assert await too_big_chunked.json() == {"message": "Request Too Long"}
    assert just_fits.status == 200
    assert len(invoker.calls) == 1


async def test_stage_throttling_answers_429(serve: Serve) -> None:
    clock = FakeClock()
    invoker = FakeInvoker({"fn": answer_ok})
    client = await serve(
        api_spec(RouteSpec("GET", "/v1/x", "fn"), throttle_rate=1.0, throttle_burst=2), invoker, clock=clock
    )

    statuses = [(await client.get("/v1/x")).status for _ in range(3)]
    throttled = await client.get("/v1/x")
    clock.now += 1.0
    after_refill = await client.get("/v1/x")

    assert statuses == [200, 200, 429]
    assert await throttled.json() == {"message": "Too Many Requests"}
    assert throttled.headers["x-amzn-ErrorType"] == "TooManyRequestsException"
    assert after_refill.status == 200
    assert len(invoker.calls) == 3


# ----------------------------------------------------------------------------------------------------
# Lambda authorizers
# ----------------------------------------------------------------------------------------------------

REQUEST_AUTH = AuthorizerSpec(
    name="JwtAuthorizer",
    function_name="authorizer",
    kind="request",
    identity_sources=("method.request.header.Authorization", "method.request.header.X-Device-Id"),
    ttl_s=0,
)
TOKEN_AUTH = AuthorizerSpec(
    name="TokenAuthorizer",
    function_name="authorizer",
    kind="token",
    identity_sources=("method.request.header.Authorization",),
    ttl_s=300,
)
CREDENTIALS = {"Authorization": "Bearer t1", "X-Device-Id": "d-1"}


def protected(authorizer: AuthorizerSpec = REQUEST_AUTH, *extra: RouteSpec, **overrides: Any) -> ApiSpec:
    return api_spec(
        RouteSpec("GET", "/v1/accounts/{account_id}", "accounts", authorizer),
        RouteSpec("GET", "/v1/health", "health"),
        *extra,
        **overrides,
    )


async def test_allow_passes_the_authorizer_context_to_the_integration(serve: Serve) -> None:
    context = {"user_id": "u-123", "role": "customer", "device_id": "d-1", "mfa": True, "level": 2}
    invoker = FakeInvoker(
        {
            "authorizer": lambda _e: policy("Allow", f"{ARN_PREFIX}/GET/v1/accounts/*", context),
            "accounts": answer_ok,
        }
    )
    client = await serve(protected(), invoker)

    response = await client.get("/v1/accounts/acc-1", headers=CREDENTIALS)

    assert response.status == 200
    (auth_event,) = invoker.events_for("authorizer")
    assert auth_event["type"] == "REQUEST"
    assert auth_event["methodArn"] == f"{ARN_PREFIX}/GET/v1/accounts/acc-1"
    assert auth_event["headers"]["X-Device-Id"] == "d-1"
    assert auth_event["pathParameters"] == {"account_id": "acc-1"}
    (event,) = invoker.events_for("accounts")
    authorizer = event["requestContext"]["authorizer"]
    assert {k: authorizer[k] for k in context} == context  # strings, numbers and booleans as given
    assert authorizer["principalId"] == "u-123"
    assert isinstance(authorizer["integrationLatency"], int)


async def test_route_without_authorizer_has_no_authorizer_context(serve: Serve) -> None:
    invoker = FakeInvoker({"health": answer_ok})
    client = await serve(protected(), invoker)

    assert (await client.get("/v1/health")).status == 200
    assert "authorizer" not in invoker.calls[0][1]["requestContext"]


async def test_explicit_deny_is_403(serve: Serve) -> None:
    invoker = FakeInvoker({"authorizer": lambda _e: policy("Deny"), "accounts": answer_ok})
    client = await serve(protected(), invoker)

    response = await client.get("/v1/accounts/acc-1", headers=CREDENTIALS)

    assert response.status == 403
    assert await response.json() == {
        "Message": "User is not authorized to access this resource with an explicit deny"
    }
    assert response.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert invoker.events_for("accounts") == []


async def test_allow_for_another_resource_is_403(serve: Serve) -> None:
    invoker = FakeInvoker(
        {"authorizer": lambda _e: policy("Allow", f"{ARN_PREFIX}/POST/*"), "accounts": answer_ok}
    )
    client = await serve(protected(), invoker)

    response = await client.get("/v1/accounts/acc-1", headers=CREDENTIALS)

    assert response.status == 403
    assert await response.json() == {"Message": "User is not authorized to access this resource"}


async def test_authorizer_raising_unauthorized_is_401(serve: Serve) -> None:
    invoker = FakeInvoker({"authorizer": lambda _e: raised("Unauthorized"), "accounts": answer_ok})
    client = await serve(protected(), invoker)

    response = await client.get("/v1/accounts/acc-1", headers=CREDENTIALS)

    assert response.status == 401
    assert await response.json() == {"message": "Unauthorized"}
    assert response.headers["x-amzn-ErrorType"] == "UnauthorizedException"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer t1"}, {**CREDENTIALS, "X-Device-Id": ""}])
async def test_missing_identity_source_is_401_without_invoking_the_authorizer(
    serve: Serve, headers: dict[str, str]
) -> None:
    invoker = FakeInvoker({"authorizer": lambda _e: policy("Allow"), "accounts": answer_ok})
    client = await serve(protected(), invoker)

    response = await client.get("/v1/accounts/acc-1", headers=headers)

    assert response.status == 401
    assert await response.json() == {"message": "Unauthorized"}
    assert invoker.calls == []


@pytest.mark.parametrize(
    "answer",
    [
        lambda _e: raised("KeyError: 'kid'"),
        lambda _e: InvokeResult(status=200, payload=b'{"principalId": "u"}'),
        lambda _e: policy("Allow", context={"nested": {"no": "objects"}}),
    ],
    ids=["crash", "no-policy", "object-in-context"],
)
async def test_authorizer_crash_or_malformed_result_is_500(serve: Serve, answer: Handler) -> None:
    invoker = FakeInvoker({"authorizer": answer, "accounts": answer_ok})
    client = await serve(protected(), invoker)

    response = await client.get("/v1/accounts/acc-1", headers=CREDENTIALS)

    assert response.status == 500
    assert await response.json() == {"message": None}
    assert response.headers["x-amzn-ErrorType"] == "AuthorizerConfigurationException"
    assert invoker.events_for("accounts") == []


async def test_unreachable_authorizer_is_500_authorizer_failure(serve: Serve) -> None:
    client = await serve(protected(), FakeInvoker({"accounts": answer_ok}))

    response = await client.get("/v1/accounts/acc-1", headers=CREDENTIALS)

    assert response.status == 500
    assert await response.json() == {"message": None}
    assert response.headers["x-amzn-ErrorType"] == "AuthorizerFailureException"


async def test_token_authorizer_is_cached_per_token_for_its_ttl(serve: Serve) -> None:
    clock = FakeClock()
    invoker = FakeInvoker(
        {"authorizer": lambda _e: policy("Allow", f"{ARN_PREFIX}/GET/v1/accounts/*"), "accounts": answer_ok}
    )
    client = await serve(protected(TOKEN_AUTH), invoker, clock=clock)

    first = await client.get("/v1/accounts/acc-1", headers={"Authorization": "Bearer t1"})
    second = await client.get("/v1/accounts/acc-2", headers={"Authorization": "Bearer t1"})
    other_token = await client.get("/v1/accounts/acc-1", headers={"Authorization": "Bearer t2"})
    clock.now += TOKEN_AUTH.ttl_s
    expired = await client.get("/v1/accounts/acc-1", headers={"Authorization": "Bearer t1"})

    assert [r.status for r in (first, second, other_token, expired)] == [200] * 4
    assert [e["authorizationToken"] for e in invoker.events_for("authorizer")] == [
        "Bearer t1",
        "Bearer t2",
        "Bearer t1",
    ]
    assert invoker.events_for("authorizer")[0] == {
        "type": "TOKEN",
        "authorizationToken": "Bearer t1",
        "methodArn": f"{ARN_PREFIX}/GET/v1/accounts/acc-1",
    }
    cached_context = invoker.events_for("accounts")[1]["requestContext"]["authorizer"]
    assert cached_context["integrationLatency"] == 0


async def test_ttl_zero_invokes_the_authorizer_every_time(serve: Serve) -> None:
    invoker = FakeInvoker({"authorizer": lambda _e: policy("Allow"), "accounts": answer_ok})
    client = await serve(protected(REQUEST_AUTH), invoker)

    for _ in range(3):
        assert (await client.get("/v1/accounts/acc-1", headers=CREDENTIALS)).status == 200

    assert len(invoker.events_for("authorizer")) == 3


async def test_cached_policy_is_evaluated_against_each_method_arn(serve: Serve) -> None:
    # Given a policy allowing only acc-1, cached for the token
    cached = AuthorizerSpec(
        "TokenAuthorizer", "authorizer", "token", ("method.request.header.Authorization",), 300
    )
    invoker = FakeInvoker({"authorizer": lambda e: policy("Allow", e["methodArn"]), "accounts": answer_ok})
    client = await serve(protected(cached), invoker)

    # When the same token calls another account
    allowed = await client.get("/v1/accounts/acc-1", headers={"Authorization": "Bearer t1"})
    denied = await client.get("/v1/accounts/acc-2", headers={"Authorization": "Bearer t1"})

    # Then the cached policy denies it, without a second authorizer call (as on AWS)
    assert (allowed.status, denied.status) == (200, 403)
    assert len(invoker.events_for("authorizer")) == 1


async def test_deny_renders_problem_json_from_the_authorizer_context(serve: Serve) -> None:
    # Given the project's gateway response and an authorizer that denies with a problem in its context
    deny = (FIXTURES / "authorizer_deny_device_mismatch.json").read_bytes()
    denied = InvokeResult(status=200, payload=deny)
    invoker = FakeInvoker({"authorizer": lambda _e: denied, "accounts": answer_ok})
    access_denied = GatewayResponseSpec(
        response_type="ACCESS_DENIED",
        status_code=401,
        response_parameters={
            "gatewayresponse.header.Content-Type": "'application/problem+json'",
            "gatewayresponse.header.X-Correlation-Id": "method.request.header.X-Correlation-Id",
        },
        response_templates={"application/json": (FIXTURES / "problem_json.vtl").read_text()},
    )
    client = await serve(protected(gateway_responses=(access_denied,)), invoker)

    # When
    response = await client.get("/v1/accounts/acc-1", headers={**CREDENTIALS, "X-Correlation-Id": "corr-9"})

    # Then
    assert response.status == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["X-Correlation-Id"] == "corr-9"
    assert json.loads(await response.read()) == {
        "type": "https://vaultpay.dev/problems/device_mismatch",
        "title": "Device mismatch",
        "status": 401,
        "detail": "The X-Device-Id header does not match the device of the token",
        "code": "device_mismatch",
        "correlation_id": response.headers["x-amzn-RequestId"],
    }


async def test_default_4xx_applies_to_missing_routes_and_throttling(serve: Serve) -> None:
    cors = GatewayResponseSpec(
        "DEFAULT_4XX", None, {"gatewayresponse.header.Access-Control-Allow-Origin": "'*'"}, {}
    )
    client = await serve(protected(gateway_responses=(cors,)), FakeInvoker({"health": answer_ok}))

    response = await client.get("/v1/unknown")

    assert response.status == 403
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert await response.json() == {"message": "Missing Authentication Token"}


# ----------------------------------------------------------------------------------------------------
# Speed
# ----------------------------------------------------------------------------------------------------


async def test_emulator_overhead_is_well_under_a_millisecond(serve: Serve) -> None:
    """Prints throughput and latency over real HTTP (against bare aiohttp), and the in-process cost."""
    instant = proxy_result(200, {"status": "ok"})
    invoker = FakeInvoker({"fn": lambda _e: instant, "authorizer": lambda _e: policy("Allow")})
    invoker.calls = _Discard()
    api = api_spec(
        RouteSpec("GET", "/v1/health", "fn"),
        RouteSpec("GET", "/v1/accounts/{account_id}", "fn", TOKEN_AUTH),
        *(RouteSpec("GET", f"/v1/r{i}/{{id}}", "fn") for i in range(50)),
        RouteSpec("ANY", "/{proxy+}", "fn"),
    )
    client = await serve(api, invoker)
    bare = TestClient(TestServer(_bare_app(instant)))
    await bare.start_server()
    try:
        report = {}
        for label, url, headers in (
            ("bare aiohttp (baseline)", str(bare.make_url("/v1/health")), {}),
            ("emulator, no authorizer", str(client.make_url("/v1/health")), {}),
            (
                "emulator, cached TOKEN authorizer",
                str(client.make_url("/v1/accounts/a1")),
                {"Authorization": "t"},
            ),
        ):
            rps, p50, p99 = await _load(url, headers, requests=2000, concurrency=8)
            report[label] = f"{rps:,.0f} req/s, p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms"
    finally:
        await bare.close()

    # The emulator's own work per request, without sockets: route, authorizer cache, event, invoke, response.
    cost = await _handler_cost(build_api_app(api, invoker), "/v1/accounts/a1", {"Authorization": "t"}, 2000)
    report["emulator handler in-process"] = f"{cost * 1e6:.0f} µs/request"
    print("\nAPI Gateway emulator, instant invoker:", json.dumps(report, indent=2, ensure_ascii=False))

    assert cost < 0.001


def _bare_app(result: InvokeResult) -> web.Application:
    body = json.loads(result.payload)["body"].encode()

    async def handle(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


class _Discard(list[tuple[str, dict[str, Any]]]):
    """A call log that keeps nothing, so the benchmark measures the emulator rather than the fake."""

    def append(self, _item: tuple[str, dict[str, Any]]) -> None:
        return None


async def _load(
    url: str, headers: dict[str, str], *, requests: int, concurrency: int
) -> tuple[float, float, float]:
    latencies: list[float] = []
    remaining = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for _ in remaining:
                started = time.perf_counter()
                async with session.get(url, headers=headers) as response:
                    await response.read()
                    assert response.status == 200
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100)
    return requests / elapsed, quantiles[49], quantiles[98]


async def _handler_cost(app: web.Application, path: str, headers: dict[str, str], rounds: int) -> float:
    """Seconds per request spent in the emulator's handler (the mocked requests are built beforehand)."""
    probe = make_mocked_request("GET", path, headers=headers, app=app)
    handler = (await app.router.resolve(probe)).handler
    await handler(probe)  # warms the authorizer cache
    requests = [make_mocked_request("GET", path, headers=headers, app=app) for _ in range(rounds)]
    started = time.perf_counter()
    for request in requests:
        response = await handler(request)
        assert response.status == 200
    return (time.perf_counter() - started) / rounds

"""The resolver's side of the authorizer: the principal from its context, and soft denies before any route."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from support.apigw import CUSTOMER_DECISION, request_event

from vaultpay.auth import authorizer as authorizer_module
from vaultpay.shared import http
from vaultpay.shared.http import (
    CORRELATION_HEADER,
    PROBLEM_JSON,
    Principal,
    RequestModel,
    make_resolver,
    principal,
)

pytestmark = pytest.mark.unit

REQUEST_ID = "5b3e3a0e-6f1d-4b8e-9a53-2f0f1c0d9e71"
ALLOWED = {**CUSTOMER_DECISION, "integrationLatency": 12}


class CreateThing(RequestModel):
    name: str


class RouteSpy:
    def __init__(self) -> None:
        self.calls = 0


def _app(spy: RouteSpy) -> APIGatewayRestResolver:
    app = make_resolver()

    @app.get("/v1/me")
    def me() -> dict[str, Any]:
        spy.calls += 1
        who = principal(app)
        return {
            "user_id": who.user_id,
            "role": who.role,
            "device_id": who.device_id,
            "cid": who.correlation_id,
        }

    @app.post("/v1/things")
    def create_thing(thing: CreateThing) -> dict[str, Any]:
        spy.calls += 1
        return {"name": thing.name}

    return app


def _event(
    method: str,
    path: str,
    *,
    authorizer: dict[str, Any] | None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", **(headers or {})}
    return request_event(
        method, path, headers=headers, body=body, authorizer=authorizer, request_id=REQUEST_ID
    )


def _call(
    app: APIGatewayRestResolver, event: dict[str, Any]
) -> tuple[int, dict[str, list[str]], dict[str, Any]]:
    response = app.resolve(event, None)  # type: ignore[arg-type]
    return response["statusCode"], response["multiValueHeaders"], json.loads(response["body"])


def test_the_principal_comes_from_the_authorizer_context() -> None:
    spy = RouteSpy()
    status, _headers, body = _call(_app(spy), _event("GET", "/v1/me", authorizer=ALLOWED))
    assert status == 200
    assert body == {
        "user_id": "usr_01JD3F6Q",
        "role": "customer",
        "device_id": "device-4f1c2a",
        "cid": "c0ffee00-0000-4000-8000-000000000002",
    }


def test_the_principal_is_never_read_from_client_headers() -> None:
    # Given a public route (no authorizer context) and a client claiming to be someone
    spy = RouteSpy()
    event = _event("GET", "/v1/me", authorizer=None, headers={"X-User-Id": "usr_admin", "X-Role": "admin"})
    # When the handler asks for the principal
    status, headers, body = _call(_app(spy), event)
    # Then there is none: 401, whatever the headers say
    assert status == 401
    assert body["code"] == "unauthorized"
    assert headers["Content-Type"] == [PROBLEM_JSON]


@pytest.mark.parametrize("missing", ["user_id", "role", "device_id"])
def test_an_authorizer_context_without_an_identity_field_is_unauthorized(missing: str) -> None:
    context = {k: v for k, v in ALLOWED.items() if k != missing}
    status, _, body = _call(_app(RouteSpy()), _event("GET", "/v1/me", authorizer=context))
    assert status == 401
    assert body["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("auth_error", "status", "code"),
    [("device_id_required", 400, "device_id_required"), ("device_mismatch", 401, "device_mismatch")],
)
def test_a_soft_deny_is_answered_before_the_route_runs(auth_error: str, status: int, code: str) -> None:
    spy = RouteSpy()
    event = _event("GET", "/v1/me", authorizer={**ALLOWED, "auth_error": auth_error})
    got_status, headers, body = _call(_app(spy), event)
    assert (got_status, body["code"], body["status"]) == (status, code, status)
    assert body["type"] == f"https://vaultpay.dev/problems/{code}"
    assert headers["Content-Type"] == [PROBLEM_JSON]
    assert body["correlation_id"] == headers[CORRELATION_HEADER][0]
    assert spy.calls == 0


@pytest.mark.parametrize("retry_after", [45, "45"])
def test_rate_limited_is_429_with_retry_after(retry_after: Any) -> None:
    spy = RouteSpy()
    event = _event(
        "GET", "/v1/me", authorizer={**ALLOWED, "auth_error": "rate_limited", "retry_after": retry_after}
    )
    status, headers, body = _call(_app(spy), event)
    assert status == 429
    assert body["code"] == "rate_limited"
    assert headers["Retry-After"] == ["45"]
    assert spy.calls == 0


def test_a_soft_deny_wins_over_request_validation() -> None:
    # Given a wrong device AND an invalid body
    spy = RouteSpy()
    event = _event(
        "POST", "/v1/things", authorizer={**ALLOWED, "auth_error": "device_mismatch"}, body={"unknown": 1}
    )
    # Then the answer is the 401, and nothing tells the caller how its body is wrong
    status, _, body = _call(_app(spy), event)
    assert status == 401
    assert body["code"] == "device_mismatch"
    assert "errors" not in body
    assert spy.calls == 0


def test_an_unknown_auth_error_fails_closed() -> None:
    spy = RouteSpy()
    status, _, _body = _call(
        _app(spy), _event("GET", "/v1/me", authorizer={**ALLOWED, "auth_error": "new_thing"})
    )
    assert status == 401
    assert spy.calls == 0


def test_requests_without_a_soft_deny_reach_validation_and_the_route() -> None:
    spy = RouteSpy()
    app = _app(spy)
    status, _, body = _call(app, _event("POST", "/v1/things", authorizer=ALLOWED, body={"unknown": 1}))
    assert status == 422
    status, _, body = _call(app, _event("POST", "/v1/things", authorizer=None, body={"name": "x"}))
    assert (status, body) == (200, {"name": "x"})
    assert spy.calls == 1


def test_the_principal_falls_back_to_the_request_correlation_id() -> None:
    context = {k: v for k, v in ALLOWED.items() if k != "correlation_id"}
    _, headers, body = _call(_app(RouteSpy()), _event("GET", "/v1/me", authorizer=context))
    assert body["cid"] == REQUEST_ID == headers[CORRELATION_HEADER][0]


def test_principal_is_a_frozen_value() -> None:
    who = Principal(user_id="u", role="customer", device_id="d", correlation_id="c")
    with pytest.raises(AttributeError):
        who.role = "admin"  # type: ignore[misc]


def test_the_authorizer_and_the_resolver_accept_the_same_correlation_ids() -> None:
    # The authorizer keeps its own copy of the rule (importing http would slow every request's cold start)
    assert authorizer_module._CORRELATION_ID.pattern == http._CORRELATION_ID.pattern


def test_every_request_logs_one_structured_line_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    import json as _json

    from vaultpay.shared import http as http_module
    from vaultpay.shared.http import REQUEST_LOGGED, make_resolver

    lines: list[dict[str, object]] = []

    class RecordingLogger:
        def info(self, message: str, *, extra: dict[str, object] | None = None, **_: object) -> None:
            lines.append({"message": message, **(extra or {})})

        error = warning = exception = debug = info

        def append_keys(self, **_: object) -> None:
            return None

    # The shared logger is cached per process and bound to the real stdout: record calls instead.
    monkeypatch.setattr(http_module, "get_logger", RecordingLogger)
    app = make_resolver()

    @app.get("/v1/thing")
    def thing() -> dict[str, str]:
        return {"ok": "yes"}

    event = {
        "resource": "/v1/thing",
        "path": "/v1/thing",
        "httpMethod": "GET",
        "headers": {"Authorization": "Bearer secret-token-value", "X-Correlation-Id": "corr-1"},
        "multiValueHeaders": {},
        "queryStringParameters": {"q": "private"},
        "requestContext": {
            "identity": {"sourceIp": "203.0.113.9"},
            "authorizer": {"user_id": "u-1", "role": "customer", "device_id": "d", "auth_error": ""},
            "requestId": "r-1",
        },
        "body": None,
        "isBase64Encoded": False,
    }
    response = app.resolve(event, None)
    logged = [line for line in lines if line.get("message") == REQUEST_LOGGED]

    assert response["statusCode"] == 200
    assert len(logged) == 1
    entry = logged[0]
    assert (entry["http_method"], entry["route"], entry["status"]) == ("GET", "/v1/thing", 200)
    assert (entry["user_id"], entry["source_ip"], entry["correlation_id"]) == ("u-1", "203.0.113.9", "corr-1")
    assert "secret-token-value" not in _json.dumps(lines)
    assert "private" not in _json.dumps(entry)

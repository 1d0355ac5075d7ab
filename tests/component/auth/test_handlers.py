"""Each identity function, from its sample API Gateway event to its response, on moto-backed AWS."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pyotp
import pytest

from vaultpay.auth.tokens import public_keys_from_jwks, verify_access_token

pytestmark = pytest.mark.component

PASSWORD = "correct horse battery staple"
DEVICE = "device-4f1c2a"  # the sample events' X-Device-Id
ISSUER = "https://auth.vaultpay.dev/test"


class Api:
    """Calls a function's handler with its sample event, changed as a test needs."""

    def __init__(
        self,
        function: Callable[[str], ModuleType],
        sample_event: Callable[[str], dict[str, Any]],
        context: Any,
    ) -> None:
        self._function = function
        self._sample = sample_event
        self._context = context

    def call(
        self,
        name: str,
        body: Any = None,
        *,
        device: str | None = DEVICE,
        source_ip: str | None = None,
        authorizer: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        event = self._sample(name)
        if body is not None:
            event["body"] = json.dumps(body)
        for headers in (event["headers"], event["multiValueHeaders"]):
            headers.pop("X-Device-Id", None)
        if device is not None:
            event["headers"]["X-Device-Id"] = device
            event["multiValueHeaders"]["X-Device-Id"] = [device]
        if source_ip is not None:
            event["requestContext"]["identity"]["sourceIp"] = source_ip
        if authorizer is not None:
            event["requestContext"]["authorizer"].update(authorizer)
        if query is not None:
            event["queryStringParameters"] = query
            event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
        response = self._function(name).handler(event, self._context)
        headers = {k: v[0] for k, v in response.get("multiValueHeaders", {}).items()}
        raw = response.get("body")
        return response["statusCode"], headers, json.loads(raw) if raw else None


@pytest.fixture
def api(
    cloud: Any,
    function: Callable[[str], ModuleType],
    sample_event: Callable[[str], dict[str, Any]],
    lambda_context: Any,
) -> Api:
    return Api(function, sample_event, lambda_context)


def _register(api: Api, email: str = "Asha.Rao@Example.com") -> dict[str, Any]:
    status, _, body = api.call(
        "register", {"email": email, "password": PASSWORD, "full_name": "Asha Rao", "phone": "+919876543210"}
    )
    assert status == 201, body
    return dict(body)


def _sign_in(api: Api, registered: dict[str, Any], *, device: str = DEVICE) -> dict[str, Any]:
    status, _, started = api.call(
        "login", {"email": registered["email"], "password": PASSWORD}, device=device
    )
    assert status == 200, started
    code = pyotp.TOTP(registered["mfa"]["secret"]).now()
    status, _, tokens = api.call(
        "mfa_verify", {"challenge_id": started["challenge_id"], "code": code}, device=device
    )
    assert status == 200, tokens
    return dict(tokens)


def _problem(reply: tuple[int, dict[str, str], Any], status: int, code: str) -> dict[str, Any]:
    got_status, headers, body = reply
    assert (got_status, body["code"]) == (status, code), body
    assert headers["Content-Type"] == "application/problem+json"
    assert body["type"] == f"https://vaultpay.dev/problems/{code}"
    return dict(body)


# ---- register ----------------------------------------------------------------------------------------------


def test_register_answers_201_with_the_totp_enrolment_and_no_caching(api: Api) -> None:
    status, headers, body = api.call("register")
    assert status == 201
    assert set(body) == {"user_id", "email", "mfa"}
    assert body["email"] == "asha.rao@example.com"
    assert body["mfa"]["type"] == "totp" and len(body["mfa"]["secret"]) == 32
    assert body["mfa"]["otpauth_uri"].startswith("otpauth://totp/VaultPay:asha.rao%40example.com?secret=")
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Correlation-Id"] == "c0ffee00-0000-4000-8000-000000000011"


@pytest.mark.parametrize("extra", [{"role": "admin"}, {"user_id": "usr_mine"}, {"mfa": False}])
def test_register_refuses_any_field_beyond_the_four_with_422(api: Api, extra: dict[str, Any]) -> None:
    body = {
        "email": "m@example.com",
        "password": PASSWORD,
        "full_name": "Mallory",
        "phone": "+919876543210",
        **extra,
    }
    problem = _problem(api.call("register", body), 422, "validation_failed")
    assert problem["errors"] == [{"field": next(iter(extra)), "message": "is not allowed"}]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "no-at-sign"),
        ("password", "short"),
        ("full_name", ""),
        ("phone", "98125"),
        ("phone", 919812345678),
    ],
)
def test_register_names_the_invalid_field_without_echoing_it(api: Api, field: str, value: Any) -> None:
    body = {
        "email": "a@example.com",
        "password": PASSWORD,
        "full_name": "Asha",
        "phone": "+919876543210",
        field: value,
    }
    problem = _problem(api.call("register", body), 422, "validation_failed")
    assert [e["field"] for e in problem["errors"]] == [field]
    assert str(value) not in json.dumps(problem) or value == ""


def test_register_refuses_an_email_already_taken_in_any_case_with_409(api: Api) -> None:
    _register(api)
    _problem(
        api.call(
            "register",
            {
                "email": " ASHA.RAO@example.COM",
                "password": PASSWORD,
                "full_name": "A",
                "phone": "+919876543210",
            },
        ),
        409,
        "email_taken",
    )


def test_register_refuses_a_body_that_is_not_json_with_400(
    api: Api,
    sample_event: Callable[[str], dict[str, Any]],
    function: Callable[[str], ModuleType],
    lambda_context: Any,
) -> None:
    event = sample_event("register")
    event["body"] = "{not json"
    response = function("register").handler(event, lambda_context)
    assert response["statusCode"] == 400 and json.loads(response["body"])["code"] == "malformed_json"


# ---- login, MFA --------------------------------------------------------------------------------------------


def test_login_without_a_device_id_is_400(api: Api) -> None:
    _problem(api.call("login", device=None), 400, "device_id_required")


def test_login_and_mfa_give_a_token_pair_that_the_jwks_verifies(api: Api) -> None:
    registered = _register(api)
    status, headers, started = api.call("login", {"email": "asha.rao@example.com", "password": PASSWORD})
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert started["mfa_required"] is True and started["expires_in"] == 300
    code = pyotp.TOTP(registered["mfa"]["secret"]).now()
    status, headers, tokens = api.call("mfa_verify", {"challenge_id": started["challenge_id"], "code": code})
    assert status == 200
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in", "refresh_expires_in"}
    assert (tokens["token_type"], tokens["expires_in"], tokens["refresh_expires_in"]) == (
        "Bearer",
        900,
        604800,
    )
    assert headers["Cache-Control"] == "no-store"
    # The JWKS function publishes the key that signed it
    status, headers, jwks = api.call("jwks", device=None)
    assert status == 200 and headers["Cache-Control"] == "public, max-age=300"
    assert all("d" not in key for key in jwks["keys"])
    import time

    claims = verify_access_token(
        tokens["access_token"],
        public_keys_by_kid=public_keys_from_jwks(jwks),
        issuer=ISSUER,
        audience="vaultpay-api",
        now=time.time(),
    )
    assert (claims.user_id, claims.role, claims.device_id) == (registered["user_id"], "customer", DEVICE)


def test_wrong_password_and_unknown_email_are_the_same_401(api: Api) -> None:
    _register(api)
    wrong = _problem(
        api.call("login", {"email": "asha.rao@example.com", "password": "wrong password!!"}),
        401,
        "invalid_credentials",
    )
    unknown = _problem(
        api.call("login", {"email": "nobody@example.com", "password": PASSWORD}), 401, "invalid_credentials"
    )
    assert {k: v for k, v in wrong.items() if k != "correlation_id"} == {
        k: v for k, v in unknown.items() if k != "correlation_id"
    }


def test_repeated_failed_logins_are_429_with_retry_after(api: Api) -> None:
    _register(api)
    for _ in range(5):
        _problem(
            api.call("login", {"email": "asha.rao@example.com", "password": "wrong password!!"}),
            401,
            "invalid_credentials",
        )
    status, headers, body = api.call("login", {"email": "asha.rao@example.com", "password": PASSWORD})
    assert (status, body["code"]) == (429, "rate_limited")
    assert 1 <= int(headers["Retry-After"]) <= 900


def test_a_challenge_opened_on_one_device_is_refused_on_another(api: Api) -> None:
    registered = _register(api)
    _, _, started = api.call("login", {"email": "asha.rao@example.com", "password": PASSWORD})
    code = pyotp.TOTP(registered["mfa"]["secret"]).now()
    _problem(
        api.call("mfa_verify", {"challenge_id": started["challenge_id"], "code": code}, device="attacker"),
        401,
        "device_mismatch",
    )


def test_a_wrong_code_is_401_invalid_code(api: Api) -> None:
    registered = _register(api)
    _, _, started = api.call("login", {"email": "asha.rao@example.com", "password": PASSWORD})
    right = pyotp.TOTP(registered["mfa"]["secret"]).now()
    _problem(
        api.call(
            "mfa_verify",
            {"challenge_id": started["challenge_id"], "code": "123456" if right != "123456" else "654321"},
        ),
        401,
        "invalid_code",
    )


# ---- refresh, logout ---------------------------------------------------------------------------------------


def test_refresh_rotates_and_reuse_revokes_everything(api: Api) -> None:
    tokens = _sign_in(api, _register(api))
    status, headers, second = api.call("refresh", {"refresh_token": tokens["refresh_token"]})
    assert status == 200 and second["refresh_token"] != tokens["refresh_token"]
    assert headers["Cache-Control"] == "no-store"
    _problem(api.call("refresh", {"refresh_token": tokens["refresh_token"]}), 401, "refresh_token_reused")
    _problem(api.call("refresh", {"refresh_token": second["refresh_token"]}), 401, "invalid_refresh_token")


def test_refresh_from_another_device_is_401(api: Api) -> None:
    tokens = _sign_in(api, _register(api))
    _problem(
        api.call("refresh", {"refresh_token": tokens["refresh_token"]}, device="thief"),
        401,
        "device_mismatch",
    )
    _problem(
        api.call("refresh", {"refresh_token": tokens["refresh_token"]}, device=None),
        400,
        "device_id_required",
    )


def test_logout_is_204_twice_and_ends_the_session(api: Api) -> None:
    tokens = _sign_in(api, _register(api))
    for _ in range(2):
        status, _, body = api.call("logout", {"refresh_token": tokens["refresh_token"]})
        assert (status, body) == (204, None)
    _problem(api.call("refresh", {"refresh_token": tokens["refresh_token"]}), 401, "invalid_refresh_token")
    _problem(api.call("logout", {"refresh_token": "vprt_" + "Z" * 43}), 401, "invalid_refresh_token")


# ---- me, devices -------------------------------------------------------------------------------------------


def test_me_returns_the_principals_profile_with_a_masked_phone(api: Api) -> None:
    registered = _register(api)
    status, headers, me = api.call("me", authorizer={"user_id": registered["user_id"]})
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert me["user_id"] == registered["user_id"] and me["email"] == "asha.rao@example.com"
    assert (me["full_name"], me["phone_masked"], me["role"]) == ("Asha Rao", "+91******3210", "customer")
    assert me["created_at"].endswith("Z")


def test_me_answers_the_authorizers_soft_deny_before_any_handler_code(api: Api) -> None:
    registered = _register(api)
    _problem(
        api.call("me", authorizer={"user_id": registered["user_id"], "auth_error": "device_mismatch"}),
        401,
        "device_mismatch",
    )


def test_me_without_an_authorizer_context_is_401(api: Api) -> None:
    _problem(api.call("me", authorizer={"user_id": ""}), 401, "unauthorized")


def test_devices_lists_where_the_user_signed_in(api: Api) -> None:
    registered = _register(api)
    _sign_in(api, registered)
    status, _, page = api.call("devices", authorizer={"user_id": registered["user_id"]})
    assert status == 200
    [device] = page["items"]
    assert device["device_id"] == DEVICE and device["trusted"] is False
    assert device["first_seen_at"] == device["last_seen_at"]
    assert page["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"limit": "0"}, "validation_failed"),
        ({"limit": "101"}, "validation_failed"),
        ({"cursor": "bm9wZQ"}, "invalid_cursor"),
    ],
)
def test_devices_refuses_a_bad_limit_or_cursor_with_422(api: Api, query: dict[str, str], code: str) -> None:
    _problem(api.call("devices", query=query, authorizer={"user_id": "usr_x"}), 422, code)


# ---- create_admin ------------------------------------------------------------------------------------------


def test_create_admin_makes_an_admin_who_signs_in_as_admin(
    api: Api, function: Callable[[str], ModuleType], lambda_context: Any
) -> None:
    payload = {
        "email": "Ops@VaultPay.dev",
        "password": PASSWORD,
        "full_name": "Ops",
        "phone": "+919812345678",
    }
    created = function("create_admin").handler(payload, lambda_context)
    assert set(created) == {"user_id", "role", "mfa"} and created["role"] == "admin"
    assert created["mfa"]["otpauth_uri"].startswith("otpauth://totp/")
    tokens = _sign_in(api, {"email": "ops@vaultpay.dev", "mfa": created["mfa"]})
    _, _, jwks = api.call("jwks", device=None)
    import time

    claims = verify_access_token(
        tokens["access_token"],
        public_keys_by_kid=public_keys_from_jwks(jwks),
        issuer=ISSUER,
        audience="vaultpay-api",
        now=time.time(),
    )
    assert claims.role == "admin"


def test_create_admin_records_the_operator_who_ran_it_in_its_event(
    cloud: Any, function: Callable[[str], ModuleType], lambda_context: Any
) -> None:
    payload = {
        "email": "treasury@vaultpay.dev",
        "password": PASSWORD,
        "full_name": "Treasury",
        "phone": "+919812345670",
        "operator": "arn:aws:sts::123456789012:assumed-role/vaultpay-operators/priya",
    }
    created = function("create_admin").handler(payload, lambda_context)
    assert created["role"] == "admin", created
    items = cloud.dynamodb.scan(TableName="vaultpay-test-auth")["Items"]  # the fixture's AuthTable
    [event] = [
        item
        for item in items
        if item["pk"]["S"].startswith("OUTBOX#") and item["subject"]["S"] == created["user_id"]
    ]
    assert event["type"]["S"] == "vaultpay.auth.user.created"
    assert event["actor"]["S"] == payload["operator"]
    assert json.loads(event["data"]["S"])["created_by"] == payload["operator"]
    # An operator identity that is not printable text is refused like any other field
    refused = function("create_admin").handler(
        {**payload, "email": "b@vaultpay.dev", "operator": "a\nb"}, lambda_context
    )
    assert refused["error"]["errors"] == [
        {"field": "operator", "message": "must be 1..128 visible ASCII characters"}
    ]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (
            {
                "email": "x@vaultpay.dev",
                "password": PASSWORD,
                "full_name": "X",
                "phone": "+919812345678",
                "role": "customer",
            },
            "role",
        ),
        ({"email": "x@vaultpay.dev", "password": PASSWORD, "full_name": "X"}, "phone"),
        (
            {"email": "x@vaultpay.dev", "password": "short", "full_name": "X", "phone": "+919812345678"},
            "password",
        ),
        ({"email": 5, "password": PASSWORD, "full_name": "X", "phone": "+919812345678"}, "email"),
    ],
)
def test_create_admin_refuses_what_register_refuses_without_echoing_the_password(
    cloud: Any,
    function: Callable[[str], ModuleType],
    lambda_context: Any,
    payload: dict[str, Any],
    field: str,
) -> None:
    answer = function("create_admin").handler(payload, lambda_context)
    assert answer["error"]["code"] == "validation_failed"
    assert [e["field"] for e in answer["error"]["errors"]] == [field]
    assert PASSWORD not in json.dumps(answer)


def test_create_admin_refuses_a_taken_email(
    cloud: Any, api: Api, function: Callable[[str], ModuleType], lambda_context: Any
) -> None:
    _register(api)
    payload = {
        "email": "asha.rao@example.com",
        "password": PASSWORD,
        "full_name": "X",
        "phone": "+919812345678",
    }
    assert function("create_admin").handler(payload, lambda_context)["error"]["code"] == "email_taken"

"""Every AWS action each identity function makes, recorded at the botocore level: the least-privilege list."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pyotp
import pytest
from support.iam import Action, ActionRecorder

pytestmark = pytest.mark.component

PASSWORD = "correct horse battery staple"

# What the template must grant, per function; a test below fails if a function needs more or less.
# TransactWriteItems is authorised per item, as the PutItem / UpdateItem it contains.
EXPECTED: dict[str, set[Action]] = {
    "register": {
        ("secretsmanager:GetSecretValue", "BlindIndexKeySecret"),
        ("dynamodb:GetItem", "AuthTable"),
        ("dynamodb:PutItem", "AuthTable"),
        ("kms:GenerateDataKey", "PiiKey"),
        ("dynamodb:UpdateItem", "AuthRateLimitTable"),  # registrations per IP and in all
    },
    "login": {
        ("secretsmanager:GetSecretValue", "BlindIndexKeySecret"),
        ("dynamodb:UpdateItem", "AuthRateLimitTable"),  # attempts reserved, given back, challenges counted
        ("dynamodb:GetItem", "AuthTable"),
        ("dynamodb:PutItem", "AuthTable"),
        ("dynamodb:UpdateItem", "AuthTable"),  # re-hashing a password stored with older parameters
    },
    "mfa_verify": {
        ("dynamodb:GetItem", "AuthTable"),
        ("dynamodb:PutItem", "AuthTable"),
        ("dynamodb:UpdateItem", "AuthTable"),
        ("dynamodb:UpdateItem", "AuthRateLimitTable"),
        ("kms:Decrypt", "PiiKey"),
        ("kms:Sign", "TokenSigningKey"),
    },
    "refresh": {
        ("dynamodb:GetItem", "AuthTable"),
        ("dynamodb:PutItem", "AuthTable"),
        ("dynamodb:UpdateItem", "AuthTable"),
        ("dynamodb:UpdateItem", "AuthRateLimitTable"),
        ("kms:Sign", "TokenSigningKey"),
    },
    "logout": {
        ("dynamodb:GetItem", "AuthTable"),
        ("dynamodb:PutItem", "AuthTable"),
        ("dynamodb:UpdateItem", "AuthTable"),
    },
    "me": {("dynamodb:GetItem", "AuthTable"), ("kms:Decrypt", "PiiKey")},
    "devices": {("dynamodb:Query", "AuthTable")},
    "jwks": {("kms:GetPublicKey", "TokenSigningKey")},
    # The profile's status and the event, in one transaction; read back for the answer.
    "admin_users": {
        ("dynamodb:UpdateItem", "AuthTable"),
        ("dynamodb:PutItem", "AuthTable"),
        ("dynamodb:GetItem", "AuthTable"),
    },
    "create_admin": {
        ("secretsmanager:GetSecretValue", "BlindIndexKeySecret"),
        ("dynamodb:GetItem", "AuthTable"),
        ("dynamodb:PutItem", "AuthTable"),
        ("kms:GenerateDataKey", "PiiKey"),
    },
}


@pytest.fixture
def recorder(cloud: Any, monkeypatch: pytest.MonkeyPatch) -> ActionRecorder:
    recorder = ActionRecorder(
        {
            "vaultpay-test-auth-rate-limits": "AuthRateLimitTable",
            "vaultpay-test-auth": "AuthTable",
            cloud.key_id: "PiiKey",
            cloud.signing_key_arn: "TokenSigningKey",
            cloud.blind_index_secret_arn: "BlindIndexKeySecret",
        }
    )
    recorder.install(monkeypatch)
    return recorder


def test_each_function_uses_exactly_the_actions_its_policy_grants(
    recorder: ActionRecorder,
    function: Callable[[str], ModuleType],
    sample_event: Callable[[str], dict[str, Any]],
    lambda_context: Any,
    cold_start: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each function cold (fresh caches), through every path that needs a permission: failures included.
    def call(name: str, body: Any = None, path: str | None = None, **authorizer: str) -> dict[str, Any]:
        cold_start()
        recorder.current = name
        try:
            if name == "create_admin":
                return dict(function(name).handler(body, lambda_context))
            event = sample_event(name)
            if body is not None:
                event["body"] = json.dumps(body)
            if path is not None:
                event["path"], event["pathParameters"] = path, {"user_id": path.split("/")[4]}
            if authorizer:
                event["requestContext"]["authorizer"].update(authorizer)
            response = function(name).handler(event, lambda_context)
            return {"status": response["statusCode"], "body": json.loads(response["body"] or "null")}
        finally:
            recorder.current = None

    registration = {
        "email": "asha@example.com",
        "password": PASSWORD,
        "full_name": "Asha",
        "phone": "+919876543210",
    }
    registered = call("register", registration)["body"]
    call("register", registration)  # 409
    call("create_admin", {**registration, "email": "ops@vaultpay.dev"})
    assert call("login", {"email": "asha@example.com", "password": "wrong password"})["status"] == 401
    # A stored hash made with older Argon2 parameters is upgraded at the next successful login.
    from vaultpay.shared import passwords

    with monkeypatch.context() as older:
        older.setattr(passwords, "ITERATIONS", passwords.ITERATIONS + 1)
        started = call("login", {"email": "asha@example.com", "password": PASSWORD})["body"]
    assert call("mfa_verify", {"challenge_id": started["challenge_id"], "code": "000000"})["status"] == 401
    code = pyotp.TOTP(registered["mfa"]["secret"]).now()
    tokens = call("mfa_verify", {"challenge_id": started["challenge_id"], "code": code})["body"]
    second = call("refresh", {"refresh_token": tokens["refresh_token"]})["body"]
    assert (
        call("refresh", {"refresh_token": tokens["refresh_token"]})["status"] == 401
    )  # reuse: revoke + event
    assert call("logout", {"refresh_token": second["refresh_token"]})["status"] == 204
    assert call("logout", {"refresh_token": tokens["refresh_token"]})["status"] == 401  # reuse at logout
    assert call("me", user_id=registered["user_id"])["status"] == 200
    assert call("devices", user_id=registered["user_id"])["status"] == 200
    assert call("jwks")["status"] == 200
    target = registered["user_id"]
    disabled = call(
        "admin_users", {"reason": "card reported stolen"}, path=f"/v1/admin/users/{target}/disable"
    )
    assert disabled == {"status": 200, "body": {"user_id": target, "status": "DISABLED"}}

    assert recorder.actions == EXPECTED

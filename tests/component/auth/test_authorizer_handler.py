"""AuthorizerFunction's handler and wiring against moto: the session store, KMS public keys, no writes."""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support.handlers import load_handler
from support.lambda_context import FakeLambdaContext
from support.tables import create_table

from vaultpay import bootstrap
from vaultpay.auth.adapters import KmsTokenSigner
from vaultpay.auth.tokens import TokenSigner, issue_access_token

pytestmark = pytest.mark.component
ROOT = Path(__file__).resolve().parents[3]
ISSUER = "https://auth.vaultpay.dev/local"
AUDIENCE = "vaultpay-api"
USER = "usr_01JD3F6Q"
DEVICE = "device-4f1c2a"


LAMBDA_CONTEXT = FakeLambdaContext("vaultpay-local-AuthorizerFunction")


@dataclass
class Stack:
    dynamodb: Any
    kms: Any
    auth_table: str
    key_arn: str
    keys: TokenSigner


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    from moto import mock_aws

    from vaultpay.shared.aws import aws_client

    environment = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "AUTH_TABLE": "vaultpay-test-AuthTable",
        "TOKEN_ISSUER": ISSUER,
        "TOKEN_AUDIENCE": AUDIENCE,
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_KMS"):
        monkeypatch.delenv(name, raising=False)
    bootstrap.reset()
    with mock_aws():
        dynamodb = aws_client("dynamodb")
        create_table(dynamodb, "AuthTable", environment["AUTH_TABLE"])
        # The token's user exists and is active (the authorizer ends tokens of missing or disabled users)
        dynamodb.put_item(
            TableName=environment["AUTH_TABLE"],
            Item={"pk": {"S": f"USER#{USER}"}, "sk": {"S": "PROFILE"}, "status": {"S": "ACTIVE"}},
        )
        kms = aws_client("kms")
        arn = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
        monkeypatch.setenv("TOKEN_SIGNING_KEY_ID", arn)
        yield Stack(
            dynamodb=dynamodb,
            kms=kms,
            auth_table=environment["AUTH_TABLE"],
            key_arn=arn,
            keys=KmsTokenSigner(kms, arn),
        )
    bootstrap.reset()


@pytest.fixture(scope="module")
def app() -> ModuleType:
    return load_handler("auth/authorizer")


def _token(keys: TokenSigner, *, role: str = "customer") -> str:
    token, _ = issue_access_token(
        keys, user_id=USER, role=role, device_id=DEVICE, issuer=ISSUER, audience=AUDIENCE, now=time.time()
    )
    return token


def _event(sample: str = "authorizer_me.json", **headers: str | None) -> dict[str, Any]:
    event: dict[str, Any] = copy.deepcopy(json.loads((ROOT / "events" / "auth" / sample).read_text()))
    for name, value in headers.items():
        header = name.replace("_", "-")
        for key in [k for k in event["headers"] if k.lower() == header.lower()]:
            del event["headers"][key]
            del event["multiValueHeaders"][key]
        if value is not None:
            event["headers"][header] = value
            event["multiValueHeaders"][header] = [value]
    return event


def _items(stack: Stack, table: str) -> list[dict[str, Any]]:
    return list(stack.dynamodb.scan(TableName=table)["Items"])


def test_a_valid_token_is_allowed_and_nothing_is_written(app: ModuleType, stack: Stack) -> None:
    event = _event(Authorization=f"Bearer {_token(stack.keys)}")
    response = app.handler(event, LAMBDA_CONTEXT)
    assert response["principalId"] == USER
    # API Gateway caches the policy by the token: it allows the whole stage for this customer
    # (every route but the admin ones, which a Deny names)
    allow, deny = response["policyDocument"]["Statement"]
    stage = "/".join(event["methodArn"].split("/")[:2])
    assert (allow["Effect"], allow["Resource"]) == ("Allow", f"{stage}/*")
    assert (deny["Effect"], deny["Resource"]) == ("Deny", [f"{stage}/*/v1/admin", f"{stage}/*/v1/admin/*"])
    assert response["context"]["auth_error"] == ""
    assert response["context"]["device_id"] == DEVICE  # the token's: the function compares the request's
    # The count and a device mismatch's event are the function's (vaultpay.shared.caller_checks)
    assert [item["pk"]["S"] for item in _items(stack, stack.auth_table)] == [f"USER#{USER}"]


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic dXNlcjpwYXNz"])
def test_an_unauthenticated_request_fails_with_exactly_unauthorized(
    app: ModuleType, stack: Stack, authorization: str | None
) -> None:
    # API Gateway turns this exact message, and only it, into the 401 gateway response
    with pytest.raises(Exception, match=r"^Unauthorized$") as caught:
        app.handler(_event(Authorization=authorization), LAMBDA_CONTEXT)
    assert type(caught.value) is Exception
    assert caught.value.__cause__ is None


def test_another_device_gets_the_tokens_decision_and_nothing_is_written(
    app: ModuleType, stack: Stack
) -> None:
    # The decision is cached by the token and serves its later requests from any device: it cannot be
    # about this request's device (the function checks that, and writes the mismatch's event)
    event = _event(Authorization=f"Bearer {_token(stack.keys)}", X_Device_Id="attacker-phone")
    response = app.handler(event, LAMBDA_CONTEXT)
    assert (response["context"]["auth_error"], response["context"]["device_id"]) == ("", DEVICE)
    assert [item["pk"]["S"] for item in _items(stack, stack.auth_table)] == [f"USER#{USER}"]


def test_a_customer_on_an_admin_route_is_denied(app: ModuleType, stack: Stack) -> None:
    event = _event("authorizer_admin_deposit.json", Authorization=f"Bearer {_token(stack.keys)}")
    response = app.handler(event, LAMBDA_CONTEXT)
    # The customer's role policy: this admin route falls under its Deny
    deny = next(s for s in response["policyDocument"]["Statement"] if s["Effect"] == "Deny")
    assert "/v1/admin/" in event["methodArn"] and any(r.endswith("/v1/admin/*") for r in deny["Resource"])
    assert response["context"]["code"] == "forbidden"


def test_an_admin_is_allowed_on_an_admin_route(app: ModuleType, stack: Stack) -> None:
    event = _event(
        "authorizer_admin_deposit.json", Authorization=f"Bearer {_token(stack.keys, role='admin')}"
    )
    response = app.handler(event, LAMBDA_CONTEXT)
    assert response["policyDocument"]["Statement"][0]["Effect"] == "Allow"


def test_an_unreadable_verification_key_fails_closed_and_never_as_unauthorized(
    app: ModuleType, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A broken deployment must surface as a 500 (and an alarm), not as "your token is bad"
    missing = stack.key_arn.rsplit("/", 1)[0] + "/0b3b3f0e-0000-4000-8000-000000000000"
    monkeypatch.setenv("TOKEN_SIGNING_KEY_ID", missing)
    bootstrap.reset()
    with pytest.raises(Exception, match="KMS refused GetPublicKey") as caught:
        app.handler(_event(Authorization=f"Bearer {_token(stack.keys)}"), LAMBDA_CONTEXT)
    assert str(caught.value) != "Unauthorized"


def test_a_missing_setting_names_the_variable(
    app: ModuleType, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUTH_TABLE")
    bootstrap.reset()
    with pytest.raises(Exception, match="AUTH_TABLE is not set"):
        app.handler(_event(Authorization=f"Bearer {_token(stack.keys)}"), LAMBDA_CONTEXT)


def test_the_public_key_is_read_from_kms_once_per_container(
    app: ModuleType, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.client import BaseClient

    calls: list[str] = []
    real = BaseClient._make_api_call

    def counting(self: Any, operation: str, params: dict[str, Any]) -> Any:
        calls.append(operation)
        return real(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counting)
    token = f"Bearer {_token(stack.keys)}"
    calls.clear()
    for _ in range(5):
        app.handler(_event(Authorization=token), LAMBDA_CONTEXT)
    assert calls.count("GetPublicKey") == 1
    assert "Sign" not in calls  # a verifier never signs


def test_a_token_of_a_verify_only_key_passes_during_a_rotation(
    app: ModuleType, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a second key, listed as verify-only while the first still signs
    second = stack.kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    monkeypatch.setenv("TOKEN_VERIFY_KEY_IDS", second)
    bootstrap.reset()
    # Then tokens of both keys are accepted, each picked by its kid
    for signer in (stack.keys, KmsTokenSigner(stack.kms, second)):
        response = app.handler(_event(Authorization=f"Bearer {_token(signer)}"), LAMBDA_CONTEXT)
        assert response["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    # And a key nobody listed is refused
    stranger = stack.kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        app.handler(
            _event(Authorization=f"Bearer {_token(KmsTokenSigner(stack.kms, stranger))}"), LAMBDA_CONTEXT
        )


def test_no_decision_leaks_a_token_into_the_log(
    app: ModuleType, stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    token = _token(stack.keys)
    with caplog.at_level(logging.DEBUG):
        app.handler(_event(Authorization=f"Bearer {token}", X_Device_Id="other"), LAMBDA_CONTEXT)
        with pytest.raises(Exception, match=r"^Unauthorized$"):
            app.handler(_event(Authorization=f"Bearer {token}x"), LAMBDA_CONTEXT)
    # Every attribute of every record, as a JSON formatter would write it
    logged = json.dumps([record.__dict__ for record in caplog.records], default=str)
    assert "invalid_token" in logged
    assert token not in logged
    assert token.split(".")[2] not in logged


def test_a_token_of_a_disabled_user_or_a_signed_out_session_is_token_revoked(
    app: ModuleType, stack: Stack
) -> None:
    from vaultpay.auth.tokens import issue_access_token

    def token(session_id: str) -> str:
        issued, _ = issue_access_token(
            stack.keys,
            user_id=USER,
            role="customer",
            device_id=DEVICE,
            issuer=ISSUER,
            audience=AUDIENCE,
            now=time.time(),
            session_id=session_id,
        )
        return issued

    table = stack.auth_table
    for family, revoked in (("fam_live", False), ("fam_out", True)):
        stack.dynamodb.put_item(
            TableName=table,
            Item={"pk": {"S": f"FAMILY#{family}"}, "sk": {"S": "FAMILY"}, "revoked": {"BOOL": revoked}},
        )
    live = app.handler(_event(Authorization=f"Bearer {token('fam_live')}"), LAMBDA_CONTEXT)
    assert live["context"]["auth_error"] == ""
    out = app.handler(_event(Authorization=f"Bearer {token('fam_out')}"), LAMBDA_CONTEXT)
    assert out["context"]["auth_error"] == "token_revoked"
    # A disabled user's live session ends too (a new container: nothing cached)
    stack.dynamodb.update_item(
        TableName=table,
        Key={"pk": {"S": f"USER#{USER}"}, "sk": {"S": "PROFILE"}},
        UpdateExpression="SET #s = :d",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":d": {"S": "DISABLED"}},
    )
    bootstrap.reset()
    disabled = app.handler(_event(Authorization=f"Bearer {token('fam_live')}"), LAMBDA_CONTEXT)
    assert disabled["context"]["auth_error"] == "token_revoked"

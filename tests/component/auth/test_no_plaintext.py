"""After a whole identity session no item holds a secret or PII in plaintext, and PII stays row-bound."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pyotp
import pytest

pytestmark = pytest.mark.component

EMAIL_TYPED = "  Asha.Rao@Example.COM "
EMAIL = "asha.rao@example.com"
PASSWORD = "correct horse battery staple"
WRONG_PASSWORD = "Tr0ub4dor&3 is wrong"
PHONE = "+919876543210"
FULL_NAME = "Asha Lakshmi Rao"


def _call(
    function: Callable[[str], ModuleType],
    sample_event: Callable[[str], dict[str, Any]],
    context: Any,
    name: str,
    body: dict[str, Any],
) -> dict[str, Any]:
    event = sample_event(name)
    event["body"] = json.dumps(body)
    response = function(name).handler(event, context)
    return {
        "status": response["statusCode"],
        "body": json.loads(response["body"]) if response.get("body") else None,
    }


def test_a_full_session_leaves_no_plaintext_secret_or_pii_in_any_item(
    cloud: Any,
    function: Callable[[str], ModuleType],
    sample_event: Callable[[str], dict[str, Any]],
    lambda_context: Any,
) -> None:
    def call(name: str, body: dict[str, Any]) -> dict[str, Any]:
        return _call(function, sample_event, lambda_context, name, body)

    # Given a customer who registers, fails a login, signs in with MFA, refreshes, replays, and logs out
    registered = call(
        "register", {"email": EMAIL_TYPED, "password": PASSWORD, "full_name": FULL_NAME, "phone": PHONE}
    )
    assert registered["status"] == 201
    secret = registered["body"]["mfa"]["secret"]
    assert call("login", {"email": EMAIL, "password": WRONG_PASSWORD})["status"] == 401
    assert call("login", {"email": "stranger@example.com", "password": WRONG_PASSWORD})["status"] == 401
    started = call("login", {"email": EMAIL, "password": PASSWORD})["body"]
    code = pyotp.TOTP(secret).now()
    tokens = call("mfa_verify", {"challenge_id": started["challenge_id"], "code": code})["body"]
    refreshed = call("refresh", {"refresh_token": tokens["refresh_token"]})["body"]
    assert call("refresh", {"refresh_token": tokens["refresh_token"]})["status"] == 401
    assert call("logout", {"refresh_token": refreshed["refresh_token"]})["status"] == 204

    # When every item of every table is read
    dump = ""
    for table in cloud.dynamodb.list_tables()["TableNames"]:
        for page in cloud.dynamodb.get_paginator("scan").paginate(TableName=table):
            dump += json.dumps(page["Items"])
    assert "OUTBOX#" in dump and "PROFILE" in dump and "REFRESH#" in dump  # the scan saw the session

    # Then none of these appears anywhere, in any form a careless writer might have used
    forbidden = {
        "email": EMAIL,
        "email as typed": EMAIL_TYPED.strip(),
        "stranger's email": "stranger@example.com",
        "email local part": "asha.rao",
        "phone": PHONE,
        "phone digits": PHONE[1:],
        "national number": PHONE[3:],
        "full name": FULL_NAME,
        "password": PASSWORD,
        "wrong password": WRONG_PASSWORD,
        "TOTP secret": secret,
        "TOTP code": code,
        "access token": tokens["access_token"],
        "refresh token": tokens["refresh_token"],
        "rotated refresh token": refreshed["refresh_token"],
        "second access token": refreshed["access_token"],
    }
    leaks = [what for what, value in forbidden.items() if value in dump]
    assert leaks == []


def test_encrypted_pii_moved_to_another_users_row_does_not_decrypt(
    cloud: Any,
    function: Callable[[str], ModuleType],
    sample_event: Callable[[str], dict[str, Any]],
    lambda_context: Any,
) -> None:
    from vaultpay.bootstrap.auth import auth_service
    from vaultpay.shared.fieldcrypt import DecryptionFailed

    def register(email: str) -> str:
        body = {"email": email, "password": PASSWORD, "full_name": FULL_NAME, "phone": PHONE}
        return str(_call(function, sample_event, lambda_context, "register", body)["body"]["user_id"])

    # Given two users, and someone with table access copying the first one's phone ciphertext to the second
    first, second = register("first@example.com"), register("second@example.com")
    table = "vaultpay-test-auth"
    item = cloud.dynamodb.get_item(
        TableName=table, Key={"pk": {"S": f"USER#{first}"}, "sk": {"S": "PROFILE"}}
    )["Item"]
    cloud.dynamodb.update_item(
        TableName=table,
        Key={"pk": {"S": f"USER#{second}"}, "sk": {"S": "PROFILE"}},
        UpdateExpression="SET phone_enc = :p",
        ExpressionAttributeValues={":p": item["phone_enc"]},
    )
    # When the second user's profile is read, the copied field fails to authenticate
    with pytest.raises(DecryptionFailed):
        auth_service().profile(second)
    # And the first user's is intact
    assert auth_service().profile(first).phone_masked == "+91******3210"


def test_a_totp_secret_is_sealed_under_a_key_context_only_the_mfa_function_may_decrypt(
    cloud: Any,
    function: Callable[[str], ModuleType],
    sample_event: Callable[[str], dict[str, Any]],
    lambda_context: Any,
) -> None:
    import base64

    from vaultpay.shared.fieldcrypt import DEFAULT_KEY_CONTEXT, TOTP_KEY_CONTEXT

    # Given a registered customer
    body = {"email": "totp@example.com", "password": PASSWORD, "full_name": FULL_NAME, "phone": PHONE}
    user_id = _call(function, sample_event, lambda_context, "register", body)["body"]["user_id"]
    item = cloud.dynamodb.get_item(
        TableName="vaultpay-test-auth", Key={"pk": {"S": f"USER#{user_id}"}, "sk": {"S": "PROFILE"}}
    )["Item"]

    def data_key(blob: str) -> bytes:
        encrypted = blob.split(".")[2]
        return base64.urlsafe_b64decode(encrypted + "=" * (-len(encrypted) % 4))

    # Then the TOTP secret's data key opens only under the TOTP context, which IAM grants to MFA alone
    # (template.yaml; test_template_stack checks that no other role may use it) ...
    totp_key = data_key(item["totp_secret_enc"]["S"])
    kms = cloud.kms
    assert kms.decrypt(CiphertextBlob=totp_key, EncryptionContext=dict(TOTP_KEY_CONTEXT))["Plaintext"]
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=totp_key, EncryptionContext=dict(DEFAULT_KEY_CONTEXT))
    # ... while the personal data stays under the PII context the profile function may use
    phone_key = data_key(item["phone_enc"]["S"])
    assert kms.decrypt(CiphertextBlob=phone_key, EncryptionContext=dict(DEFAULT_KEY_CONTEXT))["Plaintext"]


def test_a_totp_secret_sealed_before_it_had_its_own_context_still_signs_in(
    cloud: Any,
    function: Callable[[str], ModuleType],
    sample_event: Callable[[str], dict[str, Any]],
    lambda_context: Any,
) -> None:
    from vaultpay.bootstrap.auth import auth_service

    # Given a user whose TOTP secret was sealed under the PII context (as every secret was before)
    body = {"email": "legacy@example.com", "password": PASSWORD, "full_name": FULL_NAME, "phone": PHONE}
    registered = _call(function, sample_event, lambda_context, "register", body)["body"]
    user_id, secret = registered["user_id"], registered["mfa"]["secret"]
    service = auth_service()
    legacy = service._cipher.encrypt(secret, context={"field": "totp_secret", "user_id": user_id})
    cloud.dynamodb.update_item(
        TableName="vaultpay-test-auth",
        Key={"pk": {"S": f"USER#{user_id}"}, "sk": {"S": "PROFILE"}},
        UpdateExpression="SET totp_secret_enc = :t",
        ExpressionAttributeValues={":t": {"S": legacy}},
    )
    # When the user signs in with a code from that secret
    started = _call(
        function, sample_event, lambda_context, "login", {"email": body["email"], "password": PASSWORD}
    )["body"]
    answer = {"challenge_id": started["challenge_id"], "code": pyotp.TOTP(secret).now()}
    verified = _call(function, sample_event, lambda_context, "mfa_verify", answer)
    # Then the secret still opens
    assert verified["status"] == 200, verified["body"]

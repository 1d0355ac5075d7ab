"""Identity end to end through the API emulator: register, login, MFA, me, refresh, logout; and attacks."""

from __future__ import annotations

import base64
import json
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import pyotp
import pytest

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery staple"


def _new_user(api: Callable[..., Any]) -> tuple[Any, dict[str, Any], dict[str, str]]:
    client = api()
    body = {
        "email": f"  Asha.{uuid.uuid4().hex[:10]}@Example.COM ",
        "password": PASSWORD,
        "full_name": "Asha Rao",
        "phone": "+919876543210",
    }
    reply = client.post("/v1/auth/register", body, token=None)
    assert reply.status == 201, reply.body
    return client, reply.body, body


def _login(client: Any, email: str, secret: str, *, at: float | None = None) -> dict[str, Any]:
    started = client.post("/v1/auth/login", {"email": email, "password": PASSWORD}, token=None)
    assert started.status == 200, started.body
    code = pyotp.TOTP(secret).at(at or time.time())
    verified = client.post(
        "/v1/auth/mfa/verify", {"challenge_id": started.body["challenge_id"], "code": code}, token=None
    )
    assert verified.status == 200, verified.body
    client.token = verified.body["access_token"]
    return dict(verified.body)


def _problem(reply: Any, status: int, code: str | None = None) -> None:
    assert reply.status == status, (reply.status, reply.body)
    assert reply.header(
        "Content-Type",
    ).startswith("application/problem+json"), reply.headers
    if code is not None:
        assert reply.body["code"] == code, reply.body


def test_the_whole_identity_path_works_over_http(api: Callable[..., Any]) -> None:
    client, registered, sent = _new_user(api)
    email = sent["email"].strip().lower()
    assert registered["email"] == email
    assert registered["mfa"]["type"] == "totp"
    assert registered["mfa"]["otpauth_uri"].startswith("otpauth://totp/")

    tokens = _login(client, email, registered["mfa"]["secret"])
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 900
    assert tokens["refresh_expires_in"] == 604800

    me = client.get("/v1/me")
    assert me.status == 200, me.body
    assert me.body["user_id"] == registered["user_id"]
    assert me.body["email"] == email
    assert me.body["role"] == "customer"
    assert me.body["phone_masked"].endswith("3210")
    assert "9876543210" not in me.body["phone_masked"]

    devices = client.get("/v1/auth/devices")
    assert devices.status == 200
    assert [d["device_id"] for d in devices.body["items"]] == [client.device_id]

    refreshed = client.post("/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}, token=None)
    assert refreshed.status == 200, refreshed.body
    assert refreshed.body["refresh_token"] != tokens["refresh_token"]
    client.token = refreshed.body["access_token"]
    assert client.get("/v1/me").status == 200

    logout = client.post("/v1/auth/logout", {"refresh_token": refreshed.body["refresh_token"]}, token=None)
    assert logout.status == 204
    after = client.post("/v1/auth/refresh", {"refresh_token": refreshed.body["refresh_token"]}, token=None)
    _problem(after, 401)


def test_jwks_serves_the_signing_key_that_verifies_access_tokens(api: Callable[..., Any]) -> None:
    client, registered, sent = _new_user(api)
    tokens = _login(client, sent["email"].strip().lower(), registered["mfa"]["secret"])
    jwks = client.get("/.well-known/jwks.json", token=None, device=None)
    assert jwks.status == 200
    header = json.loads(base64.urlsafe_b64decode(tokens["access_token"].split(".")[0] + "=="))
    assert header["alg"] == "ES256"
    assert header["kid"] in {k["kid"] for k in jwks.body["keys"]}
    assert all("d" not in k for k in jwks.body["keys"])  # public halves only


def test_registering_with_a_role_is_refused(api: Callable[..., Any]) -> None:
    body = {
        "email": f"mallory.{uuid.uuid4().hex[:8]}@example.com",
        "password": PASSWORD,
        "full_name": "Mallory",
        "phone": "+919876543210",
        "role": "admin",
    }
    _problem(api().post("/v1/auth/register", body, token=None), 422)


def test_an_email_can_register_only_once(api: Callable[..., Any]) -> None:
    _, _, sent = _new_user(api)
    again = dict(sent, email=sent["email"].strip().upper())
    _problem(api().post("/v1/auth/register", again, token=None), 409, "email_taken")


def test_a_token_used_from_another_device_is_refused(api: Callable[..., Any]) -> None:
    client, registered, sent = _new_user(api)
    _login(client, sent["email"].strip().lower(), registered["mfa"]["secret"])
    _problem(client.get("/v1/me", device="someone-elses-phone"), 401, "device_mismatch")
    _problem(client.get("/v1/me", device=None), 400, "device_id_required")


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4Iiwicm9sZSI6ImFkbWluIn0.",
        "",
    ],
)
def test_forged_or_missing_tokens_are_401(api: Callable[..., Any], token: str) -> None:
    _problem(api().get("/v1/me", token=token or None), 401)


def test_a_tampered_token_is_401(api: Callable[..., Any]) -> None:
    client, registered, sent = _new_user(api)
    tokens = _login(client, sent["email"].strip().lower(), registered["mfa"]["secret"])
    head, payload, signature = tokens["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    _problem(client.get("/v1/me", token=f"{head}.{forged}.{signature}"), 401)


def test_a_customer_cannot_reach_admin_routes(api: Callable[..., Any]) -> None:
    client, registered, sent = _new_user(api)
    _login(client, sent["email"].strip().lower(), registered["mfa"]["secret"])
    _problem(client.get("/v1/admin/audit"), 403)


def test_reusing_a_retired_refresh_token_revokes_the_whole_family(api: Callable[..., Any]) -> None:
    client, registered, sent = _new_user(api)
    first = _login(client, sent["email"].strip().lower(), registered["mfa"]["secret"])
    second = client.post("/v1/auth/refresh", {"refresh_token": first["refresh_token"]}, token=None)
    assert second.status == 200

    reuse = client.post("/v1/auth/refresh", {"refresh_token": first["refresh_token"]}, token=None)
    _problem(reuse, 401, "refresh_token_reused")
    # The thief's use also killed the legitimate holder's newer token.
    _problem(
        client.post("/v1/auth/refresh", {"refresh_token": second.body["refresh_token"]}, token=None), 401
    )


def test_a_totp_code_is_accepted_only_once(api: Callable[..., Any]) -> None:
    client, registered, sent = _new_user(api)
    email = sent["email"].strip().lower()
    now = time.time()
    if now % 30 > 25:  # keep both logins inside one 30-second step
        time.sleep(30 - now % 30 + 0.5)
    _login(client, email, registered["mfa"]["secret"])
    started = client.post("/v1/auth/login", {"email": email, "password": PASSWORD}, token=None)
    code = pyotp.TOTP(registered["mfa"]["secret"]).now()
    replay = client.post(
        "/v1/auth/mfa/verify", {"challenge_id": started.body["challenge_id"], "code": code}, token=None
    )
    _problem(replay, 401, "invalid_code")


def test_a_challenge_is_bound_to_the_device_that_opened_it(api: Callable[..., Any]) -> None:
    client, registered, sent = _new_user(api)
    started = client.post(
        "/v1/auth/login", {"email": sent["email"].strip().lower(), "password": PASSWORD}, token=None
    )
    code = pyotp.TOTP(registered["mfa"]["secret"]).now()
    stolen = client.post(
        "/v1/auth/mfa/verify",
        {"challenge_id": started.body["challenge_id"], "code": code},
        token=None,
        device="attacker-device",
    )
    _problem(stolen, 401)


def test_repeated_wrong_passwords_are_rate_limited(api: Callable[..., Any]) -> None:
    _, _, sent = _new_user(api)
    email = sent["email"].strip().lower()
    statuses = []
    for _ in range(8):
        reply = api().post("/v1/auth/login", {"email": email, "password": "wrong password!!"}, token=None)
        statuses.append(reply.status)
        if reply.status == 429:
            assert int(reply.header("Retry-After") or "0") >= 1
            break
    assert statuses[0] == 401
    assert statuses[-1] == 429


def test_unknown_email_and_wrong_password_look_the_same(api: Callable[..., Any]) -> None:
    _, _, sent = _new_user(api)
    email = sent["email"].strip().lower()
    unknown, wrong = [], []
    for _ in range(3):
        a = api().post("/v1/auth/login", {"email": f"x{uuid.uuid4().hex}@example.com", "password": PASSWORD})
        b = api().post("/v1/auth/login", {"email": email, "password": "wrong password " + uuid.uuid4().hex})
        assert (a.status, a.body["code"]) == (b.status, b.body["code"]) == (401, "invalid_credentials")
        unknown.append(a.elapsed_ms)
        wrong.append(b.elapsed_ms)
    ratio = statistics.median(unknown) / statistics.median(wrong)
    assert 0.5 < ratio < 2.0, (unknown, wrong)


def test_no_table_holds_a_plaintext_secret_or_pii(local_cloud: Any, api: Callable[..., Any]) -> None:
    client, registered, sent = _new_user(api)
    tokens = _login(client, sent["email"].strip().lower(), registered["mfa"]["secret"])
    refreshed = client.post("/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}, token=None)
    secrets = {
        "email": sent["email"].strip().lower(),
        "phone": sent["phone"],
        "phone digits": sent["phone"][1:],
        "password": PASSWORD,
        "totp secret": registered["mfa"]["secret"],
        "refresh token": tokens["refresh_token"],
        "new refresh token": refreshed.body["refresh_token"],
        "access token": tokens["access_token"],
    }
    dynamodb = local_cloud.client("dynamodb")
    for table in dynamodb.list_tables()["TableNames"]:
        for page in dynamodb.get_paginator("scan").paginate(TableName=table):
            dump = json.dumps(page["Items"])
            for what, value in secrets.items():
                assert value not in dump, f"{what} found in plaintext in {table}"

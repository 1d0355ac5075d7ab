"""Helpers shared by the HTTP tests: signed-in customers and admins, accounts, deposits, problems."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pyotp

PASSWORD = "correct horse battery staple"
ADMIN_PASSWORD = "the treasurer's long password"
SAVINGS = {"type": "SAVINGS", "currency": "INR"}


def assert_problem(reply: Any, status: int, code: str | None = None) -> None:
    """The reply is an docs/api.md problem document with this status (and code)."""
    assert reply.status == status, (reply.status, reply.body)
    assert (reply.header("Content-Type") or "").startswith("application/problem+json"), reply.headers
    if code is not None:
        assert reply.body["code"] == code, reply.body


def idempotency_key() -> dict[str, str]:
    return {"Idempotency-Key": f"e2e-{uuid.uuid4()}"}


def signed_in_customer(api: Callable[..., Any], device_id: str = "device-e2e-1") -> Any:
    """A newly registered customer, signed in: its client carries the access token."""
    client, _ = signed_in_customer_with_tokens(api, device_id)
    return client


def signed_in_customer_with_tokens(
    api: Callable[..., Any], device_id: str = "device-e2e-1"
) -> tuple[Any, Any]:
    """`signed_in_customer`, and the token pair its sign-in answered (the refresh token with it)."""
    client = api(device_id=device_id)
    email = f"saver.{uuid.uuid4().hex[:10]}@example.com"
    registered = client.post(
        "/v1/auth/register",
        {"email": email, "password": PASSWORD, "full_name": "Asha Rao", "phone": "+919876543210"},
        token=None,
    )
    assert registered.status == 201, registered.body
    started = client.post("/v1/auth/login", {"email": email, "password": PASSWORD}, token=None)
    assert started.status == 200, started.body
    code = pyotp.TOTP(registered.body["mfa"]["secret"]).now()
    tokens = client.post(
        "/v1/auth/mfa/verify", {"challenge_id": started.body["challenge_id"], "code": code}, token=None
    )
    assert tokens.status == 200, tokens.body
    client.token = tokens.body["access_token"]
    return client, dict(tokens.body)


def refused_within(client: Any, seconds: float, *, poll_s: float = 0.25) -> Any:
    """GET /v1/me until it stops answering 200 (an ended session reaches the authorizer within its session
    check interval); the refusal."""
    deadline = time.monotonic() + seconds
    while True:
        reply = client.get("/v1/me")
        if reply.status != 200:
            return reply
        assert time.monotonic() < deadline, "the access token still works after its session ended"
        time.sleep(poll_s)


def create_admin(local_cloud: Any) -> tuple[str, str]:
    """An admin made the operator's way (CreateAdminFunction, as `vaultpay admin create-user` does)."""
    email = f"treasurer.{uuid.uuid4().hex[:8]}@vaultpay.dev"
    out = local_cloud.client("lambda").invoke(
        FunctionName=local_cloud.function_name("CreateAdminFunction"),
        Payload=json.dumps(
            {"email": email, "password": ADMIN_PASSWORD, "full_name": "Treasurer", "phone": "+919811111111"}
        ).encode(),
    )
    created = json.loads(out["Payload"].read())
    assert created.get("role") == "admin", created
    return email, created["mfa"]["secret"]


def signed_in_admin(api: Callable[..., Any], credentials: tuple[str, str]) -> Any:
    client = api(device_id="treasury-laptop")
    email, secret = credentials
    started = client.post("/v1/auth/login", {"email": email, "password": ADMIN_PASSWORD}, token=None)
    assert started.status == 200, started.body
    tokens = client.post(
        "/v1/auth/mfa/verify",
        {"challenge_id": started.body["challenge_id"], "code": pyotp.TOTP(secret).now()},
        token=None,
    )
    assert tokens.status == 200, tokens.body
    client.token = tokens.body["access_token"]
    return client


def open_account(client: Any, account_type: str = "SAVINGS") -> dict[str, Any]:
    reply = client.post("/v1/accounts", {"type": account_type, "currency": "INR"}, headers=idempotency_key())
    assert reply.status == 201, reply.body
    return dict(reply.body)


def deposit(admin: Any, account_id: str, amount: Any, **overrides: Any) -> Any:
    body = {"account_id": account_id, "amount": amount, "currency": "INR", "reference": "NEFT e2e"}
    body.update(overrides)
    return admin.post("/v1/admin/deposits", body, headers=idempotency_key())


def waiting_review_alert(admin: Any, transfer_id: str, timeout_s: float = 30) -> dict[str, Any]:
    """The transfer's fraud alert once its review is WAITING (its task token is stored after IN_REVIEW)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        alerts = admin.get("/v1/admin/fraud/alerts?decision=REVIEW&limit=100")
        assert alerts.status == 200, alerts.body
        found = [a for a in alerts.body["items"] if a["transfer_id"] == transfer_id]
        if found and (found[0].get("review") or {}).get("status") == "WAITING":
            return dict(found[0])
        assert time.monotonic() < deadline, found
        time.sleep(0.1)

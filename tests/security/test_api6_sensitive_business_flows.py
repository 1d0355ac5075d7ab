"""OWASP API6:2023 Unrestricted Access to Sensitive Business Flows: scripts doing at scale what a person
does now and then (guessing codes, opening accounts in bulk, firing transfers).

Each flow has a budget kept in DynamoDB and counted before the work it guards (vaultpay.shared.ratelimit):
here, wrong MFA codes per user (10 / 15 min) and registrations per source address (20 / hour); past a
budget the answer is 429 with `Retry-After`. The other budgets (transfers created per user, logins per
account and per address) and the human checks on money (a second admin for large deposits, the fraud
engine's review of large transfers) are tested where SECURITY.md says.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pyotp
import pytest
from support.bank import PASSWORD, assert_problem

pytestmark = pytest.mark.e2e


def _clear_of_the_window_edge(period_s: int, needed_s: float) -> None:
    """Budgets are fixed windows aligned on multiples of their period: a test that needs `needed_s` seconds
    inside one window waits for the next when the current one ends sooner (rarely, and briefly)."""
    left = period_s - time.time() % period_s
    if left < needed_s:
        time.sleep(left + 0.2)


def _retry_after(reply: Any) -> int:
    assert_problem(reply, 429, "rate_limited")
    seconds = int(reply.header("Retry-After") or "0")
    assert seconds >= 1, reply.headers
    return seconds


def _wrong_code(secret: str) -> str:
    """A six-digit code that no step near now accepts."""
    totp = pyotp.TOTP(secret)
    valid = {totp.at(time.time() + drift) for drift in range(-90, 91, 30)}
    code = int(totp.now())
    while f"{code:06d}" in valid:
        code = (code + 137_911) % 1_000_000
    return f"{code:06d}"


def test_ten_wrong_codes_block_the_user_even_from_the_right_code(api: Callable[..., Any]) -> None:
    _clear_of_the_window_edge(900, 20)
    # Given a customer whose password the attacker has (phished), but not their authenticator
    client = api(device_id="code-guesser")
    email = f"guessed.{uuid.uuid4().hex[:10]}@example.com"
    registered = client.post(
        "/v1/auth/register",
        {"email": email, "password": PASSWORD, "full_name": "Asha Rao", "phone": "+919876543210"},
        token=None,
    )
    assert registered.status == 201, registered.body
    secret = registered.body["mfa"]["secret"]

    def challenge() -> str:
        started = client.post("/v1/auth/login", {"email": email, "password": PASSWORD}, token=None)
        assert started.status == 200, started.body
        return str(started.body["challenge_id"])

    # When they guess codes over two challenges (each dies after five wrong codes)
    for _ in range(2):
        challenge_id = challenge()
        for _ in range(5):
            guess = {"challenge_id": challenge_id, "code": _wrong_code(secret)}
            assert_problem(client.post("/v1/auth/mfa/verify", guess, token=None), 401)
    # Then the user's budget is spent: even the right code on a fresh challenge is not evaluated
    right = {"challenge_id": challenge(), "code": pyotp.TOTP(secret).now()}
    blocked = client.post("/v1/auth/mfa/verify", right, token=None)
    _retry_after(blocked)
    assert "access_token" not in blocked.body


def test_registrations_from_one_address_stop_at_twenty_an_hour_whatever_it_claims_to_forward(
    api: Callable[..., Any],
) -> None:
    _clear_of_the_window_edge(3600, 20)
    client = api()
    body = {
        "email": f"bulk.{uuid.uuid4().hex[:10]}@example.com",
        "password": PASSWORD,
        "full_name": "Bulk Signup",
        "phone": "+919876543210",
    }
    statuses = []
    for n in range(21):
        # The budget is API Gateway's source address: a forwarded-for header the client writes changes nothing
        spoofed = {"X-Forwarded-For": f"203.0.113.{n + 1}", "X-Real-Ip": f"198.51.100.{n + 1}"}
        reply = client.post("/v1/auth/register", body, token=None, headers=spoofed)
        statuses.append(reply.status)
    # The first registers, the next nineteen are refused as taken (but counted: the budget is spent before
    # the uniqueness check and the password hash), and the twenty-first is not even looked at
    assert statuses[:20] == [201] + [409] * 19, statuses
    _retry_after(reply)

"""OWASP API2:2023 Broken Authentication: stolen, swapped and home-made credentials, through the real API.

The verifier's own attacks (alg none, key confusion, tampered claims...) are unit tests in
test_token_attacks.py; these go through API Gateway, the authorizer and the auth functions end to end.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from support.bank import assert_problem, refused_within, signed_in_customer, signed_in_customer_with_tokens

pytestmark = pytest.mark.e2e

# The test cloud's authorizer re-reads a session every 2 s (tests/conftest.py: SessionCheckSeconds=2).
SESSION_CHECK_S = 2


def test_a_stolen_refresh_token_used_from_another_device_is_refused_and_ends_the_session(
    api: Callable[..., Any],
) -> None:
    # Given a signed-in customer whose refresh token leaks (a backup, a log, a compromised proxy)
    victim, tokens = signed_in_customer_with_tokens(api, device_id="victim-phone")
    thief = api(device_id="thief-laptop")
    # When the thief presents it from their own device
    stolen = thief.post("/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}, token=None)
    # Then it is refused, and the theft ends the session: the token is now useless to its owner as well
    assert_problem(stolen, 401, "device_mismatch")
    assert "access_token" not in stolen.body
    again = victim.post("/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}, token=None)
    assert_problem(again, 401)
    assert_problem(refused_within(victim, SESSION_CHECK_S + 5, poll_s=0.2), 401, "token_revoked")


def test_a_refresh_token_is_no_access_token_and_an_access_token_no_refresh_token(
    api: Callable[..., Any],
) -> None:
    client, tokens = signed_in_customer_with_tokens(api, device_id="mixed-up-phone")
    # The long-lived refresh token opens no protected route
    assert_problem(client.get("/v1/me", token=tokens["refresh_token"]), 401, "unauthorized")
    # and the access token refreshes nothing
    swapped = client.post("/v1/auth/refresh", {"refresh_token": tokens["access_token"]}, token=None)
    assert swapped.status in (401, 422), swapped.body
    assert "access_token" not in (swapped.body or {})
    # while the genuine pair still works (the control)
    assert client.get("/v1/me").status == 200


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _self_signed(kid: str, claims: dict[str, Any]) -> str:
    """A well-formed ES256 JWT under our key id, signed by a P-256 key the attacker made."""
    key = ec.generate_private_key(ec.SECP256R1())
    header = _b64(json.dumps({"alg": "ES256", "typ": "JWT", "kid": kid}).encode())
    payload = _b64(json.dumps(claims).encode())
    r, s = decode_dss_signature(key.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256())))
    return f"{header}.{payload}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def test_an_admin_token_the_attacker_signed_under_our_key_id_opens_nothing(api: Callable[..., Any]) -> None:
    # Given a real customer token, to copy its claims from, and our published key id
    client = signed_in_customer(api, device_id="forger-laptop")
    _, payload, _ = client.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    kid = client.get("/.well-known/jwks.json", token=None).body["keys"][0]["kid"]
    # When the attacker promotes themselves and signs with a key of their own under our kid
    forged = _self_signed(kid, {**claims, "role": "admin", "jti": uuid.uuid4().hex})
    # Then API Gateway's authorizer refuses it on customer and admin routes alike
    assert_problem(client.get("/v1/me", token=forged), 401, "unauthorized")
    assert_problem(client.get("/v1/admin/audit/verify", token=forged), 401, "unauthorized")
    assert client.get("/v1/me").status == 200  # the control: the genuine token still works

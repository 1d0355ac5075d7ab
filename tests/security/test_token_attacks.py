"""Forged, altered and misdirected access tokens are all refused with a 401 that does not echo them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from vaultpay.auth.tokens import (
    AccessClaims,
    SigningKeySet,
    generate_signing_key_document,
    issue_access_token,
    verify_access_token,
)
from vaultpay.shared.errors import Unauthorized

pytestmark = pytest.mark.unit

ISSUER = "https://auth.vaultpay.dev/test"
AUDIENCE = "vaultpay-api"
NOW = 1_800_000_000


@pytest.fixture(scope="module")
def keys() -> SigningKeySet:
    return SigningKeySet.from_secret(generate_signing_key_document())


@pytest.fixture(scope="module")
def genuine(keys: SigningKeySet) -> tuple[str, AccessClaims]:
    return issue_access_token(
        keys,
        user_id="usr_victim",
        role="customer",
        device_id="device-1",
        issuer=ISSUER,
        audience=AUDIENCE,
        now=NOW,
    )


def _verify(token: Any, keys: SigningKeySet, *, now: float = NOW) -> AccessClaims:
    return verify_access_token(
        token, public_keys_by_kid=keys.public_keys_by_kid(), issuer=ISSUER, audience=AUDIENCE, now=now
    )


def _refused(token: Any, keys: SigningKeySet, *, code: str = "invalid_token", now: float = NOW) -> None:
    with pytest.raises(Unauthorized) as caught:
        _verify(token, keys, now=now)
    assert caught.value.status == 401
    assert caught.value.code == code
    if isinstance(token, str) and token:
        # No part of the presented token may come back in the error a client (or a log) sees.
        for part in token.split("."):
            if len(part) > 8:
                assert part not in caught.value.message
                assert part not in str(caught.value)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _segment(document: dict[str, Any]) -> str:
    return _b64(json.dumps(document, separators=(",", ":")).encode())


def _claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "usr_attacker",
        "role": "admin",
        "did": "device-1",
        "jti": "j" * 22,
        "iat": NOW,
        "exp": NOW + 900,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _es256(private_key: ec.EllipticCurvePrivateKey, header: dict[str, Any], payload: dict[str, Any]) -> str:
    """Signs like a correct ES256 implementation would, header and all, so only the key can be wrong."""
    signing_input = f"{_segment(header)}.{_segment(payload)}".encode()
    der = private_key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(der)
    return f"{signing_input.decode()}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _sign_with_ours(keys: SigningKeySet, header: dict[str, Any], payload: dict[str, Any]) -> str:
    return _es256(keys.active.private_key, header, payload)


def test_the_genuine_token_is_accepted(keys: SigningKeySet, genuine: tuple[str, AccessClaims]) -> None:
    # The control for every attack below: the same keys and clock accept the real thing.
    assert _verify(genuine[0], keys) == genuine[1]


def test_the_hand_built_signer_is_accepted_when_nothing_is_wrong(keys: SigningKeySet) -> None:
    # The control for the hand-built tokens: with our key, our kid and sound claims they pass, so each
    # refusal below is caused by the one thing that test changes.
    assert _verify(_sign_with_ours(keys, _header(keys), _claims()), keys).role == "admin"


def test_alg_none_is_refused(keys: SigningKeySet) -> None:
    for alg in ("none", "None", "NONE", "nOnE"):
        header = {"alg": alg, "typ": "JWT", "kid": keys.active_kid}
        _refused(f"{_segment(header)}.{_segment(_claims())}.", keys)


def test_hs256_signed_with_the_public_key_pem_is_refused(keys: SigningKeySet) -> None:
    # Given the classic key confusion: the attacker knows our public key (it is published) and signs
    # an HMAC with its PEM, hoping a verifier feeds "the key" to whatever algorithm the header names.
    public_pem = keys.active.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for alg, digest in (("HS256", hashlib.sha256), ("HS384", hashlib.sha384), ("HS512", hashlib.sha512)):
        header = {"alg": alg, "typ": "JWT", "kid": keys.active_kid}
        signing_input = f"{_segment(header)}.{_segment(_claims())}"
        mac = hmac.new(public_pem, signing_input.encode(), digest).digest()
        # When it is presented, Then it is refused
        _refused(f"{signing_input}.{_b64(mac)}", keys)


def test_a_payload_changed_to_admin_under_the_original_signature_is_refused(
    keys: SigningKeySet, genuine: tuple[str, AccessClaims]
) -> None:
    header, payload, signature = genuine[0].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    assert claims["role"] == "customer"
    claims["role"] = "admin"
    _refused(f"{header}.{_segment(claims)}.{signature}", keys)


def test_a_payload_changed_to_another_user_under_the_original_signature_is_refused(
    keys: SigningKeySet, genuine: tuple[str, AccessClaims]
) -> None:
    header, payload, signature = genuine[0].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "usr_someone_else"
    _refused(f"{header}.{_segment(claims)}.{signature}", keys)


def test_a_flipped_signature_bit_is_refused(keys: SigningKeySet, genuine: tuple[str, AccessClaims]) -> None:
    header, payload, signature = genuine[0].split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[10] ^= 0x01
    _refused(f"{header}.{payload}.{_b64(bytes(raw))}", keys)


def test_an_unknown_kid_is_refused_even_with_a_valid_signature(keys: SigningKeySet) -> None:
    # Signed by our own key, but naming a key id we do not publish.
    token = _sign_with_ours(keys, {"alg": "ES256", "typ": "JWT", "kid": "not-a-key-of-ours"}, _claims())
    _refused(token, keys)


def test_a_token_without_kid_is_refused_even_with_a_valid_signature(keys: SigningKeySet) -> None:
    token = _sign_with_ours(keys, {"alg": "ES256", "typ": "JWT"}, _claims())
    _refused(token, keys)


@pytest.mark.parametrize("kid", [123, None, ["k"], {"k": 1}, ""])
def test_a_kid_that_is_not_a_known_string_is_refused(keys: SigningKeySet, kid: Any) -> None:
    _refused(_sign_with_ours(keys, {"alg": "ES256", "typ": "JWT", "kid": kid}, _claims()), keys)


def test_an_expired_token_is_refused_as_expired(
    keys: SigningKeySet, genuine: tuple[str, AccessClaims]
) -> None:
    _refused(genuine[0], keys, code="token_expired", now=NOW + 900 + 31)
    _refused(genuine[0], keys, code="token_expired", now=NOW + 86_400)


def test_an_expired_forgery_is_invalid_not_expired(keys: SigningKeySet) -> None:
    # "Expired" would confirm that the signature held: a forgery must learn nothing.
    other = ec.generate_private_key(ec.SECP256R1())
    forged = _es256(other, {"alg": "ES256", "typ": "JWT", "kid": keys.active_kid}, _claims(exp=NOW - 3600))
    _refused(forged, keys, code="invalid_token")


def test_a_token_issued_in_the_future_is_refused(keys: SigningKeySet) -> None:
    token, _ = issue_access_token(
        keys, user_id="u", role="customer", device_id="d", issuer=ISSUER, audience=AUDIENCE, now=NOW + 120
    )
    _refused(token, keys)


def test_a_token_with_a_not_before_in_the_future_is_refused(keys: SigningKeySet) -> None:
    _refused(_sign_with_ours(keys, _header(keys), _claims(nbf=NOW + 600)), keys)


def test_a_token_for_another_audience_is_refused(keys: SigningKeySet) -> None:
    for aud in ("other-api", [AUDIENCE, "other-api"], [AUDIENCE], "", None):
        _refused(_sign_with_ours(keys, _header(keys), _claims(aud=aud)), keys)


def test_a_token_from_another_issuer_is_refused(keys: SigningKeySet) -> None:
    for iss in ("https://evil.example", ISSUER + "/", ISSUER.upper(), "", None, 1):
        _refused(_sign_with_ours(keys, _header(keys), _claims(iss=iss)), keys)


def test_a_token_signed_by_another_p256_key_under_our_kid_is_refused(keys: SigningKeySet) -> None:
    # Given an attacker's perfectly valid P-256 key, claiming to be ours by kid
    attacker = ec.generate_private_key(ec.SECP256R1())
    token = _es256(attacker, _header(keys), _claims())
    # Then it is refused: the kid only picks among our keys, it never brings its own
    _refused(token, keys)


def test_a_token_carrying_its_own_key_in_the_header_is_refused(keys: SigningKeySet) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(attacker.public_key()))
    token = _es256(
        attacker, {**_header(keys), "jwk": jwk, "jku": "https://evil.example/jwks.json"}, _claims()
    )
    _refused(token, keys)


@pytest.mark.parametrize("alg", ["ES384", "ES512", "RS256", "PS256", "EdDSA", "ES256K", "HS256", ""])
def test_any_algorithm_but_es256_is_refused(keys: SigningKeySet, alg: str) -> None:
    _refused(_sign_with_ours(keys, {**_header(keys), "alg": alg}, _claims()), keys)


def test_a_header_without_the_jwt_type_or_with_critical_extensions_is_refused(keys: SigningKeySet) -> None:
    _refused(_sign_with_ours(keys, {"alg": "ES256", "kid": keys.active_kid}, _claims()), keys)
    _refused(_sign_with_ours(keys, {**_header(keys), "typ": "at+jwt"}, _claims()), keys)
    _refused(_sign_with_ours(keys, {**_header(keys), "crit": ["exp"], "exp": 1}, _claims()), keys)
    _refused(_sign_with_ours(keys, {**_header(keys), "b64": False, "crit": ["b64"]}, _claims()), keys)


@pytest.mark.parametrize("missing", ["did", "sub", "role", "jti", "iat", "exp", "iss", "aud"])
def test_a_correctly_signed_token_missing_a_claim_is_refused(keys: SigningKeySet, missing: str) -> None:
    _refused(_sign_with_ours(keys, _header(keys), _claims(**{missing: None})), keys)


@pytest.mark.parametrize(
    "changes",
    [
        {"role": "superuser"},
        {"role": "Admin"},
        {"role": ["admin"]},
        {"did": 7},
        {"did": ""},
        {"sub": ""},
        {"sub": 42},
        {"jti": None, "extra": 1},
        {"exp": True},
        {"exp": "1800000900"},
        {"exp": 1_800_000_900.5},
        {"iat": False},
        {"iat": NOW + 900, "exp": NOW + 900},
    ],
)
def test_a_correctly_signed_token_with_an_ill_typed_claim_is_refused(
    keys: SigningKeySet, changes: dict[str, Any]
) -> None:
    _refused(_sign_with_ours(keys, _header(keys), _claims(**changes)), keys)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        ".",
        "..",
        "a.b.c",
        "not a token",
        "Bearer x.y.z",
        "eyJhbGciOiJFUzI1NiJ9",
        "eyJhbGciOiJFUzI1NiJ9.e30",
        "eyJhbGciOiJFUzI1NiJ9.e30.e30.e30",
        "e30.e30.",
        "W10.W10.",
        "bnVsbA.bnVsbA.",
        "\u00e9\u00e9.\u00e9\u00e9.\u00e9\u00e9",
        "x" * 10_000,
        _b64(b"[" * 1400 + b"]" * 1400) + ".e30.AA",  # nesting deep enough to exhaust a recursive parser
        "a." * 5000 + "a",
        None,
        12345,
        b"a.b.c",
    ],
)
def test_garbage_is_refused_as_invalid(keys: SigningKeySet, garbage: Any) -> None:
    _refused(garbage, keys)


def test_a_genuine_token_presented_with_whitespace_or_padding_is_refused(
    keys: SigningKeySet, genuine: tuple[str, AccessClaims]
) -> None:
    token = genuine[0]
    for variant in (f" {token}", f"{token}\n", token + "=", token.replace(".", ". ", 1)):
        _refused(variant, keys)


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=400)
    | st.builds(lambda a, b, c: f"{a}.{b}.{c}", *([st.text(alphabet="AQ-_=eyJ09", max_size=80)] * 3))
)
def test_property_arbitrary_text_is_always_a_401_never_a_crash(keys: SigningKeySet, text: str) -> None:
    _refused(text, keys)


def test_the_verifier_never_trusts_a_clock_it_was_not_given(keys: SigningKeySet) -> None:
    # A token valid at the given `now` but long expired by the wall clock is judged by `now` alone, and
    # the converse: the library's own wall-clock checks must be off, or tests and replays would disagree.
    token, _ = issue_access_token(
        keys, user_id="u", role="customer", device_id="d", issuer=ISSUER, audience=AUDIENCE, now=1_000_000_000
    )
    assert _verify(token, keys, now=1_000_000_100).user_id == "u"
    _refused(token, keys, code="token_expired", now=1_000_001_000)


def _header(keys: SigningKeySet) -> dict[str, Any]:
    return {"alg": "ES256", "typ": "JWT", "kid": keys.active_kid}

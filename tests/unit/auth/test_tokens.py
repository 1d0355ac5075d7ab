"""Access tokens (ES256 JWT): key documents, JWKS, issue and verify, rotation; opaque refresh tokens."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt as joserfc_jwt
from joserfc.jwk import ECKey

from vaultpay.auth.tokens import (
    AccessClaims,
    SigningKeySet,
    generate_signing_key_document,
    issue_access_token,
    jwk_thumbprint,
    new_refresh_token,
    public_keys_from_jwks,
    refresh_token_hash,
    refresh_token_lookup_key,
    verify_access_token,
)
from vaultpay.shared.errors import ConfigurationError, Unauthorized

pytestmark = pytest.mark.unit

ISSUER = "https://auth.vaultpay.dev/test"
AUDIENCE = "vaultpay-api"
NOW = 1_800_000_000


@pytest.fixture(scope="module")
def keys() -> SigningKeySet:
    return SigningKeySet.from_secret(generate_signing_key_document())


def _issue(keys: SigningKeySet, **overrides: Any) -> tuple[str, AccessClaims]:
    arguments: dict[str, Any] = {
        "user_id": "usr_1",
        "role": "customer",
        "device_id": "device-abc",
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "now": NOW,
    }
    arguments.update(overrides)
    return issue_access_token(keys, **arguments)


def _verify(token: str, keys: SigningKeySet, now: float = NOW) -> AccessClaims:
    return verify_access_token(
        token, public_keys_by_kid=keys.public_keys_by_kid(), issuer=ISSUER, audience=AUDIENCE, now=now
    )


def _jwk(key_set: SigningKeySet) -> Any:
    return key_set.jwks()["keys"][0]


def _pem(private_key: ec.EllipticCurvePrivateKey) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


# ---- key documents and JWKS --------------------------------------------------------------------------


def test_a_generated_document_holds_one_active_p256_key_named_by_its_rfc7638_thumbprint() -> None:
    document = json.loads(generate_signing_key_document())
    key_set = SigningKeySet.from_secret(json.dumps(document))
    assert [k["kid"] for k in document["keys"]] == [document["active_kid"]]
    assert document["keys"][0]["alg"] == "ES256"
    # The kid equals the thumbprint an independent JOSE library computes.
    assert ECKey.import_key(_jwk(key_set)).thumbprint() == document["active_kid"]
    assert jwk_thumbprint(key_set.active.public_key) == document["active_kid"]


def test_a_document_can_name_its_key_explicitly() -> None:
    assert json.loads(generate_signing_key_document(kid="2026-11"))["active_kid"] == "2026-11"


def test_the_jwks_lists_every_key_public_part_only(keys: SigningKeySet) -> None:
    jwks = keys.jwks()
    (jwk,) = jwks["keys"]
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"], jwk["kid"]) == (
        "EC",
        "P-256",
        "ES256",
        "sig",
        keys.active_kid,
    )
    assert "d" not in jwk
    assert "PRIVATE" not in json.dumps(jwks)


def test_jwks_keys_read_back_verify_tokens(keys: SigningKeySet) -> None:
    token, _ = _issue(keys)
    public = public_keys_from_jwks(json.loads(json.dumps(keys.jwks())))
    claims = verify_access_token(token, public_keys_by_kid=public, issuer=ISSUER, audience=AUDIENCE, now=NOW)
    assert claims.user_id == "usr_1"


@pytest.mark.parametrize(
    "bad_jwk",
    [
        {"kty": "RSA", "kid": "k", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "crv": "P-384", "kid": "k", "x": "A" * 64, "y": "A" * 64},
        {"kty": "EC", "crv": "P-256", "kid": "k", "alg": "HS256", "x": "A" * 43, "y": "A" * 43},
        {"kty": "EC", "crv": "P-256", "kid": "k", "x": "A" * 43, "y": "A" * 43},  # not on the curve
        {"kty": "EC", "crv": "P-256", "x": "A" * 43, "y": "A" * 43},
    ],
)
def test_a_jwks_entry_that_is_not_an_es256_p256_key_is_refused(bad_jwk: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        public_keys_from_jwks({"keys": [bad_jwk]})


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        "[]",
        '{"active_kid": "a", "keys": []}',
        '{"active_kid": "missing", "keys": [{"kid": "a", "alg": "ES256", "private_key_pem": "PEM"}]}',
    ],
)
def test_an_unusable_key_document_is_a_configuration_error(document: str) -> None:
    with pytest.raises(ConfigurationError):
        SigningKeySet.from_secret(document)


def test_key_document_errors_never_contain_the_private_key() -> None:
    # Given documents whose key is of the wrong algorithm, the wrong curve, or listed twice
    p384 = _pem(ec.generate_private_key(ec.SECP384R1()))
    p256 = _pem(ec.generate_private_key(ec.SECP256R1()))
    documents = [
        {"active_kid": "a", "keys": [{"kid": "a", "alg": "RS256", "private_key_pem": p256}]},
        {"active_kid": "a", "keys": [{"kid": "a", "alg": "ES256", "private_key_pem": p384}]},
        {"active_kid": "a", "keys": [{"kid": "a", "alg": "ES256", "private_key_pem": p256[:-40]}]},
        {"active_kid": "a", "keys": [{"kid": "a", "alg": "ES256", "private_key_pem": p256}] * 2},
    ]
    for document in documents:
        # When it is loaded, Then it fails with a message free of key material
        with pytest.raises(ConfigurationError) as caught:
            SigningKeySet.from_secret(json.dumps(document))
        assert "PRIVATE KEY" not in str(caught.value)
        assert p256[40:80] not in str(caught.value)
        assert caught.value.__cause__ is None


def test_a_signing_keys_repr_hides_the_private_key(keys: SigningKeySet) -> None:
    assert "private" not in repr(keys.active).lower()


# ---- issuing and verifying ---------------------------------------------------------------------------


def test_an_issued_token_verifies_and_carries_every_claim(keys: SigningKeySet) -> None:
    # Given a token issued for a customer on a device
    token, issued = _issue(keys)
    # When it is verified
    claims = _verify(token, keys)
    # Then the verified claims are the issued ones, with a 15-minute lifetime
    assert claims == issued
    assert claims.user_id == "usr_1"
    assert claims.role == "customer"
    assert claims.device_id == "device-abc"
    assert claims.expires_at - claims.issued_at == 900


def test_the_header_names_the_key_the_type_and_es256(keys: SigningKeySet) -> None:
    token, _ = _issue(keys)
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": keys.active_kid, "typ": "JWT"}
    payload = jwt.decode(token, options={"verify_signature": False})
    assert set(payload) == {"iss", "aud", "sub", "role", "did", "jti", "iat", "exp"}


def test_every_token_has_a_fresh_128_bit_jti(keys: SigningKeySet) -> None:
    ids = {_issue(keys)[1].token_id for _ in range(50)}
    assert len(ids) == 50
    assert all(len(token_id) == 22 for token_id in ids)  # 16 bytes, base64url without padding


def test_an_independent_jose_library_verifies_our_tokens(keys: SigningKeySet) -> None:
    token, _ = _issue(keys)
    public = ECKey.import_key(_jwk(keys))
    decoded = joserfc_jwt.decode(token, public, algorithms=["ES256"])
    assert decoded.claims["sub"] == "usr_1"


def test_an_admin_token_verifies_as_admin(keys: SigningKeySet) -> None:
    token, _ = _issue(keys, role="admin")
    assert _verify(token, keys).role == "admin"


def test_an_unknown_role_cannot_be_issued(keys: SigningKeySet) -> None:
    with pytest.raises(ValueError, match="role"):
        _issue(keys, role="superuser")


def test_a_token_is_still_accepted_within_the_leeway_after_expiry(keys: SigningKeySet) -> None:
    token, _ = _issue(keys)
    assert _verify(token, keys, now=NOW + 900 + 29)
    with pytest.raises(Unauthorized) as caught:
        _verify(token, keys, now=NOW + 900 + 30)
    assert caught.value.code == "token_expired"
    assert caught.value.status == 401


def test_a_token_issued_slightly_ahead_of_our_clock_is_accepted(keys: SigningKeySet) -> None:
    token, _ = _issue(keys, now=NOW + 20)
    assert _verify(token, keys, now=NOW)


def test_rotation_tokens_of_the_previous_key_still_verify_while_the_new_key_signs() -> None:
    # Given last month's key document, and a rotated one listing the new key (active) and the old one
    old = json.loads(generate_signing_key_document(kid="old"))
    new = json.loads(generate_signing_key_document(kid="new"))
    old_keys = SigningKeySet.from_secret(json.dumps(old))
    rotated = SigningKeySet.from_secret(json.dumps({"active_kid": "new", "keys": new["keys"] + old["keys"]}))
    old_token, _ = _issue(old_keys)
    # When a token is issued and both are verified against the rotated set
    new_token, _ = _issue(rotated)
    # Then the new one is signed by the new key, and both verify; the JWKS publishes both
    assert jwt.get_unverified_header(new_token)["kid"] == "new"
    assert _verify(old_token, rotated)
    assert _verify(new_token, rotated)
    assert {k["kid"] for k in rotated.jwks()["keys"]} == {"new", "old"}


# ---- refresh tokens ----------------------------------------------------------------------------------


def test_a_refresh_token_is_prefixed_opaque_and_256_bits() -> None:
    token = new_refresh_token()
    assert token.startswith("vprt_")
    assert len(token) == len("vprt_") + 43
    assert new_refresh_token() != token


def test_only_the_sha256_of_a_refresh_token_is_stored_and_it_is_deterministic() -> None:
    token = new_refresh_token()
    assert refresh_token_hash(token) == hashlib.sha256(token.encode()).hexdigest()
    assert refresh_token_lookup_key(token) == refresh_token_hash(token)
    assert token not in refresh_token_hash(token)


@pytest.mark.parametrize(
    "presented",
    ["", "vprt_", "vprt_short", "xxxx_" + "A" * 43, "vprt_" + "A" * 42 + "!", "vprt_" + "A" * 44, None],
)
def test_a_malformed_refresh_token_is_refused_before_any_lookup(presented: object) -> None:
    with pytest.raises(Unauthorized) as caught:
        refresh_token_lookup_key(presented)
    assert caught.value.code == "invalid_token"
    if presented:
        assert str(presented) not in caught.value.message


# ---- cold start --------------------------------------------------------------------------------------


def test_importing_the_security_modules_does_no_heavy_imports() -> None:
    # Given a fresh interpreter, When the modules are imported, Then pyjwt, pyotp and cryptography are not
    # (they load on first use: import time is Lambda cold-start time).
    code = (
        "import sys\n"
        "import vaultpay.auth.tokens, vaultpay.auth.totp, vaultpay.shared.passwords\n"
        "import vaultpay.shared.fieldcrypt, vaultpay.shared.ratelimit\n"
        "heavy = [m for m in ('jwt', 'pyotp', 'cryptography', 'boto3', 'botocore') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_the_session_id_travels_in_the_sid_claim_and_a_malformed_one_is_invalid() -> None:
    import time

    from vaultpay.auth.tokens import SigningKeySet, generate_signing_key_document, issue_access_token
    from vaultpay.auth.tokens import verify_access_token as verify

    keys = SigningKeySet.from_secret(generate_signing_key_document())
    now = time.time()
    args = {
        "user_id": "usr_1",
        "role": "customer",
        "device_id": "d",
        "issuer": "i",
        "audience": "a",
        "now": now,
    }
    token, _ = issue_access_token(keys, **args, session_id="fam_1")
    claims = verify(token, public_keys_by_kid=keys.public_keys_by_kid(), issuer="i", audience="a", now=now)
    assert claims.session_id == "fam_1"
    without, _ = issue_access_token(keys, **args)
    assert (
        verify(
            without, public_keys_by_kid=keys.public_keys_by_kid(), issuer="i", audience="a", now=now
        ).session_id
        is None
    )
    # A correctly signed token whose sid is not a non-empty string is not ours
    import jwt as pyjwt

    payload = pyjwt.decode(token, options={"verify_signature": False})
    header = {"kid": keys.active_kid, "typ": "JWT"}
    for bad in (5, "", ["fam_1"]):
        forged = pyjwt.encode(
            {**payload, "sid": bad}, keys.active.private_key, algorithm="ES256", headers=header
        )
        with pytest.raises(Unauthorized):
            verify(forged, public_keys_by_kid=keys.public_keys_by_kid(), issuer="i", audience="a", now=now)

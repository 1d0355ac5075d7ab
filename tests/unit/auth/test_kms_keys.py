"""Access tokens signed by a KMS key: JWS assembly, kid, DER to raw signatures, public keys read once."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from vaultpay.auth.adapters import KmsPublicKeys, KmsTokenSigner, kid_of, parse_key_ids
from vaultpay.auth.tokens import issue_access_token, verify_access_token
from vaultpay.shared.errors import ConfigurationError, TransientError, Unauthorized

pytestmark = pytest.mark.unit

ARN = "arn:aws:kms:ap-south-1:123456789012:key/6f9b1c2e-0000-4000-8000-00000000a1a1"
ISSUER, AUDIENCE = "https://auth.vaultpay.dev/test", "vaultpay-api"


class FakeKms:
    """KMS's Sign and GetPublicKey over keys held here, as KMS answers them (DER signature, SPKI DER)."""

    def __init__(self, *arns: str) -> None:
        self.keys = {arn: ec.generate_private_key(ec.SECP256R1()) for arn in arns}
        self.calls: list[tuple[str, str]] = []
        self.fail: Exception | None = None

    def sign(self, *, KeyId: str, Message: bytes, MessageType: str, SigningAlgorithm: str) -> dict[str, Any]:
        self.calls.append(("Sign", KeyId))
        if self.fail:
            raise self.fail
        assert (MessageType, SigningAlgorithm) == ("RAW", "ECDSA_SHA_256")
        return {"Signature": self.keys[KeyId].sign(Message, ec.ECDSA(hashes.SHA256()))}

    def get_public_key(self, *, KeyId: str) -> dict[str, Any]:
        self.calls.append(("GetPublicKey", KeyId))
        if self.fail:
            raise self.fail
        der = (
            self.keys[KeyId]
            .public_key()
            .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        return {"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY", "PublicKey": der}


def _token(signer: KmsTokenSigner) -> str:
    token, _ = issue_access_token(
        signer,
        user_id="usr_1",
        role="customer",
        device_id="d-1",
        issuer=ISSUER,
        audience=AUDIENCE,
        now=time.time(),
    )
    return token


def test_a_token_signed_in_kms_verifies_with_the_public_key_and_names_the_key_id() -> None:
    kms = FakeKms(ARN)
    token = _token(KmsTokenSigner(kms, ARN))
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "kid": "6f9b1c2e-0000-4000-8000-00000000a1a1", "typ": "JWT"}
    keys = KmsPublicKeys(kms, [ARN]).public_keys_by_kid()
    claims = verify_access_token(
        token, public_keys_by_kid=keys, issuer=ISSUER, audience=AUDIENCE, now=time.time()
    )
    assert claims.user_id == "usr_1"
    # pyjwt agrees on the raw r||s encoding
    assert jwt.decode(token, keys[header["kid"]], algorithms=["ES256"], audience=AUDIENCE)["sub"] == "usr_1"


def test_a_verifier_reads_each_public_key_once_and_never_signs() -> None:
    kms = FakeKms(ARN)
    keys = KmsPublicKeys(kms, [ARN])
    for _ in range(5):
        keys.public_keys_by_kid()
    assert kms.calls == [("GetPublicKey", ARN)]
    jwks = keys.jwks()["keys"]
    assert [set(key) for key in jwks] == [{"kty", "crv", "x", "y", "kid", "alg", "use"}]  # no private "d"


def test_during_a_rotation_both_keys_verify_and_the_jwks_lists_both() -> None:
    new = ARN.replace("a1a1", "b2b2")
    kms = FakeKms(ARN, new)
    keys = KmsPublicKeys(kms, [new, *parse_key_ids(f" {ARN} , ")])
    now = time.time()
    for signer in (KmsTokenSigner(kms, ARN), KmsTokenSigner(kms, new)):
        verify_access_token(
            _token(signer),
            public_keys_by_kid=keys.public_keys_by_kid(),
            issuer=ISSUER,
            audience=AUDIENCE,
            now=now,
        )
    assert {key["kid"] for key in keys.jwks()["keys"]} == {kid_of(ARN), kid_of(new)}


def test_a_token_of_an_unlisted_key_is_refused() -> None:
    other = ARN.replace("a1a1", "c3c3")
    kms = FakeKms(ARN, other)
    keys = KmsPublicKeys(kms, [ARN]).public_keys_by_kid()
    with pytest.raises(Unauthorized):
        verify_access_token(
            _token(KmsTokenSigner(kms, other)),
            public_keys_by_kid=keys,
            issuer=ISSUER,
            audience=AUDIENCE,
            now=time.time(),
        )


def test_kms_failures_are_configuration_or_transient_errors_never_unauthorized() -> None:
    kms = FakeKms(ARN)
    kms.fail = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "Sign")
    with pytest.raises(ConfigurationError, match="KMS refused Sign"):
        KmsTokenSigner(kms, ARN).sign(b"header.payload")
    kms.fail = EndpointConnectionError(endpoint_url="https://kms")
    with pytest.raises(TransientError):
        KmsPublicKeys(kms, [ARN]).public_keys_by_kid()


def test_a_key_that_is_not_a_p256_signing_key_is_refused() -> None:
    kms = FakeKms(ARN)
    answer = kms.get_public_key(KeyId=ARN)
    kms.get_public_key = lambda **_: {**answer, "KeyUsage": "ENCRYPT_DECRYPT"}  # type: ignore[method-assign]
    with pytest.raises(ConfigurationError, match="not an ECC_NIST_P256 signing key"):
        KmsPublicKeys(kms, [ARN]).public_keys_by_kid()


def test_key_ids_and_lists() -> None:
    assert kid_of(ARN) == "6f9b1c2e-0000-4000-8000-00000000a1a1"
    assert kid_of("6f9b1c2e") == "6f9b1c2e"
    assert parse_key_ids(None) == parse_key_ids("") == parse_key_ids(" , ") == ()
    with pytest.raises(ConfigurationError):
        KmsPublicKeys(FakeKms(), [])

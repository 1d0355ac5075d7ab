"""Access-token keys in KMS: the issuing functions sign through it, verifiers hold only the public keys.

The private key of an `ECC_NIST_P256` / `SIGN_VERIFY` KMS key never leaves KMS. MFA verify and refresh call
`kms:Sign` on the signing input (`MessageType=RAW`, `ECDSA_SHA_256`; KMS hashes it); the authorizer and the
JWKS function call only `kms:GetPublicKey`, once per key per container. So compromising a verifier yields no
way to mint a token. A token's `kid` is the KMS key id (the UUID of its ARN).

Rotation: a second key is listed as verify-only (TOKEN_VERIFY_KEY_IDS) while the first still signs, so that
every verifier and the JWKS know it; then it becomes the signing key (TOKEN_SIGNING_KEY_ID) with the old one
verify-only until the last token it signed has expired (15 minutes). See the README's operations section.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from vaultpay.shared.errors import ConfigurationError
from vaultpay.shared.kms_ecdsa import MAX_RAW_MESSAGE, key_id_of, kms_public_key, kms_sign

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey


def kid_of(key_id: str) -> str:
    """The token `kid` of a KMS key named by ARN or id: its key id."""
    return key_id_of(key_id)


def parse_key_ids(value: str | None) -> tuple[str, ...]:
    """A comma-separated list of KMS key ARNs or ids, blanks ignored."""
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


class KmsTokenSigner:
    """A TokenSigner (vaultpay.auth.tokens) over `kms:Sign` with one key."""

    def __init__(self, kms: Callable[[], Any] | Any, key_id: str) -> None:
        self._kms = kms
        self._key_id = key_id
        self._kid = kid_of(key_id)

    def signing_kid(self) -> str:
        return self._kid

    def sign(self, signing_input: bytes) -> bytes:
        from vaultpay.auth.tokens import raw_signature

        if len(signing_input) > MAX_RAW_MESSAGE:
            raise ValueError("a token's signing input is longer than KMS signs raw")
        client = self._kms() if callable(self._kms) else self._kms
        return raw_signature(kms_sign(client, self._key_id, signing_input))


class KmsPublicKeys:
    """The verification keys, kid → P-256 public key, read with `kms:GetPublicKey` once per container.

    A key's public half never changes and the list of keys comes from the function's configuration (a
    rotation deploys new configuration, so new containers): nothing to expire.
    """

    def __init__(self, kms: Callable[[], Any] | Any, key_ids: Sequence[str]) -> None:
        if not key_ids:
            raise ConfigurationError("no token verification key is configured")
        self._kms = kms
        self._key_ids = tuple(key_ids)
        self._lock = threading.Lock()
        self._keys: Mapping[str, EllipticCurvePublicKey] | None = None

    def public_keys_by_kid(self) -> Mapping[str, EllipticCurvePublicKey]:
        with self._lock:
            if self._keys is None:
                self._keys = {kid_of(key_id): self._public_key(key_id) for key_id in self._key_ids}
            return self._keys

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        from vaultpay.auth.tokens import jwks_document

        return jwks_document(self.public_keys_by_kid())

    def _public_key(self, key_id: str) -> EllipticCurvePublicKey:
        client = self._kms() if callable(self._kms) else self._kms
        return kms_public_key(client, key_id)

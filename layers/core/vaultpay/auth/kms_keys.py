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

from vaultpay.shared.errors import ConfigurationError, TransientError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

SIGNING_ALGORITHM = "ECDSA_SHA_256"
_MAX_RAW_MESSAGE = 4096  # KMS's limit for MessageType=RAW; a JWS signing input of ours is ~300 bytes
_CONFIGURATION_CODES = frozenset(
    {
        "NotFoundException",
        "AccessDeniedException",
        "DisabledException",
        "InvalidKeyUsageException",
        "KMSInvalidStateException",
        "ValidationException",
        "UnrecognizedClientException",
    }
)


def kid_of(key_id: str) -> str:
    """The token `kid` of a KMS key named by ARN or id: its key id."""
    key_id = key_id.strip()
    if not key_id:
        raise ConfigurationError("a token key id is empty")
    return key_id.rsplit("/", 1)[-1] if key_id.startswith("arn:") else key_id


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

        if len(signing_input) > _MAX_RAW_MESSAGE:
            raise ValueError("a token's signing input is longer than KMS signs raw")
        client = self._kms() if callable(self._kms) else self._kms
        response = _call(
            "Sign",
            self._key_id,
            lambda: client.sign(
                KeyId=self._key_id,
                Message=signing_input,
                MessageType="RAW",
                SigningAlgorithm=SIGNING_ALGORITHM,
            ),
        )
        return raw_signature(response["Signature"])


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
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        client = self._kms() if callable(self._kms) else self._kms
        response = _call("GetPublicKey", key_id, lambda: client.get_public_key(KeyId=key_id))
        # AWS answers KeySpec and the older CustomerMasterKeySpec alike (moto only the latter).
        spec = response.get("KeySpec") or response.get("CustomerMasterKeySpec")
        if spec != "ECC_NIST_P256" or response.get("KeyUsage") != "SIGN_VERIFY":
            raise ConfigurationError(f"KMS key {kid_of(key_id)} is not an ECC_NIST_P256 signing key")
        key = load_der_public_key(response["PublicKey"])
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ConfigurationError(f"KMS key {kid_of(key_id)} is not a P-256 key")
        return key


def _call(operation: str, key_id: str, call: Callable[[], Any]) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call()
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _CONFIGURATION_CODES:
            raise ConfigurationError(f"KMS refused {operation} on key {kid_of(key_id)}: {code}") from exc
        raise TransientError(f"KMS {operation} failed: {code}") from exc
    except BotoCoreError as exc:
        raise TransientError(f"KMS is unreachable for {operation}") from exc

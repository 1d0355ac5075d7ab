"""ECDSA P-256 with KMS asymmetric keys: `kms:Sign` on raw messages, public keys read once per container.

Shared by the access tokens (vaultpay.auth.adapters) and the audit checkpoints (vaultpay.audit.checkpoints).
`MessageType=RAW` with `ECDSA_SHA_256`: KMS hashes the message itself (moto's DIGEST mode hashes a digest
again, so RAW is also what behaves the same locally). The private key never leaves KMS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vaultpay.shared.errors import ConfigurationError, TransientError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

SIGNING_ALGORITHM = "ECDSA_SHA_256"
MAX_RAW_MESSAGE = 4096  # KMS's limit for MessageType=RAW
CONFIGURATION_CODES = frozenset(
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


def key_id_of(key_id: str) -> str:
    """The key id (UUID) of a KMS key named by ARN or id."""
    key_id = key_id.strip()
    if not key_id:
        raise ConfigurationError("a KMS key id is empty")
    return key_id.rsplit("/", 1)[-1] if key_id.startswith("arn:") else key_id


def kms_sign(client: Any, key_id: str, message: bytes) -> bytes:
    """The DER-encoded ECDSA signature of `message` by KMS key `key_id`."""
    if len(message) > MAX_RAW_MESSAGE:
        raise ValueError("the message is longer than KMS signs raw")
    response = kms_call(
        "Sign",
        key_id,
        lambda: client.sign(
            KeyId=key_id, Message=message, MessageType="RAW", SigningAlgorithm=SIGNING_ALGORITHM
        ),
    )
    return bytes(response["Signature"])


def kms_public_key(client: Any, key_id: str) -> EllipticCurvePublicKey:
    """The P-256 public key of KMS key `key_id` (ConfigurationError for any other kind of key)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    response = kms_call("GetPublicKey", key_id, lambda: client.get_public_key(KeyId=key_id))
    # AWS answers KeySpec and the older CustomerMasterKeySpec alike (moto only the latter).
    spec = response.get("KeySpec") or response.get("CustomerMasterKeySpec")
    if spec != "ECC_NIST_P256" or response.get("KeyUsage") != "SIGN_VERIFY":
        raise ConfigurationError(f"KMS key {key_id_of(key_id)} is not an ECC_NIST_P256 signing key")
    key = load_der_public_key(response["PublicKey"])
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigurationError(f"KMS key {key_id_of(key_id)} is not a P-256 key")
    return key


def kms_call(operation: str, key_id: str, call: Callable[[], Any]) -> Any:
    """`call`, with KMS's refusals as ConfigurationError and its failures as TransientError."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call()
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in CONFIGURATION_CODES:
            raise ConfigurationError(f"KMS refused {operation} on key {key_id_of(key_id)}: {code}") from exc
        raise TransientError(f"KMS {operation} failed: {code}") from exc
    except BotoCoreError as exc:
        raise TransientError(f"KMS is unreachable for {operation}") from exc

"""Checking an ECDSA P-256 signature offline: pure cryptography, no KMS call (KMS signs and hands out the
public keys: vaultpay.shared.kms_ecdsa)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey


def verify_ecdsa(public_key: EllipticCurvePublicKey, signature: bytes, message: bytes) -> bool:
    """Whether `signature` (DER) is the key's ECDSA-SHA256 signature of `message`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True

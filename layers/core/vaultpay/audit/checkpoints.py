"""Signed checkpoints of the audit chain: tamper evidence that survives a writer of the audit table.

The chain alone proves only its own prefix: whoever can write the table can rewrite a record and re-hash
everything after it, or delete the newest records, and the chain still verifies. A checkpoint is the chain's
head `(seq, hash, time)` signed by a KMS asymmetric key that only the checkpoint function may use, and kept in
an S3 bucket under Object Lock in compliance mode (no one, the account's root included, can delete or
overwrite it before its retention ends). `verify` then checks every checkpoint's signature and that the chain
passes through each signed head and reaches at least the newest one.

Objects are `checkpoints/<seq:020d>.json`: listing them in key order is seq order, and a second checkpoint of
the same head is the same key (Object Lock refuses the overwrite: the first one stands).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from vaultpay.shared.dynamo import error_code
from vaultpay.shared.errors import ConfigurationError, TransientError
from vaultpay.shared.kms_ecdsa import key_id_of, kms_public_key, kms_sign, verify_ecdsa

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

FORMAT = "vaultpay-audit-checkpoint/1"
PREFIX = "checkpoints/"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEY = re.compile(r"checkpoints/(\d{20})\.json")
MAX_OBJECT_BYTES = 4096


def signed_message(seq: int, head_hash: str, at: str) -> bytes:
    """What is signed: the format, the seq, the hash and the time, one per line (no JSON ambiguity)."""
    return f"{FORMAT}\n{seq}\n{head_hash}\n{at}".encode("ascii")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One signed head. `key_id` names the KMS key that signed it; `signature` is DER, base64url."""

    seq: int
    hash: str
    at: str
    key_id: str
    signature: str

    @property
    def object_key(self) -> str:
        return f"{PREFIX}{self.seq:020d}.json"

    def message(self) -> bytes:
        return signed_message(self.seq, self.hash, self.at)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "seq": self.seq,
            "hash": self.hash,
            "at": self.at,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def parse(cls, key: str, body: bytes) -> Checkpoint:
        """ValueError when the object is not a checkpoint, or not the one its key names."""
        if len(body) > MAX_OBJECT_BYTES:
            raise ValueError("the object is too large to be a checkpoint")
        document = json.loads(body)
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError("not a checkpoint document")
        seq, head_hash, at = document.get("seq"), document.get("hash"), document.get("at")
        key_id, signature = document.get("key_id"), document.get("signature")
        good_hash = isinstance(head_hash, str) and _HEX64.fullmatch(head_hash) is not None
        if type(seq) is not int or seq < 1 or not good_hash:
            raise ValueError("a checkpoint needs a positive seq and a lower-case SHA-256 hash")
        if not all(isinstance(v, str) and 0 < len(v) <= 512 for v in (at, key_id, signature)):
            raise ValueError("a checkpoint needs its time, key id and signature")
        match = _KEY.fullmatch(key)
        if match is None or int(match.group(1)) != seq:
            raise ValueError(f"the object {key} does not hold the checkpoint of its seq")
        return cls(seq, str(head_hash), str(at), str(key_id), str(signature))


@dataclass(frozen=True, slots=True)
class CheckedCheckpoint:
    """A stored checkpoint and whether its signature verified under a key the verifier trusts."""

    checkpoint: Checkpoint | None
    object_key: str
    signature_ok: bool
    problem: str | None = None


class CheckpointSigner(Protocol):
    def key_id(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...


class CheckpointKeys(Protocol):
    def public_key(self, key_id: str) -> EllipticCurvePublicKey | None:
        """The public key of `key_id` when it is one of the trusted checkpoint keys, else None."""
        ...


class KmsCheckpointSigner:
    """Signs with the checkpoint key in KMS (`kms:Sign`: only the checkpoint function has it)."""

    def __init__(self, kms: Any, key_id: str) -> None:
        if not key_id:
            raise ConfigurationError("invalid settings: AUDIT_CHECKPOINT_KEY_ID is not set")
        self._kms = kms
        self._key_id = key_id

    def key_id(self) -> str:
        return key_id_of(self._key_id)

    def sign(self, message: bytes) -> bytes:
        return kms_sign(self._kms, self._key_id, message)


class KmsCheckpointKeys:
    """The trusted checkpoint keys (the current one and any listed after a rotation), read once each."""

    def __init__(self, kms: Any, key_ids: Sequence[str]) -> None:
        if not key_ids:
            raise ConfigurationError("invalid settings: AUDIT_CHECKPOINT_KEY_ID is not set")
        self._kms = kms
        self._key_ids = {key_id_of(k): k for k in key_ids}
        self._keys: dict[str, EllipticCurvePublicKey] = {}
        self._lock = threading.Lock()

    def public_key(self, key_id: str) -> EllipticCurvePublicKey | None:
        full = self._key_ids.get(key_id)
        if full is None:
            return None
        with self._lock:
            if key_id not in self._keys:
                self._keys[key_id] = kms_public_key(self._kms, full)
            return self._keys[key_id]


class S3CheckpointStore:
    """The checkpoint bucket: each checkpoint one object under compliance-mode Object Lock."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        *,
        retention_days: int = 365,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not bucket:
            raise ConfigurationError("invalid settings: AUDIT_CHECKPOINT_BUCKET is not set")
        import time

        self._s3 = s3
        self._bucket = bucket
        self._retention_days = retention_days
        self._clock = clock or time.time

    def put(self, checkpoint: Checkpoint) -> bool:
        """Stores the checkpoint; False when one of this seq is already stored (it stands, unchanged)."""
        import hashlib

        body = json.dumps(checkpoint.to_json(), separators=(",", ":")).encode()
        until = datetime.fromtimestamp(self._clock(), UTC) + timedelta(days=self._retention_days)
        try:
            self._s3.put_object(
                Bucket=self._bucket,
                Key=checkpoint.object_key,
                Body=body,
                ContentType="application/json",
                ContentMD5=base64.b64encode(hashlib.md5(body).digest()).decode(),  # noqa: S324 - S3 asks MD5
                ObjectLockMode="COMPLIANCE",
                ObjectLockRetainUntilDate=until,
                IfNoneMatch="*",
            )
        except Exception as exc:
            code = error_code(exc)
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise _translate("PutObject", exc) from exc
        return True

    def checkpoints(self) -> Iterator[tuple[str, bytes]]:
        """Every version of every checkpoint object, (key, body), in seq order.

        Versions, not the current objects: a delete marker or a later version put over a checkpoint (by
        someone with s3:PutObject, without the Object Lock the original has) hides nothing from verify,
        which checks every version's signature.
        """
        request: dict[str, Any] = {"Bucket": self._bucket, "Prefix": PREFIX}
        while True:
            try:
                page = self._s3.list_object_versions(**request)
            except Exception as exc:
                raise _translate("ListObjectVersions", exc) from exc
            for item in page.get("Versions", []):
                key, version = str(item["Key"]), str(item["VersionId"])
                try:
                    got = self._s3.get_object(Bucket=self._bucket, Key=key, VersionId=version)
                    body = got["Body"].read(MAX_OBJECT_BYTES + 1)
                except Exception as exc:
                    raise _translate("GetObject", exc) from exc
                yield key, bytes(body)
            if not page.get("IsTruncated"):
                return
            request["KeyMarker"] = page.get("NextKeyMarker")
            request["VersionIdMarker"] = page.get("NextVersionIdMarker")


def check_checkpoints(stored: Iterator[tuple[str, bytes]], keys: CheckpointKeys) -> list[CheckedCheckpoint]:
    """Each stored object parsed and its signature checked, in seq order."""
    checked: list[CheckedCheckpoint] = []
    for key, body in stored:
        try:
            checkpoint = Checkpoint.parse(key, body)
        except (ValueError, UnicodeDecodeError) as exc:
            checked.append(CheckedCheckpoint(None, key, False, f"unreadable: {exc}"))
            continue
        public = keys.public_key(checkpoint.key_id)
        if public is None:
            checked.append(CheckedCheckpoint(checkpoint, key, False, "signed by a key that is not trusted"))
            continue
        try:
            padded = checkpoint.signature + "=" * (-len(checkpoint.signature) % 4)
            signature = base64.urlsafe_b64decode(padded)
        except (binascii.Error, ValueError):
            checked.append(CheckedCheckpoint(checkpoint, key, False, "the signature is not base64url"))
            continue
        ok = verify_ecdsa(public, signature, checkpoint.message())
        problem = None if ok else "the signature does not verify"
        checked.append(CheckedCheckpoint(checkpoint, key, ok, problem))
    return checked


def new_checkpoint(signer: CheckpointSigner, seq: int, head_hash: str, at: str) -> Checkpoint:
    signature = signer.sign(signed_message(seq, head_hash, at))
    encoded = base64.urlsafe_b64encode(signature).decode().rstrip("=")
    return Checkpoint(seq=seq, hash=head_hash, at=at, key_id=signer.key_id(), signature=encoded)


def _translate(operation: str, exc: BaseException) -> Exception:
    code = error_code(exc)
    if code in ("AccessDenied", "NoSuchBucket", "InvalidBucketName", "InvalidRequest"):
        return ConfigurationError(f"S3 refused {operation} on the checkpoint bucket: {code}")
    return TransientError(f"S3 {operation} failed: {code or type(exc).__name__}")

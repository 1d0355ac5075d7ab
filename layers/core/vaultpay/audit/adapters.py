"""The audit domain's AWS adapters: checkpoints signed by KMS and kept in an S3 bucket under Object Lock
(what a checkpoint is and how the chain is checked against it: vaultpay.audit.checkpoints)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from vaultpay.audit.checkpoints import MAX_OBJECT_BYTES, PREFIX, Checkpoint
from vaultpay.shared import kernel
from vaultpay.shared.dynamo import error_code
from vaultpay.shared.errors import ConfigurationError, TransientError
from vaultpay.shared.kms_ecdsa import key_id_of, kms_public_key, kms_sign

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey


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

        self._s3 = s3
        self._bucket = bucket
        self._retention_days = retention_days
        self._clock = clock or kernel.now

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


def _translate(operation: str, exc: BaseException) -> Exception:
    code = error_code(exc)
    if code in ("AccessDenied", "NoSuchBucket", "InvalidBucketName", "InvalidRequest"):
        return ConfigurationError(f"S3 refused {operation} on the checkpoint bucket: {code}")
    return TransientError(f"S3 {operation} failed: {code or type(exc).__name__}")

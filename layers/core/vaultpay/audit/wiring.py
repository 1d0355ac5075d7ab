"""The audit functions' composition, built once per warm Lambda: the table, the service, the NATS consumer."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vaultpay.shared.errors import ConfigurationError
from vaultpay.shared.observability import get_logger

if TYPE_CHECKING:
    from vaultpay.audit.checkpoints import CheckedCheckpoint, Checkpoint, KmsCheckpointKeys
    from vaultpay.audit.consumer import ConsumeReport
    from vaultpay.audit.model import VerifyResult
    from vaultpay.audit.service import AuditService
    from vaultpay.audit.store import DynamoDBAuditStore
    from vaultpay.events.jetstream import NatsConnection

# A verify walks the whole chain page by page: a single slow page gets a retry, not the whole request.
_AWS_TIMEOUT_S = 3.0
_AWS_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """The audit functions' own environment. A plain dataclass: the admin routes need nothing else, and
    the pydantic settings model would add its import to their cold start."""

    audit_table: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> AuditSettings:
        table = environ.get("AUDIT_TABLE", "").strip()
        if not table:
            raise ConfigurationError("invalid settings: AUDIT_TABLE is not set")
        return cls(audit_table=table)


@functools.cache
def audit_store() -> DynamoDBAuditStore:
    from vaultpay.audit.store import DynamoDBAuditStore
    from vaultpay.shared.aws import aws_client

    settings = AuditSettings.from_environ(os.environ)
    client = aws_client("dynamodb", timeout_s=_AWS_TIMEOUT_S, max_attempts=_AWS_ATTEMPTS)
    return DynamoDBAuditStore(client, settings.audit_table)


@functools.cache
def audit_service() -> AuditService:
    """The process's audit service, built on first use."""
    from vaultpay.audit.service import AuditService

    return AuditService(audit_store())


@functools.cache
def jetstream() -> NatsConnection:
    """The process's one NATS connection, as the audit consumer's own NATS user."""
    from vaultpay.events.jetstream import NatsConnection

    return NatsConnection.from_environ(os.environ, name="vaultpay-audit-consumer", log=get_logger())


def consume_pending(remaining_ms: Callable[[], int]) -> ConsumeReport:
    """One scheduled run: appends what `audit-workers` holds until it is empty or time runs low, and
    publishes the backlog it leaves as the lag metrics."""
    from vaultpay.audit.consumer import DURABLE, STREAM, consume
    from vaultpay.events.jetstream import consume_durable

    connection = jetstream()
    service = audit_service()
    return consume_durable(
        connection,
        STREAM,
        DURABLE,
        lambda source: consume(source, service, remaining_ms=remaining_ms, log=get_logger()),
    )


# ---- signed checkpoints (vaultpay.audit.checkpoints) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckpointSettings:
    """Where checkpoints live and which keys sign and verify them. `bucket` empty: none configured (a verify
    then checks the chain alone, and says so with `checkpoints_checked: 0`)."""

    bucket: str
    key_id: str
    verify_key_ids: tuple[str, ...]
    retention_days: int

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> CheckpointSettings:
        bucket = environ.get("AUDIT_CHECKPOINT_BUCKET", "").strip()
        key_id = environ.get("AUDIT_CHECKPOINT_KEY_ID", "").strip()
        if bucket and not key_id:
            raise ConfigurationError("invalid settings: AUDIT_CHECKPOINT_KEY_ID is not set")
        extra = tuple(
            k.strip() for k in environ.get("AUDIT_CHECKPOINT_VERIFY_KEY_IDS", "").split(",") if k.strip()
        )
        days_text = environ.get("AUDIT_CHECKPOINT_RETENTION_DAYS", "365").strip() or "365"
        if not days_text.isdigit() or not 1 <= int(days_text) <= 36500:
            raise ConfigurationError("invalid settings: AUDIT_CHECKPOINT_RETENTION_DAYS must be 1..36500")
        return cls(bucket, key_id, extra, int(days_text))


@functools.cache
def checkpoint_settings() -> CheckpointSettings:
    return CheckpointSettings.from_environ(os.environ)


def checked_checkpoints() -> list[CheckedCheckpoint]:
    """Every stored checkpoint with its signature checked ([] when no bucket is configured)."""
    from vaultpay.audit.checkpoints import S3CheckpointStore, check_checkpoints
    from vaultpay.shared.aws import aws_client

    settings = checkpoint_settings()
    if not settings.bucket:
        return []
    s3 = aws_client("s3", timeout_s=_AWS_TIMEOUT_S, max_attempts=_AWS_ATTEMPTS)
    kms = aws_client("kms", timeout_s=_AWS_TIMEOUT_S, max_attempts=_AWS_ATTEMPTS)
    keys = _trusted_keys(kms, (settings.key_id, *settings.verify_key_ids))
    return check_checkpoints(S3CheckpointStore(s3, settings.bucket).checkpoints(), keys)


@functools.cache
def _trusted_keys(kms: object, key_ids: tuple[str, ...]) -> KmsCheckpointKeys:
    from vaultpay.audit.checkpoints import KmsCheckpointKeys

    return KmsCheckpointKeys(kms, key_ids)


def verify_with_checkpoints() -> VerifyResult:
    """The chain, through every signed checkpoint (the verify route, the schedule and the CLI)."""
    return audit_service().verify(checkpoints=checked_checkpoints())


def verify_and_checkpoint(*, sign: bool) -> tuple[VerifyResult, Checkpoint | None]:
    """The scheduled run: verify the chain through its checkpoints, then (when it verified, and `sign`)
    sign its head and store it as the next checkpoint."""
    import time

    from vaultpay.audit.checkpoints import KmsCheckpointSigner, S3CheckpointStore
    from vaultpay.shared.aws import aws_client

    result = verify_with_checkpoints()
    settings = checkpoint_settings()
    if not sign or not settings.bucket:
        return result, None
    s3 = aws_client("s3", timeout_s=_AWS_TIMEOUT_S, max_attempts=_AWS_ATTEMPTS)
    kms = aws_client("kms", timeout_s=_AWS_TIMEOUT_S, max_attempts=_AWS_ATTEMPTS)
    store = S3CheckpointStore(s3, settings.bucket, retention_days=settings.retention_days)
    point = audit_service().checkpoint(
        KmsCheckpointSigner(kms, settings.key_id), store, result, now=time.time()
    )
    return result, point

"""The audit functions' composition, built once per warm Lambda: the store, the service, NATS, checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vaultpay.shared import kernel
from vaultpay.shared.lazy import cached
from vaultpay.shared.observability import get_logger

if TYPE_CHECKING:
    from vaultpay.audit.adapters import KmsCheckpointKeys
    from vaultpay.audit.checkpoints import CheckedCheckpoint, Checkpoint
    from vaultpay.audit.consumer import ConsumeReport
    from vaultpay.audit.model import VerifyResult
    from vaultpay.audit.service import AuditService
    from vaultpay.audit.store import DynamoDBAuditStore
    from vaultpay.events.jetstream import NatsConnection

# A verify walks the whole chain page by page: a single slow page gets a retry, not the whole request.
_AWS_TIMEOUT_S = 3.0
_AWS_ATTEMPTS = 3


def _client(service: str) -> Any:
    from vaultpay.shared.aws import aws_client

    return aws_client(service, timeout_s=_AWS_TIMEOUT_S, max_attempts=_AWS_ATTEMPTS)


@cached
def audit_store() -> DynamoDBAuditStore:
    from vaultpay.audit.store import DynamoDBAuditStore
    from vaultpay.bootstrap.settings import audit_settings

    settings = audit_settings()
    # The table first: a missing setting is reported as itself, before any client is built.
    table = settings.require("audit_table")
    return DynamoDBAuditStore(_client("dynamodb"), table, chains=settings.audit_chains)


@cached
def audit_service() -> AuditService:
    """The process's audit service, built on first use."""
    from vaultpay.audit.service import AuditService

    return AuditService(audit_store())


@cached
def jetstream() -> NatsConnection:
    """The process's one NATS connection, as the audit consumer's own NATS user."""
    from vaultpay.bootstrap.nats import nats_connection
    from vaultpay.bootstrap.settings import consumer_settings

    return nats_connection(consumer_settings(), name="vaultpay-audit-consumer")


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


def checked_checkpoints() -> list[CheckedCheckpoint]:
    """Every stored checkpoint with its signature checked ([] when no bucket is configured)."""
    from vaultpay.audit.adapters import S3CheckpointStore
    from vaultpay.audit.checkpoints import check_checkpoints
    from vaultpay.bootstrap.settings import checkpoint_settings

    settings = checkpoint_settings()
    if not settings.checkpoint_bucket:
        return []
    keys = _trusted_keys(_client("kms"), (settings.require("checkpoint_key_id"), *settings.verify_key_ids))
    return check_checkpoints(S3CheckpointStore(_client("s3"), settings.checkpoint_bucket).checkpoints(), keys)


@cached
def _trusted_keys(kms: object, key_ids: tuple[str, ...]) -> KmsCheckpointKeys:
    from vaultpay.audit.adapters import KmsCheckpointKeys

    return KmsCheckpointKeys(kms, key_ids)


def verify_with_checkpoints() -> VerifyResult:
    """The chain, through every signed checkpoint (the verify route, the schedule and the CLI)."""
    return audit_service().verify(checkpoints=checked_checkpoints())


def verify_and_checkpoint(*, sign: bool) -> tuple[VerifyResult, Checkpoint | None]:
    """The scheduled run: verify the chain through its checkpoints, then (when it verified, and `sign`)
    sign its head and store it as the next checkpoint."""

    from vaultpay.audit.adapters import KmsCheckpointSigner, S3CheckpointStore
    from vaultpay.bootstrap.settings import checkpoint_settings

    result = verify_with_checkpoints()
    settings = checkpoint_settings()
    if not sign or not settings.checkpoint_bucket:
        return result, None
    store = S3CheckpointStore(
        _client("s3"), settings.checkpoint_bucket, retention_days=settings.checkpoint_retention_days
    )
    point = audit_service().checkpoint(
        KmsCheckpointSigner(_client("kms"), settings.require("checkpoint_key_id")),
        store,
        result,
        now=kernel.now(),
    )
    return result, point

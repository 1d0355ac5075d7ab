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
    from vaultpay.audit.consumer import ConsumeReport, JetStreamConnection
    from vaultpay.audit.service import AuditService
    from vaultpay.audit.store import DynamoDBAuditStore

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
def jetstream() -> JetStreamConnection:
    """The process's one NATS connection (NATS_URL from the shared settings)."""
    from vaultpay.audit.consumer import JetStreamConnection
    from vaultpay.shared.settings import get_settings

    return JetStreamConnection(get_settings().nats_url, name="vaultpay-audit-consumer")


def consume_pending(remaining_ms: Callable[[], int]) -> ConsumeReport:
    """One scheduled run: appends what `audit-workers` holds until it is empty or time runs low."""
    from vaultpay.audit.consumer import DURABLE, STREAM, consume

    connection = jetstream()
    service = audit_service()

    async def run() -> ConsumeReport:
        source = await connection.pull_source(STREAM, DURABLE)
        return await consume(source, service, remaining_ms=remaining_ms, log=get_logger())

    return connection.run(run)

"""What the audit use cases need from the outside world: the append-only store and the checkpoint writer.

Implementations: vaultpay.audit.store, vaultpay.audit.checkpoints, vaultpay.audit.memory; wired in
vaultpay.bootstrap.audit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from vaultpay.audit.checkpoints import (
    Checkpoint,
)
from vaultpay.audit.model import (
    AppendOutcome,
    AuditEntry,
    AuditFilter,
    AuditRecord,
    ChainHead,
    MalformedRecord,
    QueryPosition,
    RecordPage,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey


class AuditStore(Protocol):
    """The port the service needs; vaultpay.audit.store.DynamoDBAuditStore is the real one."""

    @property
    def chains(self) -> int:
        """How many chains appends are spread over (AUDIT_CHAINS)."""
        ...

    def chains_written(self) -> int:
        """How many chains the store has had at most (at least `chains`): what a verify walks."""
        ...

    def head(self, chain: int = 0) -> ChainHead: ...

    def append(self, entries: Sequence[AuditEntry]) -> list[AppendOutcome]: ...

    def records(self, chain: int = 0) -> Iterator[AuditRecord | MalformedRecord]: ...

    def query(self, query: AuditFilter, *, limit: int, after: QueryPosition | None = None) -> RecordPage: ...


class CheckpointWriter(Protocol):
    def put(self, checkpoint: Checkpoint) -> bool: ...


class CheckpointSigner(Protocol):
    def key_id(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...


class CheckpointKeys(Protocol):
    def public_key(self, key_id: str) -> EllipticCurvePublicKey | None:
        """The public key of `key_id` when it is one of the trusted checkpoint keys, else None."""
        ...

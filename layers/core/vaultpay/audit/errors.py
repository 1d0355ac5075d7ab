"""The audit domain's errors, in the one VaultPay hierarchy."""

from __future__ import annotations

from vaultpay.shared.errors import InfrastructureError


class AuditWriteRejected(InfrastructureError):
    """DynamoDB refused an append as invalid (a ValidationException): retrying the same entries cannot
    succeed, so the caller isolates the entry at fault instead."""


class AuditChainCorrupt(InfrastructureError):
    """The chain's newest record cannot be read, so nothing can be linked to it: appending stops until an
    operator has run `vaultpay ops audit verify` and repaired the table."""

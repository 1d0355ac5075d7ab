"""The accounts functions' composition: the ledger service, and the scheduled reconciliation's scan."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vaultpay.bootstrap.secrets import secret_cache
from vaultpay.shared.lazy import LazyProxy, cached

if TYPE_CHECKING:
    from vaultpay.accounts.reconcile import ReconcileReport
    from vaultpay.accounts.service import AccountsService

# The ledger answers the saga and people at a screen alike: a short deadline, and the ledger's own retry loop
# (re-read and re-plan) rather than botocore's, which would resend a transaction planned on a stale read.
ACCOUNTS_AWS_TIMEOUT_S = 2.0
ACCOUNTS_AWS_ATTEMPTS = 3
# The hourly reconciliation scans the whole table: a long deadline, and patient retries of a slow segment.
RECONCILE_AWS_TIMEOUT_S = 10.0
RECONCILE_AWS_ATTEMPTS = 5


def _client(service: str) -> LazyProxy:
    from vaultpay.shared.aws import aws_client

    return LazyProxy(
        lambda: aws_client(service, timeout_s=ACCOUNTS_AWS_TIMEOUT_S, max_attempts=ACCOUNTS_AWS_ATTEMPTS)
    )


@cached
def accounts_service() -> AccountsService:
    """The accounts service with its real adapters, built on first use: one set per warm Lambda."""
    from vaultpay.accounts.service import AccountsService
    from vaultpay.accounts.store import DynamoLedgerStore
    from vaultpay.bootstrap.settings import accounts_settings
    from vaultpay.shared.fieldcrypt import FieldCipher, KmsKeyProvider
    from vaultpay.shared.secrets import BlindIndexFromSecret

    settings = accounts_settings()
    return AccountsService(
        store=DynamoLedgerStore(_client("dynamodb"), settings.require("accounts_table")),
        cipher=FieldCipher(
            KmsKeyProvider(_client("kms"), settings.require("account_number_key_id")),
            key_context={"app": "vaultpay", "purpose": "account_number"},
        ),
        index=BlindIndexFromSecret(secret_cache(), settings.require("account_number_index_secret_arn")),
        currencies=settings.currencies,
        deposit_approval_threshold=settings.deposit_approval_threshold,
    )


def reconcile_ledger(*, segments: int) -> ReconcileReport:
    """One reconciliation of the AccountsTable's double entry, scanned in `segments` parallel segments."""
    from vaultpay.accounts.reconcile import reconcile_table
    from vaultpay.bootstrap.settings import reconcile_settings
    from vaultpay.shared.aws import aws_client

    table = reconcile_settings().require("accounts_table")
    client = aws_client("dynamodb", timeout_s=RECONCILE_AWS_TIMEOUT_S, max_attempts=RECONCILE_AWS_ATTEMPTS)
    return reconcile_table(client, table, segments=segments)

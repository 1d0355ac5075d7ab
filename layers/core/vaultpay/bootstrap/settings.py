"""Each function family's settings model, composed from the resource mixins of vaultpay.shared.settings.

Imported by the builders at first use, never by a handler at import: a function that never needs a setting
never reads one.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, TypeVar

from vaultpay.shared.errors import ConfigurationError
from vaultpay.shared.lazy import cached
from vaultpay.shared.settings import (
    AccountNumberKeys,
    AccountsTable,
    AuditTable,
    AuthTable,
    BlindIndexSecret,
    Currencies,
    EnvSettings,
    FraudTables,
    LambdaFunctionName,
    OutboxTables,
    PiiKey,
    RateLimitTable,
    Stage,
    StageName,
    TokenClaims,
    TokenKeys,
    TransfersTable,
    Version,
    WebhookSecretKey,
    WebhooksTable,
    env,
    integer,
    number,
    one_of,
    stage_name,
    validator,
)

if TYPE_CHECKING:
    from vaultpay.events.jetstream import NatsSettings

_S = TypeVar("_S", bound=EnvSettings)


class NatsServer(Stage):
    """NATS_URL (one URL, or several comma-separated for a cluster), NATS_CREDENTIALS_SECRET_ARN (the
    function's own NATS user) and NATS_TLS_CA, checked by vaultpay.events.jetstream's rules (which refuse a
    loopback or plain-text server outside the local stage) when the model is read."""

    nats_url: str = env("NATS_URL")
    nats_credentials_secret_arn: str | None = env("NATS_CREDENTIALS_SECRET_ARN", default=None)
    nats_tls_ca: str | None = env("NATS_TLS_CA", default=None, secret=True)

    @validator
    def _nats_rules(self) -> None:
        # Read now, so a model that loads is one whose NATS servers are usable; the rules raise
        # ConfigurationError naming the variable and never echo a URL (it may hold a password).
        self.nats  # noqa: B018

    @functools.cached_property
    def nats(self) -> NatsSettings:
        from vaultpay.events.jetstream import NatsSettings

        return NatsSettings.from_environ(self.nats_environ)

    @property
    def nats_environ(self) -> dict[str, str]:
        """The NATS variables as vaultpay.events.jetstream reads them."""
        return {
            "NATS_URL": self.nats_url,
            "STAGE": self.stage,
            "NATS_CREDENTIALS_SECRET_ARN": self.nats_credentials_secret_arn or "",
            "NATS_TLS_CA": self.nats_tls_ca or "",
        }


# ---- the models ---------------------------------------------------------------------------------------


class HealthSettings(Version, NatsServer):
    """GET /v1/health: the deployed version and the NATS servers to reach."""

    # Required here: the health report is a deployment's own.
    stage: StageName = env("STAGE", parse=stage_name)


class AuthSettings(AuthTable, RateLimitTable, PiiKey, BlindIndexSecret, TokenKeys, TokenClaims):
    """The identity functions (docs/identity-contract.md); the JWKS function has only the token keys."""


class AuthorizerSettings(AuthTable, TokenKeys, TokenClaims):
    """The authorizer: every protected request waits for it, so everything it needs is checked at once."""

    # How long a "this session is still live" answer is reused (identity contract: a logout within 60 s).
    session_check_ttl_s: float = env("SESSION_CHECK_TTL_S", default=30.0, parse=number)

    @validator
    def _complete(self) -> None:
        names = ("auth_table", "token_signing_key_id", "token_issuer", "token_audience")
        missing = [self.variable(name) for name in names if getattr(self, name) is None]
        if missing:
            raise ConfigurationError("invalid settings: " + "; ".join(f"{m} is not set" for m in missing))


DEFAULT_DEPOSIT_APPROVAL_THRESHOLD = 10_000_000  # paise: 1 lakh rupees


class AccountsSettings(AccountsTable, AccountNumberKeys, Currencies):
    """The accounts functions (docs/accounts-contract.md)."""

    # A deposit above this many minor units waits for a second admin (template DepositApprovalThreshold).
    deposit_approval_threshold: int = env(
        "DEPOSIT_APPROVAL_THRESHOLD", default=DEFAULT_DEPOSIT_APPROVAL_THRESHOLD, parse=integer(minimum=0)
    )


class ReconcileSettings(AccountsTable):
    """The hourly ledger reconciliation: only the table (the scan reads no account number)."""


class TransfersSettings(TransfersTable, RateLimitTable, Currencies):
    """The transfers functions (docs/transfers-contract.md); GET needs only the table."""

    resolve_parties_function: str | None = env("RESOLVE_PARTIES_FUNCTION", default=None)
    transfer_state_machine_arn: str | None = env("TRANSFER_STATE_MACHINE_ARN", default=None)


class FraudSettings(FraudTables, AccountsTable):
    """The fraud functions: the saga step, the review routes and the consumer each use some of these."""

    fraud_config_parameter: str | None = env("FRAUD_CONFIG_PARAMETER", default=None)
    transfer_status_function: str | None = env("TRANSFER_STATUS_FUNCTION", default=None)


class AuditSettings(AuditTable):
    """The audit functions' table, and how many chains the log is spread over (vaultpay.audit.store; one
    when unset: the single chain of a log written before it had chains)."""

    # 64 is vaultpay.audit.model.MAX_CHAINS, kept literal so that reading settings imports no domain.
    audit_chains: int = env("AUDIT_CHAINS", default=1, parse=integer(minimum=1, maximum=64))


class CheckpointSettings(EnvSettings):
    """Where audit checkpoints live and which keys sign and verify them. No bucket: none configured (a
    verify then checks the chain alone, and says so with `checkpoints_checked: 0`)."""

    checkpoint_bucket: str | None = env("AUDIT_CHECKPOINT_BUCKET", default=None)
    checkpoint_key_id: str | None = env("AUDIT_CHECKPOINT_KEY_ID", default=None)
    checkpoint_verify_key_ids: str = env("AUDIT_CHECKPOINT_VERIFY_KEY_IDS", default="")
    checkpoint_retention_days: int = env(
        "AUDIT_CHECKPOINT_RETENTION_DAYS", default=365, parse=integer(minimum=1, maximum=36500)
    )

    @validator
    def _key_with_bucket(self) -> None:
        if self.checkpoint_bucket:
            self.require("checkpoint_key_id")

    @property
    def verify_key_ids(self) -> tuple[str, ...]:
        return tuple(key.strip() for key in self.checkpoint_verify_key_ids.split(",") if key.strip())


class ConsumerSettings(NatsServer):
    """A JetStream consumer (audit, fraud): the NATS connection, as the consumer's own NATS user."""


class RelaySettings(NatsServer, LambdaFunctionName, OutboxTables):
    """The relay and the outbox sweeper: NATS as the publisher's user, and the tables the sweeper owns."""


class WebhooksSettings(WebhooksTable, WebhookSecretKey, Stage):
    """The webhook functions: the table, the key that seals the signing secrets, and what the stage lets a
    delivery reach. The local stage alone may allow http://127.0.0.1:<port> (a test receiver) and scale the
    retry schedule down (WebhookAllowLoopback, WebhookTimeScale in template.yaml)."""

    webhook_allow_loopback: str = env(
        "WEBHOOK_ALLOW_LOOPBACK", default="false", parse=one_of("true", "false")
    )
    webhook_time_scale: float = env("WEBHOOK_TIME_SCALE", default=1.0, parse=number)

    @validator
    def _local_only(self) -> None:
        if not 1.0 <= self.webhook_time_scale <= 3600.0:
            raise ConfigurationError("invalid settings: WEBHOOK_TIME_SCALE must be in 1..3600")
        if self.stage != "local" and (self.allows_loopback or self.webhook_time_scale != 1.0):
            raise ConfigurationError(
                "invalid settings: WEBHOOK_ALLOW_LOOPBACK and WEBHOOK_TIME_SCALE are for the local stage only"
            )

    @property
    def allows_loopback(self) -> bool:
        return self.webhook_allow_loopback == "true"


class WebhookConsumerSettings(WebhooksSettings, NatsServer):
    """The webhook-workers consumer: the webhook settings and its own NATS user."""


def _read(model: type[_S]) -> _S:
    return model.load(os.environ)


@cached
def health_settings() -> HealthSettings:
    return _read(HealthSettings)


@cached
def auth_settings() -> AuthSettings:
    return _read(AuthSettings)


@cached
def authorizer_settings() -> AuthorizerSettings:
    return _read(AuthorizerSettings)


@cached
def accounts_settings() -> AccountsSettings:
    return _read(AccountsSettings)


@cached
def reconcile_settings() -> ReconcileSettings:
    return _read(ReconcileSettings)


@cached
def transfers_settings() -> TransfersSettings:
    return _read(TransfersSettings)


@cached
def fraud_settings() -> FraudSettings:
    return _read(FraudSettings)


@cached
def audit_settings() -> AuditSettings:
    return _read(AuditSettings)


@cached
def checkpoint_settings() -> CheckpointSettings:
    return _read(CheckpointSettings)


@cached
def consumer_settings() -> ConsumerSettings:
    return _read(ConsumerSettings)


@cached
def relay_settings() -> RelaySettings:
    return _read(RelaySettings)


@cached
def webhooks_settings() -> WebhooksSettings:
    return _read(WebhooksSettings)


@cached
def webhook_consumer_settings() -> WebhookConsumerSettings:
    return _read(WebhookConsumerSettings)

"""Settings helpers: a validated model of the environment, composed from one small mixin per resource.

A function's settings model (vaultpay.bootstrap) inherits the mixins of the resources it uses; each mixin
declares its variables once, with their validators, so no rule is written twice. Models are read at first use,
never at import (pydantic is imported with them, and a function that never needs a setting never pays for it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

import vaultpay
from vaultpay.shared.errors import ConfigurationError

StageName = Literal["local", "dev", "prod"]


class EnvSettings(BaseModel):
    """The base of every settings model: fields are read by their variable's name (the alias), unknown
    variables are ignored, and a blank value counts as absent (a template that renders "" must fail like a
    missing variable, never reach AWS as an empty name).

    A resource name is optional on the model and `require` fails loudly, naming the variable, when it is
    first needed: functions sharing a builder use only some of its resources (GET /v1/transfers needs the
    table, not the state machine), and each is given only what it uses.
    """

    # defer_build: a schema is built when its model is first read, so a function pays only for its own
    # model, not for every mixin and every other function's model this module defines.
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=False, defer_build=True)

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_absent(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str) or value.strip():
            return value.strip() if isinstance(value, str) else value
        field = cls.model_fields[info.field_name or ""]
        if field.is_required():
            raise PydanticCustomError("missing", "is not set")
        return field.get_default(call_default_factory=True)

    @classmethod
    def load(cls, environ: Mapping[str, str]) -> Self:
        """Validates `environ`; the error names every missing or invalid variable, never its value."""
        try:
            return cls.model_validate(dict(environ))
        except ValidationError as exc:
            problems = []
            for error in exc.errors(include_input=False, include_url=False):
                name = ".".join(str(part) for part in error["loc"]) or cls.__name__
                if error["type"] == "missing":
                    reason = "is not set"
                elif error["type"] == "value_error":
                    reason = str(error.get("ctx", {}).get("error", error["msg"]))  # a mixin's own words
                else:
                    reason = error["msg"]
                problems.append(f"{name} {reason}")
            # `from None`: pydantic's own message quotes the offending values, and a value may be a secret.
            raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None

    @classmethod
    def variable(cls, name: str) -> str:
        """The environment variable behind field `name`."""
        return cls.model_fields[name].alias or name.upper()

    def require(self, name: str) -> str:
        """The value of resource field `name`; ConfigurationError naming its variable when it is not set."""
        value: Any = getattr(self, name)
        if value is None:
            raise ConfigurationError(f"invalid settings: {self.variable(name)} is not set")
        if not isinstance(value, str):
            raise TypeError(f"{type(self).__name__}.{name} is not a resource name")
        return value


# ---- deployment ---------------------------------------------------------------------------------------


class Version(EnvSettings):
    # The deploy pipeline may stamp a build id; otherwise the core package's own version.
    version: str = Field(alias="VAULTPAY_VERSION", default=vaultpay.__version__, min_length=1)


class Currencies(EnvSettings):
    # Not a resource name: INR is the only currency the bank books unless a stage enables more.
    enabled_currencies: str = Field(alias="ENABLED_CURRENCIES", default="INR")

    @field_validator("enabled_currencies")
    @classmethod
    def _currency_codes(cls, value: str) -> str:
        codes = [code.strip() for code in value.split(",") if code.strip()]
        if not codes or not all(len(code) == 3 and code.isascii() and code.isupper() for code in codes):
            raise ValueError("must be comma-separated ISO 4217 codes")
        return ",".join(codes)

    @property
    def currencies(self) -> frozenset[str]:
        return frozenset(self.enabled_currencies.split(","))


# ---- tables -------------------------------------------------------------------------------------------


class AuthTable(EnvSettings):
    auth_table: str | None = Field(alias="AUTH_TABLE", default=None)


class RateLimitTable(EnvSettings):
    rate_limit_table: str | None = Field(alias="RATE_LIMIT_TABLE", default=None)


class AccountsTable(EnvSettings):
    accounts_table: str | None = Field(alias="ACCOUNTS_TABLE", default=None)


class TransfersTable(EnvSettings):
    transfers_table: str | None = Field(alias="TRANSFERS_TABLE", default=None)


class FraudTables(EnvSettings):
    fraud_table: str | None = Field(alias="FRAUD_TABLE", default=None)
    fraud_counters_table: str | None = Field(alias="FRAUD_COUNTERS_TABLE", default=None)


class AuditTable(EnvSettings):
    audit_table: str | None = Field(alias="AUDIT_TABLE", default=None)


class IdempotencyTable(EnvSettings):
    idempotency_table: str | None = Field(alias="IDEMPOTENCY_TABLE", default=None)


class OutboxTables(EnvSettings):
    # The domain tables (comma-separated) whose outbox items the sweeper owns; none: nothing to sweep.
    outbox_tables: str = Field(alias="OUTBOX_TABLES", default="")

    @property
    def outbox_table_names(self) -> list[str]:
        return [name.strip() for name in self.outbox_tables.split(",") if name.strip()]


# ---- keys and secrets ---------------------------------------------------------------------------------


class PiiKey(EnvSettings):
    pii_key_id: str | None = Field(alias="PII_KEY_ID", default=None)


class BlindIndexSecret(EnvSettings):
    blind_index_secret_arn: str | None = Field(alias="BLIND_INDEX_SECRET_ARN", default=None)


class AccountNumberKeys(EnvSettings):
    account_number_key_id: str | None = Field(alias="ACCOUNT_NUMBER_KEY_ID", default=None)
    account_number_index_secret_arn: str | None = Field(alias="ACCOUNT_NUMBER_INDEX_SECRET_ARN", default=None)


class TokenKeys(EnvSettings):
    """The KMS key that signs access tokens (its ARN), and the keys that only verify (comma-separated ARNs,
    during a rotation; may be empty)."""

    token_signing_key_id: str | None = Field(alias="TOKEN_SIGNING_KEY_ID", default=None)
    token_verify_key_ids: str = Field(alias="TOKEN_VERIFY_KEY_IDS", default="")

    @property
    def verify_key_ids(self) -> tuple[str, ...]:
        return tuple(key.strip() for key in self.token_verify_key_ids.split(",") if key.strip())


class TokenClaims(EnvSettings):
    token_issuer: str | None = Field(alias="TOKEN_ISSUER", default=None)
    token_audience: str | None = Field(alias="TOKEN_AUDIENCE", default=None)


# ---- other functions ----------------------------------------------------------------------------------


class LambdaFunctionName(EnvSettings):
    # Set by the Lambda runtime; names the function's NATS connection in the server's monitoring.
    function_name: str = Field(alias="AWS_LAMBDA_FUNCTION_NAME", default="local")

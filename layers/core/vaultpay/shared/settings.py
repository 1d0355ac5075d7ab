"""Deployment settings: a validated model read from the environment once, at first use, never at import."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

import vaultpay
from vaultpay.shared.errors import ConfigurationError

_M = TypeVar("_M", bound=BaseModel)


class Settings(BaseModel):
    """What every function needs from its environment (resource names get no defaults, so a missing one
    fails loudly here instead of reaching AWS as an empty string)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=False)

    stage: Literal["local", "dev", "prod"] = Field(alias="STAGE")
    nats_url: str = Field(alias="NATS_URL", min_length=1)
    # The deploy pipeline may stamp a build id; otherwise the core package's own version.
    version: str = Field(alias="VAULTPAY_VERSION", default=vaultpay.__version__, min_length=1)

    @field_validator("nats_url")
    @classmethod
    def _nats_scheme(cls, value: str) -> str:
        if not value.startswith(("nats://", "tls://")):
            raise ValueError("must start with nats:// or tls://")
        return value


AuthSettingName = Literal[
    "auth_table",
    "rate_limit_table",
    "pii_key_id",
    "blind_index_secret_arn",
    "token_signing_key_id",
    "token_verify_key_ids",
    "token_issuer",
    "token_audience",
]


class AuthSettings(BaseModel):
    """The identity functions' environment (docs/identity-contract.md).

    Each function needs only some of these (the JWKS function only the token keys), so every one
    is optional here and `require` fails loudly, naming the variable, when a missing one is first needed.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=False)

    auth_table: str | None = Field(alias="AUTH_TABLE", default=None)
    rate_limit_table: str | None = Field(alias="RATE_LIMIT_TABLE", default=None)
    pii_key_id: str | None = Field(alias="PII_KEY_ID", default=None)
    blind_index_secret_arn: str | None = Field(alias="BLIND_INDEX_SECRET_ARN", default=None)
    # The KMS key that signs access tokens (its ARN), and the keys that only verify (comma-separated ARNs,
    # during a rotation; may be empty).
    token_signing_key_id: str | None = Field(alias="TOKEN_SIGNING_KEY_ID", default=None)
    token_verify_key_ids: str | None = Field(alias="TOKEN_VERIFY_KEY_IDS", default=None)
    token_issuer: str | None = Field(alias="TOKEN_ISSUER", default=None)
    token_audience: str | None = Field(alias="TOKEN_AUDIENCE", default=None)

    @field_validator(*get_args(AuthSettingName), mode="before")
    @classmethod
    def _blank_is_missing(cls, value: object) -> object:
        # A template that renders an empty string must fail like a missing variable, not reach AWS as "".
        if isinstance(value, str):
            return value.strip() or None
        return value

    def require(self, name: AuthSettingName) -> str:
        value: str | None = getattr(self, name)
        if value is None:
            alias = type(self).model_fields[name].alias or name.upper()
            raise ConfigurationError(f"invalid settings: {alias} is not set")
        return value


DEFAULT_DEPOSIT_APPROVAL_THRESHOLD = 10_000_000  # paise: 1 lakh rupees

AccountsSettingName = Literal["accounts_table", "account_number_key_id", "account_number_index_secret_arn"]


class AccountsSettings(BaseModel):
    """The accounts functions' environment (docs/accounts-contract.md); resource names fail loudly on use."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=False)

    accounts_table: str | None = Field(alias="ACCOUNTS_TABLE", default=None)
    account_number_key_id: str | None = Field(alias="ACCOUNT_NUMBER_KEY_ID", default=None)
    account_number_index_secret_arn: str | None = Field(alias="ACCOUNT_NUMBER_INDEX_SECRET_ARN", default=None)
    # Not a resource name: INR is the only currency the bank books unless a stage enables more.
    enabled_currencies: str = Field(alias="ENABLED_CURRENCIES", default="INR")
    # A deposit above this many minor units waits for a second admin (template DepositApprovalThreshold).
    deposit_approval_threshold: int = Field(
        alias="DEPOSIT_APPROVAL_THRESHOLD", default=DEFAULT_DEPOSIT_APPROVAL_THRESHOLD, ge=0
    )

    @field_validator(*get_args(AccountsSettingName), mode="before")
    @classmethod
    def _blank_is_missing(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip() or None
        return value

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

    def require(self, name: AccountsSettingName) -> str:
        value: str | None = getattr(self, name)
        if value is None:
            alias = type(self).model_fields[name].alias or name.upper()
            raise ConfigurationError(f"invalid settings: {alias} is not set")
        return value


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Validates `environ`; the error names every missing or invalid variable, never its value."""
    return _validated(Settings, environ)


def load_auth_settings(environ: Mapping[str, str]) -> AuthSettings:
    """The identity settings in `environ`; absent ones stay None until `require` asks for them."""
    return _validated(AuthSettings, environ)


def _validated(model: type[_M], environ: Mapping[str, str]) -> _M:
    try:
        return model.model_validate(dict(environ))
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            name = ".".join(str(part) for part in error["loc"])
            reason = "is not set" if error["type"] == "missing" else error["msg"]
            problems.append(f"{name} {reason}")
        # `from None`: pydantic's own message quotes the offending values, and a value may be a secret.
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read on first use and reused by a warm Lambda."""
    return load_settings(os.environ)


def load_accounts_settings(environ: Mapping[str, str]) -> AccountsSettings:
    return _validated(AccountsSettings, environ)


@functools.cache
def get_accounts_settings() -> AccountsSettings:
    """The accounts settings, read on first use."""
    return load_accounts_settings(os.environ)


@functools.cache
def get_auth_settings() -> AuthSettings:
    """The identity settings, read on first use (functions without them, like health, never ask)."""
    return load_auth_settings(os.environ)


TransfersSettingName = Literal[
    "transfers_table", "rate_limit_table", "resolve_parties_function", "transfer_state_machine_arn"
]


class TransfersSettings(BaseModel):
    """The transfers functions' environment (docs/transfers-contract.md); resource names fail loudly on use.

    Each transfers function needs only some (GET needs only the table), so every name is optional here and
    `require` names the missing variable when it is first needed.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=False)

    transfers_table: str | None = Field(alias="TRANSFERS_TABLE", default=None)
    rate_limit_table: str | None = Field(alias="RATE_LIMIT_TABLE", default=None)
    resolve_parties_function: str | None = Field(alias="RESOLVE_PARTIES_FUNCTION", default=None)
    transfer_state_machine_arn: str | None = Field(alias="TRANSFER_STATE_MACHINE_ARN", default=None)
    enabled_currencies: str = Field(alias="ENABLED_CURRENCIES", default="INR")

    @field_validator(*get_args(TransfersSettingName), mode="before")
    @classmethod
    def _blank_is_missing(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("enabled_currencies")
    @classmethod
    def _currency_codes(cls, value: str) -> str:
        return AccountsSettings._currency_codes(value)

    @property
    def currencies(self) -> frozenset[str]:
        return frozenset(self.enabled_currencies.split(","))

    def require(self, name: TransfersSettingName) -> str:
        value: str | None = getattr(self, name)
        if value is None:
            alias = type(self).model_fields[name].alias or name.upper()
            raise ConfigurationError(f"invalid settings: {alias} is not set")
        return value


def load_transfers_settings(environ: Mapping[str, str]) -> TransfersSettings:
    return _validated(TransfersSettings, environ)


@functools.cache
def get_transfers_settings() -> TransfersSettings:
    """The transfers settings, read on first use."""
    return load_transfers_settings(os.environ)

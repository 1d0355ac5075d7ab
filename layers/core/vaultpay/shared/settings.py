"""Settings helpers: a validated model of the environment, composed from one small mixin per resource.

A function's settings model (vaultpay.bootstrap) inherits the mixins of the resources it uses; each mixin
declares its variables once (`env("NAME", default=..., parse=...)`) with their checks (`@validator`), so no
rule is written twice. Models are read at first use, never at import. The standard library only, on purpose:
the authorizer and the consumers read their settings on the cold path of a first request, where importing
pydantic and building a model cost 100-170 ms for a handful of strings (about 1.5 ms without).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, Self, TypeVar, dataclass_transform, get_args

import vaultpay
from vaultpay.shared.errors import ConfigurationError

StageName = Literal["local", "dev", "prod"]

_V = TypeVar("_V", bound=Callable[[Any], None])
_REQUIRED: Any = object()
# The mark `@validator` leaves on a method: the class collects its checks by it, no registry to keep.
_CHECK_MARK = "__settings_check__"


class _Env:
    """A field's declaration: its variable, its default (none: required) and how its text becomes a value."""

    __slots__ = ("default", "parse", "secret", "variable")

    def __init__(self, variable: str, default: Any, parse: Callable[[str], Any], secret: bool) -> None:
        self.variable = variable
        self.default = default
        self.parse = parse
        self.secret = secret


def _text(raw: str) -> str:
    return raw


def env(
    variable: str, *, default: Any = _REQUIRED, parse: Callable[[str], Any] = _text, secret: bool = False
) -> Any:
    """A settings field read from `variable`: without `default` it is required. `parse` turns the (stripped,
    non-blank) text into the field's value and raises ValueError in words that never quote the value;
    `secret` keeps the value out of the model's repr."""
    return _Env(variable, default, parse, secret)


def validator(method: _V) -> _V:
    """Marks a method that checks a model once its fields are read; every model composing its class runs
    it. It raises ConfigurationError naming the variable, never quoting a value."""
    setattr(method, _CHECK_MARK, True)
    return method


def integer(*, minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """A `parse` for a whole number within bounds."""

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("must be an integer") from None
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be at most {maximum}")
        return value

    return parse


def number(raw: str) -> float:
    """A `parse` for a decimal number."""
    try:
        return float(raw)
    except ValueError:
        raise ValueError("must be a number") from None


def one_of(*choices: str) -> Callable[[str], str]:
    """A `parse` for one of a few words."""

    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError("must be one of " + ", ".join(choices))
        return raw

    return parse


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(env,))
class EnvSettings:
    """The base of every settings model: each field is read from its variable, unknown variables are
    ignored, and a blank value counts as absent (a template that renders "" must fail like a missing
    variable, never reach AWS as an empty name). A model is frozen, and compares by value.

    A resource name is optional on the model and `require` fails loudly, naming the variable, when it is
    first needed: functions sharing a builder use only some of its resources (GET /v1/transfers needs the
    table, not the state machine), and each is given only what it uses.
    """

    _fields: ClassVar[dict[str, _Env]] = {}
    _validators: ClassVar[tuple[Callable[[Any], None], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Collected over the MRO, bases first, by name: a model composing mixins gets every mixin's fields
        # and checks, and a redeclared field (a default made required) replaces the mixin's.
        fields: dict[str, _Env] = {}
        validators: dict[str, Callable[[Any], None]] = {}
        for klass in reversed(cls.__mro__):
            for name, member in vars(klass).items():
                if isinstance(member, _Env):
                    fields[name] = member
                elif callable(member) and getattr(member, _CHECK_MARK, False):
                    validators[name] = member
        cls._fields = fields
        cls._validators = tuple(validators.values())

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(self._fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(sorted(unknown))}")
        for name, field in self._fields.items():
            value = values.get(name, field.default)
            if value is _REQUIRED:
                raise ConfigurationError(f"invalid settings: {field.variable} is not set")
            object.__setattr__(self, name, value)
        for check in self._validators:
            check(self)

    @classmethod
    def load(cls, environ: Mapping[str, str]) -> Self:
        """Validates `environ`; the error names every missing or invalid variable, never its value."""
        values: dict[str, Any] = {}
        problems: list[str] = []
        for name, field in cls._fields.items():
            raw = environ.get(field.variable, "").strip()
            if not raw:
                if field.default is _REQUIRED:
                    problems.append(f"{field.variable} is not set")
                continue
            try:
                values[name] = field.parse(raw)
            except ValueError as exc:
                reason = str(exc)
                # A parser's own words, unless they quote the value (it may be a secret).
                problems.append(f"{field.variable} {reason if raw not in reason else 'is not valid'}")
        if problems:
            raise ConfigurationError("invalid settings: " + "; ".join(problems))
        return cls(**values)

    @classmethod
    def variable(cls, name: str) -> str:
        """The environment variable behind field `name`."""
        return cls._fields[name].variable

    def require(self, name: str) -> str:
        """The value of resource field `name`; ConfigurationError naming its variable when it is not set."""
        value: Any = getattr(self, name)
        if value is None:
            raise ConfigurationError(f"invalid settings: {self.variable(name)} is not set")
        if not isinstance(value, str):
            raise TypeError(f"{type(self).__name__}.{name} is not a resource name")
        return value

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self) or not isinstance(other, EnvSettings):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        shown = (
            f"{name}={getattr(self, name)!r}" for name, field in self._fields.items() if not field.secret
        )
        return f"{type(self).__name__}({', '.join(shown)})"


# ---- deployment ---------------------------------------------------------------------------------------


stage_name = one_of(*get_args(StageName))


class Stage(EnvSettings):
    stage: StageName = env("STAGE", default="local", parse=stage_name)


class Version(EnvSettings):
    # The deploy pipeline may stamp a build id; otherwise the core package's own version.
    version: str = env("VAULTPAY_VERSION", default=vaultpay.__version__)


def _currency_codes(raw: str) -> str:
    codes = [code.strip() for code in raw.split(",") if code.strip()]
    if not codes or not all(len(code) == 3 and code.isascii() and code.isupper() for code in codes):
        raise ValueError("must be comma-separated ISO 4217 codes")
    return ",".join(codes)


class Currencies(EnvSettings):
    # Not a resource name: INR is the only currency the bank books unless a stage enables more.
    enabled_currencies: str = env("ENABLED_CURRENCIES", default="INR", parse=_currency_codes)

    @property
    def currencies(self) -> frozenset[str]:
        return frozenset(self.enabled_currencies.split(","))


# ---- tables -------------------------------------------------------------------------------------------


class AuthTable(EnvSettings):
    auth_table: str | None = env("AUTH_TABLE", default=None)


class RateLimitTable(EnvSettings):
    rate_limit_table: str | None = env("RATE_LIMIT_TABLE", default=None)


class AccountsTable(EnvSettings):
    accounts_table: str | None = env("ACCOUNTS_TABLE", default=None)


class TransfersTable(EnvSettings):
    transfers_table: str | None = env("TRANSFERS_TABLE", default=None)


class FraudTables(EnvSettings):
    fraud_table: str | None = env("FRAUD_TABLE", default=None)
    fraud_counters_table: str | None = env("FRAUD_COUNTERS_TABLE", default=None)


class AuditTable(EnvSettings):
    audit_table: str | None = env("AUDIT_TABLE", default=None)


class WebhooksTable(EnvSettings):
    webhooks_table: str | None = env("WEBHOOKS_TABLE", default=None)


class IdempotencyTable(EnvSettings):
    idempotency_table: str | None = env("IDEMPOTENCY_TABLE", default=None)


class ApiCallsTable(EnvSettings):
    # The per-user API-call counters of the functions behind the authorizer (vaultpay.shared.caller_checks).
    api_calls_table: str | None = env("API_CALLS_TABLE", default=None)


class OutboxTables(EnvSettings):
    # The domain tables (comma-separated) whose outbox items the sweeper owns; none: nothing to sweep.
    outbox_tables: str = env("OUTBOX_TABLES", default="")
    # The relay mappings' on-failure queue, which the sweeper's rescue drains; none: no rescue.
    relay_failures_queue_url: str = env("RELAY_FAILURES_QUEUE_URL", default="")

    @property
    def outbox_table_names(self) -> list[str]:
        return [name.strip() for name in self.outbox_tables.split(",") if name.strip()]


# ---- keys and secrets ---------------------------------------------------------------------------------


class PiiKey(EnvSettings):
    pii_key_id: str | None = env("PII_KEY_ID", default=None)


class WebhookSecretKey(EnvSettings):
    webhook_secret_key_id: str | None = env("WEBHOOK_SECRET_KEY_ID", default=None)


class BlindIndexSecret(EnvSettings):
    blind_index_secret_arn: str | None = env("BLIND_INDEX_SECRET_ARN", default=None)


class AccountNumberKeys(EnvSettings):
    account_number_key_id: str | None = env("ACCOUNT_NUMBER_KEY_ID", default=None)
    account_number_index_secret_arn: str | None = env("ACCOUNT_NUMBER_INDEX_SECRET_ARN", default=None)


class TokenKeys(EnvSettings):
    """The KMS key that signs access tokens (its ARN), and the keys that only verify (comma-separated ARNs,
    during a rotation; may be empty)."""

    token_signing_key_id: str | None = env("TOKEN_SIGNING_KEY_ID", default=None)
    token_verify_key_ids: str = env("TOKEN_VERIFY_KEY_IDS", default="")

    @property
    def verify_key_ids(self) -> tuple[str, ...]:
        return tuple(key.strip() for key in self.token_verify_key_ids.split(",") if key.strip())


class TokenClaims(EnvSettings):
    token_issuer: str | None = env("TOKEN_ISSUER", default=None)
    token_audience: str | None = env("TOKEN_AUDIENCE", default=None)


# ---- other functions ----------------------------------------------------------------------------------


class LambdaFunctionName(EnvSettings):
    # Set by the Lambda runtime; names the function's NATS connection in the server's monitoring.
    function_name: str = env("AWS_LAMBDA_FUNCTION_NAME", default="local")

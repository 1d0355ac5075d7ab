"""Settings: validated from the environment at first use, failing loudly and without echoing values."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaultpay import bootstrap
from vaultpay.bootstrap.settings import AuditSettings, CheckpointSettings, HealthSettings, health_settings
from vaultpay.shared.errors import ConfigurationError
from vaultpay.shared.settings import AccountsTable, Currencies, EnvSettings, RateLimitTable, env, validator

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]

VALID = {"STAGE": "local", "NATS_URL": "nats://127.0.0.1:4222"}


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    bootstrap.reset()
    yield
    bootstrap.reset()


# ---- a function's model (the health function's) -------------------------------------------------------


def test_a_complete_environment_gives_typed_settings() -> None:
    settings = HealthSettings.load({**VALID, "VAULTPAY_VERSION": "1.2.3-abc", "UNRELATED": "x"})
    assert settings.stage == "local"
    assert settings.nats_url == "nats://127.0.0.1:4222"
    assert settings.nats.servers == ("nats://127.0.0.1:4222",)
    assert settings.version == "1.2.3-abc"


def test_the_version_defaults_to_the_core_package_version() -> None:
    import vaultpay

    assert HealthSettings.load(VALID).version == vaultpay.__version__


def test_missing_variables_are_named_in_one_clear_error() -> None:
    with pytest.raises(ConfigurationError) as caught:
        HealthSettings.load({})
    assert "STAGE is not set" in str(caught.value)
    assert "NATS_URL is not set" in str(caught.value)


def test_an_invalid_value_is_refused_without_repeating_it() -> None:
    with pytest.raises(ConfigurationError) as caught:
        HealthSettings.load({**VALID, "NATS_URL": "http://user:s3cret@nats:4222"})
    assert "NATS_URL" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_an_unknown_stage_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="STAGE"):
        HealthSettings.load({**VALID, "STAGE": "staging"})


def test_settings_are_read_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGE", "dev")
    monkeypatch.setenv("NATS_URL", "tls://nats.internal:4222")
    first = health_settings()
    monkeypatch.setenv("STAGE", "prod")
    assert health_settings() is first
    assert first.stage == "dev"


def test_reset_forgets_the_settings_so_the_next_use_reads_the_environment_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given settings read once
    monkeypatch.setenv("STAGE", "dev")
    monkeypatch.setenv("NATS_URL", "tls://nats.internal:4222")
    first = health_settings()
    # When the environment changes and the process's caches are reset
    monkeypatch.setenv("STAGE", "prod")
    bootstrap.reset()
    # Then the next use reads it again
    assert health_settings() is not first
    assert health_settings().stage == "prod"


# ---- the mixins ---------------------------------------------------------------------------------------


class TableAndCurrencies(AccountsTable, RateLimitTable, Currencies):
    """A model composed as a function's is: one mixin per resource."""


def test_a_composed_model_reads_each_mixins_variables() -> None:
    settings = TableAndCurrencies.load(
        {"ACCOUNTS_TABLE": "Accounts", "RATE_LIMIT_TABLE": "Limits", "ENABLED_CURRENCIES": "INR, USD"}
    )
    assert settings.require("accounts_table") == "Accounts"
    assert settings.require("rate_limit_table") == "Limits"
    assert settings.currencies == frozenset({"INR", "USD"})


@pytest.mark.parametrize("value", [None, "", "   "])
def test_a_missing_or_blank_resource_fails_at_first_use_naming_its_variable(value: str | None) -> None:
    # Given an environment without the table (absent, empty, or blank as a template may render it)
    environ = {} if value is None else {"ACCOUNTS_TABLE": value}
    settings = TableAndCurrencies.load(environ)  # the other functions of the family need not have it
    # When the table is needed, Then the error names the variable
    with pytest.raises(ConfigurationError, match="invalid settings: ACCOUNTS_TABLE is not set"):
        settings.require("accounts_table")


def test_a_validator_written_once_in_its_mixin_applies_to_every_model_that_composes_it() -> None:
    with pytest.raises(ConfigurationError, match="ENABLED_CURRENCIES must be comma-separated ISO 4217 codes"):
        TableAndCurrencies.load({"ENABLED_CURRENCIES": "rupees"})


def test_a_blank_optional_value_takes_its_default() -> None:
    assert TableAndCurrencies.load({"ENABLED_CURRENCIES": " "}).currencies == frozenset({"INR"})
    assert CheckpointSettings.load({"AUDIT_CHECKPOINT_RETENTION_DAYS": ""}).checkpoint_retention_days == 365


def test_a_required_field_blank_is_as_missing_as_absent() -> None:
    class Required(EnvSettings):
        region: str = env("SOME_REGION")

    with pytest.raises(ConfigurationError, match="SOME_REGION is not set"):
        Required.load({"SOME_REGION": "  "})


def test_an_invalid_value_names_the_variable_and_never_the_value() -> None:
    with pytest.raises(ConfigurationError) as caught:
        CheckpointSettings.load({"AUDIT_CHECKPOINT_RETENTION_DAYS": "9999999"})
    assert "AUDIT_CHECKPOINT_RETENTION_DAYS" in str(caught.value)
    assert "9999999" not in str(caught.value)


def test_a_checkpoint_bucket_without_its_signing_key_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigurationError, match="AUDIT_CHECKPOINT_KEY_ID is not set"):
        CheckpointSettings.load({"AUDIT_CHECKPOINT_BUCKET": "checkpoints"})


def test_a_custom_validator_in_a_mixin_reports_under_the_variable_name() -> None:
    def unprivileged_port(raw: str) -> int:
        if not raw.isdigit() or int(raw) < 1024:
            raise ValueError("must be 1024 or above")
        return int(raw)

    class Port(EnvSettings):
        port: int = env("SOME_PORT", default=8080, parse=unprivileged_port)

    with pytest.raises(ConfigurationError, match="SOME_PORT must be 1024 or above"):
        Port.load({"SOME_PORT": "22"})
    assert Port.load({"SOME_PORT": "4222"}).port == 4222
    assert Port.load({}).port == 8080


def _in_a_fresh_interpreter(code: str, without: tuple[str, ...] = ()) -> str:
    """The output of `code` run by a new interpreter on this tree's core layer, without `without` set."""
    env = {k: v for k, v in os.environ.items() if k not in (*without, "PYTHONPATH")}
    done = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "layers" / "core")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_settings_are_validated_at_first_use_not_at_import() -> None:
    # Given a fresh interpreter and an environment without AUDIT_TABLE or NATS_URL
    code = (
        "import sys; sys.path[:0] = [sys.argv[1]]\n"
        "from vaultpay.bootstrap import audit, events, fraud\n"
        "print(sorted(m for m in ('pydantic', 'vaultpay.bootstrap.settings') if m in sys.modules))\n"
        "try:\n"
        "    audit.audit_store()\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    # When the composition root's modules are imported, and then a builder is called
    imported, failure = _in_a_fresh_interpreter(code, without=("AUDIT_TABLE", "NATS_URL")).splitlines()
    # Then importing read nothing (not even pydantic), and the first use failed naming the variable
    assert imported == "[]"
    assert failure == "ConfigurationError invalid settings: AUDIT_TABLE is not set"


def test_every_function_family_model_loads_from_an_empty_environment_except_where_it_must_not() -> None:
    # Resource names are checked when used; only the models that connect at once (NATS) refuse an empty one
    assert AuditSettings.load({}).audit_table is None
    with pytest.raises(ConfigurationError, match="NATS_URL is not set"):
        HealthSettings.load({"STAGE": "local"})


def test_no_function_imports_pydantic_to_read_its_settings() -> None:
    # Given a fresh interpreter and, for each function family, the smallest environment it accepts
    code = (
        "import sys; sys.path[:0] = [sys.argv[1]]\n"
        "import os\n"
        "from vaultpay.bootstrap import settings\n"
        "from vaultpay.shared.settings import IdempotencyTable\n"
        "os.environ.update(NATS_URL='nats://127.0.0.1:4222', STAGE='local', AUTH_TABLE='Auth',\n"
        "    RATE_LIMIT_TABLE='Limits', TOKEN_SIGNING_KEY_ID='key', TOKEN_ISSUER='iss',\n"
        "    TOKEN_AUDIENCE='aud')\n"
        "readers = [getattr(settings, name) for name in dir(settings) if name.endswith('_settings')]\n"
        "read = [type(reader()).__name__ for reader in readers]\n"
        "IdempotencyTable.load(os.environ)\n"
        "print(len(read), 'pydantic' in sys.modules)\n"
    )
    # When every family's settings are read
    output = _in_a_fresh_interpreter(code)
    # Then all thirteen were read and none of them loaded pydantic
    assert output.split() == ["13", "False"]


def test_an_integer_that_is_not_one_is_refused_without_repeating_it() -> None:
    with pytest.raises(
        ConfigurationError, match="AUDIT_CHECKPOINT_RETENTION_DAYS must be an integer"
    ) as caught:
        CheckpointSettings.load({"AUDIT_CHECKPOINT_RETENTION_DAYS": "forever"})
    assert "forever" not in str(caught.value)


def test_a_parser_that_quotes_the_value_is_not_repeated() -> None:
    class Token(EnvSettings):
        token: int = env("SOME_TOKEN", default=0, parse=int)  # int's own message quotes its input

    with pytest.raises(ConfigurationError, match="SOME_TOKEN is not valid") as caught:
        Token.load({"SOME_TOKEN": "s3cret"})
    assert "s3cret" not in str(caught.value)


def test_a_mixins_validator_runs_for_every_model_that_composes_it() -> None:
    # Given a mixin with a check of its own, composed into a model with another mixin
    class Bucket(EnvSettings):
        bucket: str | None = env("SOME_BUCKET", default=None)
        bucket_key: str | None = env("SOME_BUCKET_KEY", default=None)

        @validator
        def _key_with_bucket(self) -> None:
            if self.bucket:
                self.require("bucket_key")

    class Composed(AccountsTable, Bucket):
        """A family model."""

    # When it is read without the key, Then the mixin's check refuses it, naming the variable
    with pytest.raises(ConfigurationError, match="invalid settings: SOME_BUCKET_KEY is not set"):
        Composed.load({"SOME_BUCKET": "b", "ACCOUNTS_TABLE": "Accounts"})
    assert Composed.load({"ACCOUNTS_TABLE": "Accounts"}).require("accounts_table") == "Accounts"


def test_a_model_may_make_a_mixins_optional_variable_required() -> None:
    assert HealthSettings.variable("stage") == "STAGE"
    with pytest.raises(ConfigurationError, match="STAGE is not set"):
        HealthSettings.load({"NATS_URL": "nats://127.0.0.1:4222"})
    assert AuditSettings.variable("audit_table") == "AUDIT_TABLE"


def test_settings_are_frozen_values_that_never_show_a_secret() -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    settings = HealthSettings.load({**VALID, "NATS_TLS_CA": pem})
    with pytest.raises(AttributeError):
        settings.stage = "prod"  # type: ignore[misc]
    assert settings == HealthSettings.load({**VALID, "NATS_TLS_CA": pem})
    assert "CERTIFICATE" not in repr(settings)
    assert "nats_url='nats://127.0.0.1:4222'" in repr(settings)

"""Settings: validated from the environment at first use, failing loudly and without echoing values."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import Field, field_validator

from vaultpay import bootstrap
from vaultpay.bootstrap.settings import AuditSettings, CheckpointSettings, HealthSettings, health_settings
from vaultpay.shared.errors import ConfigurationError
from vaultpay.shared.settings import AccountsTable, Currencies, EnvSettings, RateLimitTable

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
        region: str = Field(alias="SOME_REGION")

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
    class Port(EnvSettings):
        port: int = Field(alias="SOME_PORT", default=80)

        @field_validator("port")
        @classmethod
        def _unprivileged(cls, value: int) -> int:
            if value < 1024:
                raise ValueError("must be 1024 or above")
            return value

    with pytest.raises(ConfigurationError, match="SOME_PORT must be 1024 or above"):
        Port.load({"SOME_PORT": "22"})


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
    env = {k: v for k, v in os.environ.items() if k not in ("AUDIT_TABLE", "NATS_URL", "PYTHONPATH")}
    # When the composition root's modules are imported, and then a builder is called
    done = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "layers" / "core")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    imported, failure = done.stdout.strip().splitlines()
    # Then importing read nothing (not even pydantic), and the first use failed naming the variable
    assert imported == "[]"
    assert failure == "ConfigurationError invalid settings: AUDIT_TABLE is not set"


def test_every_function_family_model_loads_from_an_empty_environment_except_where_it_must_not() -> None:
    # Resource names are checked when used; only the models that connect at once (NATS) refuse an empty one
    assert AuditSettings.load({}).audit_table is None
    with pytest.raises(ConfigurationError, match="NATS_URL is not set"):
        HealthSettings.load({"STAGE": "local"})

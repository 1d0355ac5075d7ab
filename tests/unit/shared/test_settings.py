"""Settings: validated from the environment at first use, failing loudly and without echoing values."""

import pytest

from vaultpay.shared.errors import ConfigurationError
from vaultpay.shared.settings import get_settings, load_settings

pytestmark = pytest.mark.unit

VALID = {"STAGE": "local", "NATS_URL": "nats://127.0.0.1:4222"}


def test_a_complete_environment_gives_typed_settings() -> None:
    settings = load_settings({**VALID, "VAULTPAY_VERSION": "1.2.3-abc", "UNRELATED": "x"})
    assert settings.stage == "local"
    assert settings.nats_url == "nats://127.0.0.1:4222"
    assert settings.version == "1.2.3-abc"


def test_the_version_defaults_to_the_core_package_version() -> None:
    import vaultpay

    assert load_settings(VALID).version == vaultpay.__version__


def test_missing_variables_are_named_in_one_clear_error() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({})
    assert "STAGE is not set" in str(caught.value)
    assert "NATS_URL is not set" in str(caught.value)


def test_an_invalid_value_is_refused_without_repeating_it() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({**VALID, "NATS_URL": "http://user:s3cret@nats:4222"})
    assert "NATS_URL" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_an_unknown_stage_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="STAGE"):
        load_settings({**VALID, "STAGE": "staging"})


def test_settings_are_read_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("STAGE", "dev")
    monkeypatch.setenv("NATS_URL", "tls://nats.internal:4222")
    try:
        first = get_settings()
        monkeypatch.setenv("STAGE", "prod")
        assert get_settings() is first
        assert first.stage == "dev"
    finally:
        get_settings.cache_clear()

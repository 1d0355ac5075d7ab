"""The identity service's composition: settings that fail loudly when needed, and nothing built before use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vaultpay import bootstrap
from vaultpay.bootstrap import auth
from vaultpay.bootstrap.settings import AuthSettings, HealthSettings
from vaultpay.shared import aws
from vaultpay.shared.errors import ConfigurationError

pytestmark = pytest.mark.unit

ENVIRONMENT = {
    "AUTH_TABLE": "vaultpay-local-AuthTable",
    "RATE_LIMIT_TABLE": "vaultpay-local-AuthRateLimitTable",
    "PII_KEY_ID": "alias/vaultpay-local-pii",
    "BLIND_INDEX_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:000000000000:secret:blind-index",
    "TOKEN_SIGNING_KEY_ID": "arn:aws:kms:us-east-1:000000000000:key/6f9b1c2e-0000-4000-8000-00000000a1a1",
    "TOKEN_ISSUER": "https://auth.vaultpay.dev/local",
    "TOKEN_AUDIENCE": "vaultpay-api",
}


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from vaultpay.auth import store

    bootstrap.reset()
    store._models.cache_clear()
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    yield
    bootstrap.reset()
    store._models.cache_clear()


def test_building_the_service_reads_settings_but_touches_no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    from vaultpay.auth import store

    # Given a complete environment
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    # When the service is built
    service = auth.auth_service()
    # Then no client was made and no model bound: a cold start pays for those only when a request needs them
    assert aws.aws_client.cache_info().currsize == 0
    assert store._models.cache_info().currsize == 0
    # And a warm Lambda reuses the same service
    assert auth.auth_service() is service


# The signing key is read at the first signature (only MFA verify and refresh sign): tested on its own below.
@pytest.mark.parametrize("missing", sorted(set(ENVIRONMENT) - {"TOKEN_SIGNING_KEY_ID"}))
def test_a_missing_setting_fails_at_first_use_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    for name, value in ENVIRONMENT.items():
        if name != missing:
            monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=f"{missing} is not set"):
        auth.auth_service()


def test_a_blank_setting_is_as_missing_as_an_absent_one() -> None:
    auth = AuthSettings.load({**ENVIRONMENT, "AUTH_TABLE": "   "})
    with pytest.raises(ConfigurationError, match="AUTH_TABLE is not set"):
        auth.require("auth_table")
    assert auth.require("rate_limit_table") == "vaultpay-local-AuthRateLimitTable"


def test_a_missing_signing_key_fails_at_the_first_signature_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in ENVIRONMENT.items():
        if name != "TOKEN_SIGNING_KEY_ID":
            monkeypatch.setenv(name, value)
    signer = auth.token_signer
    with pytest.raises(ConfigurationError, match="TOKEN_SIGNING_KEY_ID is not set"):
        signer()


def test_the_jwks_function_needs_only_the_token_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN_SIGNING_KEY_ID", ENVIRONMENT["TOKEN_SIGNING_KEY_ID"])
    assert auth.token_public_keys() is auth.token_public_keys()
    assert aws.aws_client.cache_info().currsize == 0  # no KMS call until a key is needed


def test_functions_without_identity_settings_are_unaffected() -> None:
    # The health function has no auth variables: its own settings still load, and nothing asks for these.
    assert HealthSettings.load({"STAGE": "local", "NATS_URL": "nats://127.0.0.1:4222"}).stage == "local"
    assert AuthSettings.load({}).auth_table is None

"""The secret cache: one read per TTL, rotation picked up after it, errors translated without the value."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from vaultpay.shared.errors import ConfigurationError, TransientError
from vaultpay.shared.secrets import SecretCache

pytestmark = pytest.mark.unit


class FakeSecrets:
    def __init__(self) -> None:
        self.value = "v1"
        self.calls = 0
        self.error: str | None = None

    def get_secret_value(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "x"}}, "GetSecretValue")
        return {"SecretString": self.value}


def test_a_secret_is_read_once_per_ttl_and_rotation_is_seen_after_it() -> None:
    now = [0.0]
    fake = FakeSecrets()
    cache = SecretCache(fake, ttl_s=60, clock=lambda: now[0])
    assert cache.get("arn:s") == "v1"
    fake.value = "v2"
    now[0] = 59
    assert cache.get("arn:s") == "v1"
    assert fake.calls == 1
    now[0] = 61
    assert cache.get("arn:s") == "v2"


def test_a_missing_secret_is_a_configuration_error_and_throttling_is_transient() -> None:
    fake = FakeSecrets()
    fake.error = "ResourceNotFoundException"
    with pytest.raises(ConfigurationError):
        SecretCache(fake).get("arn:s")
    fake.error = "ThrottlingException"
    with pytest.raises(TransientError):
        SecretCache(fake).get("arn:s")

"""The Secrets Manager cache every secret-backed adapter of a process shares."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vaultpay.shared.lazy import LazyProxy, cached

if TYPE_CHECKING:
    from vaultpay.shared.secrets import SecretCache

# Secrets are read by people waiting on a screen (a login, an account lookup): short timeouts, quick retries.
SECRETS_AWS_TIMEOUT_S = 2.0
SECRETS_AWS_ATTEMPTS = 3


@cached
def secret_cache() -> SecretCache:
    """Secrets Manager values, shared by every secret-backed piece of the process."""
    from vaultpay.shared.aws import aws_client
    from vaultpay.shared.secrets import SecretCache

    return SecretCache(
        LazyProxy(
            lambda: aws_client(
                "secretsmanager", timeout_s=SECRETS_AWS_TIMEOUT_S, max_attempts=SECRETS_AWS_ATTEMPTS
            )
        )
    )

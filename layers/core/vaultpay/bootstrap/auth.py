"""The identity functions' composition: the auth service, the token signer and the public keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vaultpay.bootstrap.secrets import secret_cache
from vaultpay.shared.lazy import LazyProxy, cached

if TYPE_CHECKING:
    from vaultpay.auth.adapters import KmsPublicKeys
    from vaultpay.auth.service import AuthService
    from vaultpay.auth.tokens import TokenSigner

# The identity functions answer people waiting on a login screen: short timeouts, a few quick retries.
AUTH_AWS_TIMEOUT_S = 2.0
AUTH_AWS_ATTEMPTS = 3


def _client(service: str) -> LazyProxy:
    from vaultpay.shared.aws import aws_client

    return LazyProxy(
        lambda: aws_client(service, timeout_s=AUTH_AWS_TIMEOUT_S, max_attempts=AUTH_AWS_ATTEMPTS)
    )


def token_signer() -> TokenSigner:
    """`kms:Sign` with the access-token key (TOKEN_SIGNING_KEY_ID): the private key never leaves KMS."""
    from vaultpay.auth.adapters import KmsTokenSigner
    from vaultpay.bootstrap.settings import auth_settings

    return KmsTokenSigner(_client("kms"), auth_settings().require("token_signing_key_id"))


@cached
def token_public_keys() -> KmsPublicKeys:
    """The verification keys (signing + verify-only), public halves from `kms:GetPublicKey`, and the JWKS."""
    from vaultpay.auth.adapters import KmsPublicKeys
    from vaultpay.bootstrap.settings import auth_settings

    settings = auth_settings()
    signing = settings.require("token_signing_key_id")
    return KmsPublicKeys(_client("kms"), (signing, *settings.verify_key_ids))


@cached
def auth_service() -> AuthService:
    """The identity service with its real adapters, built on first use: one set per warm Lambda."""
    from vaultpay.auth.adapters import DeferredSigner
    from vaultpay.auth.service import AuthService
    from vaultpay.auth.store import DynamoAuthStore
    from vaultpay.bootstrap.settings import auth_settings
    from vaultpay.shared import passwords
    from vaultpay.shared.fieldcrypt import (
        TOTP_KEY_CONTEXT,
        FieldCipher,
        KmsKeyProvider,
        WithLegacyDecryption,
    )
    from vaultpay.shared.ratelimit import RateLimiter
    from vaultpay.shared.ratelimit_store import DynamoDBCounterStore
    from vaultpay.shared.secrets import BlindIndexFromSecret

    settings = auth_settings()
    store = DynamoAuthStore(settings.require("auth_table"))
    pii_key = settings.require("pii_key_id")
    pii = FieldCipher(KmsKeyProvider(_client("kms"), pii_key))
    # The counters use the store's own DynamoDB client: a second one would cost its cold start again.
    counters = DynamoDBCounterStore(LazyProxy(store.dynamodb_client), settings.require("rate_limit_table"))
    return AuthService(
        store=store,
        cipher=pii,
        totp_cipher=WithLegacyDecryption(
            FieldCipher(KmsKeyProvider(_client("kms"), pii_key), key_context=TOTP_KEY_CONTEXT), pii
        ),
        index=BlindIndexFromSecret(secret_cache(), settings.require("blind_index_secret_arn")),
        passwords=passwords,
        signer=DeferredSigner(token_signer),
        limiter=RateLimiter(counters),
        issuer=settings.require("token_issuer"),
        audience=settings.require("token_audience"),
    )

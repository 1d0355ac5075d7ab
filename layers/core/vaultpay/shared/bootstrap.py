"""The composition root: the only place that wires adapters (AWS, NATS) to the services' ports."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vaultpay.shared.observability import get_logger
from vaultpay.shared.settings import get_accounts_settings, get_auth_settings, get_settings

if TYPE_CHECKING:
    from vaultpay.accounts.service import AccountsService
    from vaultpay.auth.kms_keys import KmsPublicKeys
    from vaultpay.auth.service import AuthService
    from vaultpay.auth.tokens import TokenSigner
    from vaultpay.ops.health import HealthService
    from vaultpay.shared.secrets import SecretCache
    from vaultpay.transfers.service import TransfersService

# The identity functions answer people waiting on a login screen: short timeouts, a few quick retries.
AUTH_AWS_TIMEOUT_S = 2.0
AUTH_AWS_ATTEMPTS = 3

# Each health check gets one attempt with this deadline: a health probe must answer fast, and a retry
# would only hide a slow dependency.
HEALTH_CHECK_TIMEOUT_S = 1.0


@functools.cache
def health_service() -> HealthService:
    """The health service with its real checks, built on first use: one set of clients per process."""
    from vaultpay.ops.checks import DynamoDBCheck, NatsCheck, StepFunctionsCheck
    from vaultpay.ops.health import HealthService
    from vaultpay.shared.aws import aws_client

    settings = get_settings()
    timeout_s = HEALTH_CHECK_TIMEOUT_S
    from vaultpay.events.jetstream import NatsSettings, credentials_from, login_options

    nats = NatsSettings.from_environ(os.environ)
    # The health function's own login, read at each check (a rotated password reaches the next one).
    nats_options = functools.partial(login_options, credentials_from(nats), nats.tls_options())

    return HealthService(
        [
            DynamoDBCheck(aws_client("dynamodb", timeout_s=timeout_s, max_attempts=1)),
            StepFunctionsCheck(aws_client("stepfunctions", timeout_s=timeout_s, max_attempts=1)),
            NatsCheck(nats.servers, timeout_s=timeout_s, connect_options=nats_options),
        ],
        version=settings.version,
        timeout_s=timeout_s,
        log=get_logger(),
    )


class _LazyClient:
    """An AWS client made at its first call: a function that never calls the service never pays for the
    client (each costs 50-100 ms of a cold start, most of it loading botocore's service model)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make

    def __getattr__(self, name: str) -> Any:
        return getattr(self._make(), name)


def _auth_client(service: str) -> _LazyClient:
    from vaultpay.shared.aws import aws_client

    return _LazyClient(
        lambda: aws_client(service, timeout_s=AUTH_AWS_TIMEOUT_S, max_attempts=AUTH_AWS_ATTEMPTS)
    )


@functools.cache
def secret_cache() -> SecretCache:
    """Secrets Manager values, shared by every secret-backed piece of the process."""
    from vaultpay.shared.secrets import SecretCache

    return SecretCache(_auth_client("secretsmanager"))


class _DeferredSigner:
    """The access-token signer, made at the first signature: of the identity functions only MFA verify and
    refresh sign (and only they are given the key and `kms:Sign`)."""

    def __init__(self, make: Callable[[], TokenSigner]) -> None:
        self._make = make

    @functools.cached_property
    def _signer(self) -> TokenSigner:
        return self._make()

    def signing_kid(self) -> str:
        return self._signer.signing_kid()

    def sign(self, signing_input: bytes) -> bytes:
        return self._signer.sign(signing_input)


def token_signer() -> TokenSigner:
    """`kms:Sign` with the access-token key (TOKEN_SIGNING_KEY_ID): the private key never leaves KMS."""
    from vaultpay.auth.kms_keys import KmsTokenSigner

    return KmsTokenSigner(_auth_client("kms"), get_auth_settings().require("token_signing_key_id"))


@functools.cache
def token_public_keys() -> KmsPublicKeys:
    """The verification keys (signing + verify-only), public halves from `kms:GetPublicKey`, and the JWKS."""
    from vaultpay.auth.kms_keys import KmsPublicKeys, parse_key_ids

    settings = get_auth_settings()
    signing = settings.require("token_signing_key_id")
    return KmsPublicKeys(_auth_client("kms"), (signing, *parse_key_ids(settings.token_verify_key_ids)))


@functools.cache
def auth_service() -> AuthService:
    """The identity service with its real adapters, built on first use: one set per warm Lambda."""
    from vaultpay.auth.service import AuthService
    from vaultpay.auth.store import DynamoAuthStore
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

    settings = get_auth_settings()
    store = DynamoAuthStore(settings.require("auth_table"))
    pii_key = settings.require("pii_key_id")
    pii = FieldCipher(KmsKeyProvider(_auth_client("kms"), pii_key))
    # The counters use the store's own DynamoDB client: a second one would cost its cold start again.
    counters = DynamoDBCounterStore(_LazyClient(store.dynamodb_client), settings.require("rate_limit_table"))
    return AuthService(
        store=store,
        cipher=pii,
        totp_cipher=WithLegacyDecryption(
            FieldCipher(KmsKeyProvider(_auth_client("kms"), pii_key), key_context=TOTP_KEY_CONTEXT), pii
        ),
        index=BlindIndexFromSecret(secret_cache(), settings.require("blind_index_secret_arn")),
        passwords=passwords,
        signer=_DeferredSigner(token_signer),
        limiter=RateLimiter(counters),
        issuer=settings.require("token_issuer"),
        audience=settings.require("token_audience"),
    )


# The ledger answers the saga and people at a screen alike: a short deadline, and the ledger's own retry loop
# (re-read and re-plan) rather than botocore's, which would resend a transaction planned on a stale read.
ACCOUNTS_AWS_TIMEOUT_S = 2.0
ACCOUNTS_AWS_ATTEMPTS = 3


@functools.cache
def accounts_service() -> AccountsService:
    """The accounts service with its real adapters, built on first use: one set per warm Lambda."""
    from vaultpay.accounts.service import AccountsService
    from vaultpay.accounts.store import DynamoLedgerStore
    from vaultpay.shared.aws import aws_client
    from vaultpay.shared.fieldcrypt import FieldCipher, KmsKeyProvider
    from vaultpay.shared.secrets import BlindIndexFromSecret

    settings = get_accounts_settings()

    def client(service: str) -> _LazyClient:
        return _LazyClient(
            lambda: aws_client(service, timeout_s=ACCOUNTS_AWS_TIMEOUT_S, max_attempts=ACCOUNTS_AWS_ATTEMPTS)
        )

    return AccountsService(
        store=DynamoLedgerStore(client("dynamodb"), settings.require("accounts_table")),
        cipher=FieldCipher(
            KmsKeyProvider(client("kms"), settings.require("account_number_key_id")),
            key_context={"app": "vaultpay", "purpose": "account_number"},
        ),
        index=BlindIndexFromSecret(secret_cache(), settings.require("account_number_index_secret_arn")),
        currencies=settings.currencies,
        deposit_approval_threshold=settings.deposit_approval_threshold,
    )


# POST /v1/transfers waits on accounts' resolver (a Lambda that may be cold) and on StartExecution: a
# longer deadline than the table's, and one retry only, since the client retries with its Idempotency-Key.
TRANSFERS_AWS_TIMEOUT_S = 2.0
TRANSFERS_INVOKE_TIMEOUT_S = 6.0
TRANSFERS_AWS_ATTEMPTS = 2


@functools.cache
def transfers_service() -> TransfersService:
    """The transfers service with its real adapters, built on first use; each resource name is read only
    when its adapter is first used, so GET (the table only) needs no resolver or state machine."""
    from vaultpay.shared.aws import aws_client
    from vaultpay.shared.ratelimit import RateLimiter
    from vaultpay.shared.ratelimit_store import DynamoDBCounterStore
    from vaultpay.shared.settings import get_transfers_settings
    from vaultpay.transfers.adapters import LambdaPartyResolver, StepFunctionsSagaStarter
    from vaultpay.transfers.service import TransfersService
    from vaultpay.transfers.store import DynamoTransferStore

    settings = get_transfers_settings()

    def client(service: str, timeout_s: float = TRANSFERS_AWS_TIMEOUT_S) -> _LazyClient:
        return _LazyClient(
            lambda: aws_client(service, timeout_s=timeout_s, max_attempts=TRANSFERS_AWS_ATTEMPTS)
        )

    class _Lazy:
        """An adapter made at its first call, so a function is told only of the resources it uses."""

        def __init__(self, make: Callable[[], Any]) -> None:
            self._make = functools.cache(make)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._make(), name)

    dynamodb = client("dynamodb")
    limiter: Any = _Lazy(
        lambda: RateLimiter(DynamoDBCounterStore(dynamodb, settings.require("rate_limit_table")))
    )
    return TransfersService(
        store=DynamoTransferStore(dynamodb, settings.require("transfers_table")),
        parties=_Lazy(
            lambda: LambdaPartyResolver(
                client("lambda", TRANSFERS_INVOKE_TIMEOUT_S), settings.require("resolve_parties_function")
            )
        ),
        saga=_Lazy(
            lambda: StepFunctionsSagaStarter(
                client("stepfunctions"), settings.require("transfer_state_machine_arn")
            )
        ),
        currencies=settings.currencies,
        limiter=limiter,
    )

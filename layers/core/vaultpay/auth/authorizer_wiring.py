"""The authorizer's composition, built once per warm Lambda: secret-backed keys, DynamoDB counters, outbox."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vaultpay.auth.authorizer import Authorizer, AuthorizerRequest
from vaultpay.shared.errors import ConcurrentModification, ConfigurationError, TransientError, Unauthorized
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.observability import bind_log_keys, get_logger

if TYPE_CHECKING:
    from vaultpay.shared.secrets import SecretCache

# Every protected request waits on these calls: one quick retry, then fail (API Gateway answers 500).
_AWS_TIMEOUT_S = 1.0
_AWS_ATTEMPTS = 2


@dataclass(frozen=True, slots=True)
class AuthorizerSettings:
    """The authorizer's environment. A plain dataclass rather than the pydantic settings model: pydantic
    would add ~100 ms to the cold start of a function that every protected request waits for."""

    auth_table: str
    rate_limit_table: str
    signing_keys_secret_arn: str
    token_issuer: str
    token_audience: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> AuthorizerSettings:
        names = {
            "auth_table": "AUTH_TABLE",
            "rate_limit_table": "RATE_LIMIT_TABLE",
            "signing_keys_secret_arn": "SIGNING_KEYS_SECRET_ARN",
            "token_issuer": "TOKEN_ISSUER",
            "token_audience": "TOKEN_AUDIENCE",
        }
        missing = [variable for variable in names.values() if not environ.get(variable, "").strip()]
        if missing:
            raise ConfigurationError("invalid settings: " + "; ".join(f"{m} is not set" for m in missing))
        return cls(**{field: environ[variable].strip() for field, variable in names.items()})


class SecretVerificationKeys:
    """The public keys of the signing-key secret, read through the SecretCache (so a rotation arrives
    within its TTL) and parsed again only when the document changes: parsing loads PEM keys."""

    def __init__(self, secrets: SecretCache, secret_id: str) -> None:
        self._secrets = secrets
        self._secret_id = secret_id
        self._lock = threading.Lock()
        self._document: str | None = None
        self._keys: Mapping[str, Any] = {}

    def public_keys_by_kid(self) -> Mapping[str, Any]:
        from vaultpay.auth.tokens import SigningKeySet

        document = self._secrets.get(self._secret_id)
        with self._lock:
            if document != self._document:
                # Only the public halves are kept: the verifier never needs a private key after parsing.
                self._keys = SigningKeySet.from_secret(document).public_keys_by_kid()
                self._document = document
            return self._keys


class DynamoDBOutboxWriter:
    """Writes an event as an outbox item (vaultpay.shared.outbox) into a domain table, for the relay."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def write(self, event: DomainEvent) -> None:
        # Imported on the first event only: the outbox module loads PynamoDB, which no allowed request needs.
        from boto3.dynamodb.types import TypeSerializer
        from botocore.exceptions import BotoCoreError, ClientError

        from vaultpay.shared.outbox import outbox_attributes

        serializer = TypeSerializer()
        item = {name: serializer.serialize(value) for name, value in outbox_attributes(event).items()}
        try:
            self._client.put_item(
                TableName=self._table,
                Item=item,
                # An event id is written once; a retried call must not overwrite what the relay marked.
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                raise ConcurrentModification(f"outbox event {event.id} already exists") from exc
            if code in ("ResourceNotFoundException", "AccessDeniedException", "ValidationException"):
                raise ConfigurationError(f"outbox table {self._table} cannot be written: {code}") from exc
            raise TransientError(f"DynamoDB failed: {code}") from exc
        except BotoCoreError as exc:
            raise TransientError("DynamoDB is unreachable") from exc


@functools.cache
def authorizer() -> Authorizer:
    """The process's authorizer, built on first use and reused by a warm Lambda."""
    from vaultpay.shared.aws import aws_client
    from vaultpay.shared.ratelimit_store import DynamoDBCounterStore
    from vaultpay.shared.secrets import SecretCache

    settings = AuthorizerSettings.from_environ(os.environ)
    dynamodb = aws_client("dynamodb", timeout_s=_AWS_TIMEOUT_S, max_attempts=_AWS_ATTEMPTS)
    secrets = SecretCache(aws_client("secretsmanager", timeout_s=_AWS_TIMEOUT_S, max_attempts=_AWS_ATTEMPTS))
    return Authorizer(
        keys=SecretVerificationKeys(secrets, settings.signing_keys_secret_arn),
        counters=DynamoDBCounterStore(dynamodb, settings.rate_limit_table),
        outbox=DynamoDBOutboxWriter(dynamodb, settings.auth_table),
        issuer=settings.token_issuer,
        audience=settings.token_audience,
    )


def authorize(event: Mapping[str, Any]) -> dict[str, Any]:
    """The authorizer's answer to one REQUEST event; raises Unauthorized for an unauthenticated caller."""
    request = AuthorizerRequest.from_event(event)
    bind_log_keys(correlation_id=request.correlation_id)
    log = get_logger()
    try:
        decision = authorizer().decide(request)
    except Unauthorized as exc:
        # The code says why (invalid_token, token_expired); the token itself is never logged.
        log.info("request unauthenticated", extra={"code": exc.code, "route": request.resource})
        raise
    bind_log_keys(user_id=decision.principal_id)
    if not decision.allow:
        log.info("request denied", extra={"code": decision.context.get("code"), "route": request.resource})
    elif decision.auth_error:
        log.info("request soft-denied", extra={"auth_error": decision.auth_error, "route": request.resource})
    return decision.response()

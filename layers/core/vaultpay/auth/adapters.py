"""Identity adapters beside the store: the session check and outbox writer of the authorizer, the deferred
signer, and the access-token keys in KMS."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from vaultpay.shared.errors import ConcurrentModification, ConfigurationError, TransientError
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.kms_ecdsa import MAX_RAW_MESSAGE, key_id_of, kms_public_key, kms_sign

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

    from vaultpay.auth.tokens import TokenSigner

# How long a "this session is still live" answer is reused by a warm authorizer: a logout or a detected reuse
# takes effect within this (identity contract: within 60 s). An ended session is remembered for good.
SESSION_CHECK_TTL_S = 30.0


class DynamoDBSessionRevocations:
    """Reads whether a token's session has ended from the auth table, in one BatchGetItem per check:
    the family's `revoked` flag (`FAMILY#<id>` / `FAMILY`) and the user's `status` and `sessions_ended_at`
    (`USER#<id>` / `PROFILE`), those attributes only, strongly consistent (the family is written with the
    login that issued the token). Answers are reused for `ttl_s`; an ended session is remembered for good.
    A family or user that is not there has ended (TTL deletes a family only after its last token expired):
    fail closed.
    """

    def __init__(self, client: Any, table_name: str, *, ttl_s: float = SESSION_CHECK_TTL_S) -> None:
        self._client = client
        self._table = table_name
        self._ttl_s = ttl_s
        self._users: dict[str, tuple[float, bool, int | None]] = {}  # user -> (read until, disabled, ended)
        self._live_families: dict[str, float] = {}  # family -> read until
        self._ended_families: set[str] = set()
        self._lock = threading.Lock()

    def revoked(self, *, user_id: str, session_id: str | None, issued_at: int) -> bool:
        now = time.monotonic()
        with self._lock:
            if session_id is not None and session_id in self._ended_families:
                return True
            user = self._users.get(user_id)
            family_fresh = session_id is None or self._live_families.get(session_id, 0.0) > now
            if user is not None and user[0] > now and family_fresh:
                return _ended(user[1], user[2], issued_at)
        disabled, ended_at, family_ended = self._read(user_id, session_id)
        with self._lock:
            if len(self._users) > 10_000 or len(self._live_families) > 10_000:
                self._users.clear()  # a long-lived container: forget the oldest answers
                self._live_families.clear()
            self._users[user_id] = (now + self._ttl_s, disabled, ended_at)
            if session_id is not None:
                if family_ended:
                    self._ended_families.add(session_id)
                    self._live_families.pop(session_id, None)
                else:
                    self._live_families[session_id] = now + self._ttl_s
        return family_ended or _ended(disabled, ended_at, issued_at)

    def _read(self, user_id: str, session_id: str | None) -> tuple[bool, int | None, bool]:
        from botocore.exceptions import BotoCoreError, ClientError

        keys = [{"pk": {"S": f"USER#{user_id}"}, "sk": {"S": "PROFILE"}}]
        if session_id is not None:
            keys.append({"pk": {"S": f"FAMILY#{session_id}"}, "sk": {"S": "FAMILY"}})
        request = {
            self._table: {
                "Keys": keys,
                "ProjectionExpression": "pk, #revoked, #status, #ended",
                "ExpressionAttributeNames": {
                    "#revoked": "revoked",
                    "#status": "status",
                    "#ended": "sessions_ended_at",
                },
                "ConsistentRead": True,
            }
        }
        items: list[dict[str, Any]] = []
        try:
            for _ in range(3):  # unprocessed keys (throttling) are read again, briefly
                answer = self._client.batch_get_item(RequestItems=request)
                items.extend(answer.get("Responses", {}).get(self._table, []))
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise TransientError("DynamoDB left session keys unread")
        except (ClientError, BotoCoreError) as exc:
            raise _dynamodb_failure(exc, f"auth table {self._table} cannot be read") from exc
        by_key = {item["pk"]["S"]: item for item in items}
        user = by_key.get(f"USER#{user_id}")
        family = by_key.get(f"FAMILY#{session_id}") if session_id is not None else {}
        disabled = user is None or user.get("status", {}).get("S") == "DISABLED"
        ended_at = int(user["sessions_ended_at"]["N"]) if user and "sessions_ended_at" in user else None
        family_ended = family is None or bool((family or {}).get("revoked", {}).get("BOOL", False))
        return disabled, ended_at, family_ended


def _dynamodb_failure(exc: Exception, refused: str) -> ConfigurationError | TransientError:
    """A DynamoDB call's failure as the authorizer reports it: a deployment fault (`refused`, with its code)
    or a passing one. Either way the authorizer fails closed: API Gateway answers 500, never a wrong Allow."""
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return TransientError("DynamoDB is unreachable")
    code = exc.response.get("Error", {}).get("Code", "")
    if code in ("ResourceNotFoundException", "AccessDeniedException", "ValidationException"):
        return ConfigurationError(f"{refused}: {code}")
    return TransientError(f"DynamoDB failed: {code}")


def _ended(disabled: bool, ended_at: int | None, issued_at: int) -> bool:
    return disabled or (ended_at is not None and issued_at <= ended_at)


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
            if exc.response.get("Error", {}).get("Code", "") == "ConditionalCheckFailedException":
                raise ConcurrentModification(f"outbox event {event.id} already exists") from exc
            raise _dynamodb_failure(exc, f"outbox table {self._table} cannot be written") from exc
        except BotoCoreError as exc:
            raise _dynamodb_failure(exc, "") from exc


class DeferredSigner:
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


# ---- access-token keys in KMS ------------------------------------------------------------------------------
# Access-token keys in KMS: the issuing functions sign through it, verifiers hold only the public keys.
#
# The private key of an `ECC_NIST_P256` / `SIGN_VERIFY` KMS key never leaves KMS. MFA verify and refresh call
# `kms:Sign` on the signing input (`MessageType=RAW`, `ECDSA_SHA_256`; KMS hashes it); the authorizer and the
# JWKS function call only `kms:GetPublicKey`, once per key per container. So compromising a verifier yields no
# way to mint a token. A token's `kid` is the KMS key id (the UUID of its ARN).
#
# Rotation: a second key is listed as verify-only (TOKEN_VERIFY_KEY_IDS) while the first still signs, so that
# every verifier and the JWKS know it; then it becomes the signing key (TOKEN_SIGNING_KEY_ID) with the old one
# verify-only until the last token it signed has expired (15 minutes). See the README's operations section.


def kid_of(key_id: str) -> str:
    """The token `kid` of a KMS key named by ARN or id: its key id."""
    return key_id_of(key_id)


def parse_key_ids(value: str | None) -> tuple[str, ...]:
    """A comma-separated list of KMS key ARNs or ids, blanks ignored."""
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


class KmsTokenSigner:
    """A TokenSigner (vaultpay.auth.tokens) over `kms:Sign` with one key."""

    def __init__(self, kms: Callable[[], Any] | Any, key_id: str) -> None:
        self._kms = kms
        self._key_id = key_id
        self._kid = kid_of(key_id)

    def signing_kid(self) -> str:
        return self._kid

    def sign(self, signing_input: bytes) -> bytes:
        from vaultpay.auth.tokens import raw_signature

        if len(signing_input) > MAX_RAW_MESSAGE:
            raise ValueError("a token's signing input is longer than KMS signs raw")
        client = self._kms() if callable(self._kms) else self._kms
        return raw_signature(kms_sign(client, self._key_id, signing_input))


class KmsPublicKeys:
    """The verification keys, kid → P-256 public key, read with `kms:GetPublicKey` once per container.

    A key's public half never changes and the list of keys comes from the function's configuration (a
    rotation deploys new configuration, so new containers): nothing to expire.
    """

    def __init__(self, kms: Callable[[], Any] | Any, key_ids: Sequence[str]) -> None:
        if not key_ids:
            raise ConfigurationError("no token verification key is configured")
        self._kms = kms
        self._key_ids = tuple(key_ids)
        self._lock = threading.Lock()
        self._keys: Mapping[str, EllipticCurvePublicKey] | None = None

    def public_keys_by_kid(self) -> Mapping[str, EllipticCurvePublicKey]:
        with self._lock:
            if self._keys is None:
                self._keys = {kid_of(key_id): self._public_key(key_id) for key_id in self._key_ids}
            return self._keys

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        from vaultpay.auth.tokens import jwks_document

        return jwks_document(self.public_keys_by_kid())

    def _public_key(self, key_id: str) -> EllipticCurvePublicKey:
        client = self._kms() if callable(self._kms) else self._kms
        return kms_public_key(client, key_id)

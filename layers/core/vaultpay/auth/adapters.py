"""Identity adapters beside the store: the session check and outbox writer of the authorizer, the signer."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vaultpay.shared.errors import ConcurrentModification, ConfigurationError, TransientError
from vaultpay.shared.events import DomainEvent

if TYPE_CHECKING:
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

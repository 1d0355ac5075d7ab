"""One way to call a DynamoDB table through the low-level client: errors, retries and transactions.

The rule for when to use this and when a PynamoDB model is in docs/persistence.md. Nothing here imports
botocore at import time: the stores are on the request path of every Lambda, and a store is only handed a
client (made by its composition root) when it is used.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from vaultpay.shared.dynamo.cursor import decode_position, encode_position
from vaultpay.shared.errors import ConcurrentModification, ConfigurationError, TransientError, VaultPayError

# Error codes worth retrying: lost a race to another transaction, or throttled, or a blip on AWS's side.
TRANSIENT_CODES = frozenset(
    {
        "TransactionConflictException",
        "TransactionInProgressException",
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
# Per-item cancellation reasons of a TransactWriteItems that are worth retrying as a whole.
RETRYABLE_REASONS = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})
# Codes no retry can fix: the table, the grant or the request is wrong.
CONFIGURATION_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "ValidationException",
    }
)
CONDITION_FAILED_CODE = "ConditionalCheckFailedException"
CONDITION_FAILED_REASON = "ConditionalCheckFailed"
TRANSACTION_CANCELED_CODE = "TransactionCanceledException"
# Operations whose ValidationException is about the items written (see Table's `rejected`).
WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"})
NOT_EXISTS = "attribute_not_exists(pk)"


class ConditionFailed(ConcurrentModification):
    """A single conditional write found its condition false.

    A store catches it where a failed condition is an answer (a spent budget, a review already claimed);
    left uncaught it is what it means to a client: the item changed under the request (409).
    """


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError; None for anything else (no answer at all)."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def cancellation_reasons(exc: BaseException) -> list[str | None]:
    """A cancelled transaction's reasons, item by item in request order (None where an item was fine)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return []
    return [_reason_code(reason) for reason in response.get("CancellationReasons") or []]


def _reason_code(reason: Mapping[str, Any] | None) -> str | None:
    code = (reason or {}).get("Code")
    return None if code in (None, "None") else str(code)


def translate(
    code: str | None,
    operation: str,
    table: str,
    *,
    cause: BaseException | None = None,
    rejected: Callable[[str], VaultPayError] | None = None,
) -> VaultPayError:
    """The one translation of a DynamoDB failure into the project's errors (the message keeps the AWS code
    and never an item's contents; infrastructure messages are logged, not shown to clients)."""
    if code == CONDITION_FAILED_CODE:
        return ConditionFailed(f"{operation} on {table}: the condition failed")
    if code == "ValidationException" and rejected is not None and operation in WRITE_OPERATIONS:
        return rejected(f"DynamoDB rejected {operation} on {table}: {code}")
    if code in CONFIGURATION_CODES:
        return ConfigurationError(f"DynamoDB refused {operation} on {table}: {code}")
    what = code or (type(cause).__name__ if cause is not None else "no answer")
    return TransientError(f"DynamoDB {operation} on {table} failed: {what}")


@dataclass(frozen=True, slots=True)
class Cancellation:
    """Why one attempt at a transaction did not commit: the call's error code and each item's reason."""

    code: str | None
    reasons: tuple[str | None, ...] = ()
    cause: BaseException | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, exc: BaseException) -> Cancellation:
        return cls(error_code(exc), tuple(cancellation_reasons(exc)), exc)

    @property
    def failed(self) -> frozenset[int]:
        """The positions (request order) whose conditions failed."""
        return frozenset(i for i, reason in enumerate(self.reasons) if reason == CONDITION_FAILED_REASON)

    @property
    def retryable(self) -> bool:
        """Lost a race or throttled: the same transaction may commit if sent again."""
        return self.code in TRANSIENT_CODES or any(reason in RETRYABLE_REASONS for reason in self.reasons)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Full-jitter exponential backoff: before attempt k+1, a pause drawn from [0, min(cap, base * 2**k)].

    Jitter keeps writers that lost the same race from colliding again in lock step; the cap and the number
    of attempts bound how long a request can be held.
    """

    attempts: int = 4
    base_s: float = 0.02
    cap_s: float = 1.0
    sleep: Callable[[float], None] = time.sleep
    uniform: Callable[[float, float], float] = random.uniform

    def delay(self, attempt: int) -> float:
        return self.uniform(0.0, min(self.cap_s, self.base_s * 2**attempt))

    def pause(self, attempt: int) -> None:
        self.sleep(self.delay(attempt))


TRANSACTION_BACKOFF = Backoff(attempts=4, base_s=0.02)
BATCH_BACKOFF = Backoff(attempts=5, base_s=0.01)


def commit_with_retry(
    attempt_once: Callable[[], Cancellation | None],
    *,
    backoff: Backoff,
    error: Callable[[Cancellation], VaultPayError],
) -> frozenset[int]:
    """Runs a transaction until it commits or an item's condition fails; returns the failed positions.

    `attempt_once` sends it once (None: committed). A failed condition is an answer, returned for the caller
    to re-read and decide; losing to a concurrent transaction or throttling is retried with jitter, and
    after `backoff.attempts` losses is ConcurrentModification; anything else is raised as `error` says.
    """
    for attempt in range(backoff.attempts):
        cancellation = attempt_once()
        if cancellation is None:
            return frozenset()
        failed = cancellation.failed
        if failed:
            return failed
        if not cancellation.retryable:
            raise error(cancellation) from cancellation.cause
        if attempt + 1 == backoff.attempts:
            raise ConcurrentModification(
                "the transaction kept losing to concurrent writes"
            ) from cancellation.cause
        backoff.pause(attempt)
    raise ConcurrentModification("the transaction kept losing to concurrent writes")


_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


class Table:
    """One table through a low-level (boto3/botocore) client: every call's errors translated the one way,
    transactions retried with jitter, batch reads completed. Items are DynamoDB attribute values."""

    def __init__(
        self,
        client: Any,
        name: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rejected: Callable[[str], VaultPayError] | None = None,
    ) -> None:
        """`rejected` makes the error a write that DynamoDB refuses as invalid (ValidationException) raises;
        by default it is a ConfigurationError, like a refused read (then the code or schema is wrong)."""
        self.client = client
        self.name = name
        self._transactions = replace(TRANSACTION_BACKOFF, sleep=sleep)
        self._batches = replace(BATCH_BACKOFF, sleep=sleep)
        self._rejected = rejected

    # ---- one call -----------------------------------------------------------------------------------

    def call(self, operation: str, **request: Any) -> Any:
        """The client's `operation` (its AWS name: "GetItem", "Query"...) with errors translated."""
        from botocore.exceptions import BotoCoreError, ClientError

        method = getattr(self.client, _CAMEL.sub("_", operation).lower())
        try:
            return method(**request)
        except (BotoCoreError, ClientError) as exc:
            raise self.error(operation, exc) from exc

    def error(self, operation: str, exc: BaseException) -> VaultPayError:
        return translate(error_code(exc), operation, self.name, cause=exc, rejected=self._rejected)

    def cancelled(self, cancellation: Cancellation) -> VaultPayError:
        """The error a transaction that did not commit (and will not be retried) is raised as."""
        return translate(
            cancellation.code,
            "TransactWriteItems",
            self.name,
            cause=cancellation.cause,
            rejected=self._rejected,
        )

    def get(self, key: Mapping[str, Any], *, consistent: bool = True, **extra: Any) -> dict[str, Any] | None:
        """The item with `key`, or None; strongly consistent unless asked (a decision reads the latest)."""
        response = self.call(
            "GetItem", TableName=self.name, Key=dict(key), ConsistentRead=consistent, **extra
        )
        item: dict[str, Any] | None = response.get("Item")
        return item

    def update(self, key: Mapping[str, Any], **request: Any) -> Any:
        """One UpdateItem; a failed ConditionExpression raises ConditionFailed."""
        return self.call("UpdateItem", TableName=self.name, Key=dict(key), **request)

    def query(self, **request: Any) -> Any:
        return self.call("Query", TableName=self.name, **request)

    def query_page(
        self, request: Mapping[str, Any], *, limit: int, start: Mapping[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One page of at most `limit` items and the key it stopped at, given only when the page is full
        (a short page is the last one, whatever DynamoDB says)."""
        params = {**request, "Limit": limit}
        if start is not None:
            params["ExclusiveStartKey"] = dict(start)
        response = self.query(**params)
        items: list[dict[str, Any]] = response.get("Items", [])
        last: dict[str, Any] | None = response.get("LastEvaluatedKey")
        return items, (last if last and len(items) == limit else None)

    def index_page(
        self,
        request: Mapping[str, Any],
        *,
        partition: Mapping[str, Any],
        cursor: str | None,
        cursor_name: str,
        item_key: Callable[[str], Mapping[str, Any]],
        limit: int,
        sort_key: str = "created_sk",
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a sparse index sorted by `<time>#<id>` (`sort_key`), and the cursor of the next.

        The start key is rebuilt from `partition` (the index's hash key and the caller's own value) and
        `item_key(position)` (the base table key of the item the position names; it raises InvalidCursor
        when the id is not one of that list's), never read from the cursor: a cursor can only ever resume
        inside the list the caller asked for."""
        start = None
        if cursor:
            after = decode_position(cursor, cursor_name)
            start = {**partition, sort_key: {"S": after}, **item_key(after.rpartition("#")[2])}
        items, last = self.query_page(request, limit=limit, start=start)
        return items, (encode_position(cursor_name, last[sort_key]["S"]) if last else None)

    def batch_get(
        self, keys: Sequence[Mapping[str, Any]], *, projection: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """The items found for `keys` (any order), read consistently; unprocessed keys are asked again with
        jitter, and TransientError when DynamoDB still leaves some after every attempt."""
        request: dict[str, Any] = {"Keys": [dict(key) for key in keys], "ConsistentRead": True}
        if projection is not None:
            names = {f"#a{i}": name for i, name in enumerate(projection)}
            request["ProjectionExpression"] = ", ".join(["pk", "sk", *names])
            request["ExpressionAttributeNames"] = names
        pending: dict[str, Any] = {self.name: request}
        found: list[dict[str, Any]] = []
        for attempt in range(self._batches.attempts):
            if attempt:
                self._batches.pause(attempt - 1)
            response = self.call("BatchGetItem", RequestItems=pending)
            found.extend(response.get("Responses", {}).get(self.name, []))
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                return found
        raise TransientError(f"DynamoDB left keys of {self.name} unprocessed")

    # ---- transactions -------------------------------------------------------------------------------

    def put_new(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """A transaction's Put of an item that must not exist yet (every item here has a `pk`)."""
        return {"Put": {"TableName": self.name, "Item": dict(item), "ConditionExpression": NOT_EXISTS}}

    def put_if(
        self,
        item: Mapping[str, Any],
        condition: str,
        *,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A transaction's Put that replaces an item only while `condition` holds on the stored one."""
        put: dict[str, Any] = {"TableName": self.name, "Item": dict(item), "ConditionExpression": condition}
        if names:
            put["ExpressionAttributeNames"] = dict(names)
        if values:
            put["ExpressionAttributeValues"] = dict(values)
        return {"Put": put}

    def transact_once(self, items: Iterable[Mapping[str, Any]], **extra: Any) -> Cancellation | None:
        """Sends the transaction once: None when it committed, else why not (nothing was written)."""
        return self._send(items, extra)[1]

    def transact(
        self,
        items: Sequence[Mapping[str, Any]],
        *,
        on_commit: Callable[[Mapping[str, Any]], None] | None = None,
        **extra: Any,
    ) -> frozenset[int]:
        """Commits `items`; returns the positions whose conditions failed (empty: committed).

        Retried as `commit_with_retry` says. `on_commit` is handed the response of the attempt that
        committed (with `ReturnConsumedCapacity` in `extra`, its capacity)."""

        def attempt_once() -> Cancellation | None:
            response, cancellation = self._send(items, extra)
            if cancellation is None and on_commit is not None:
                on_commit(response)
            return cancellation

        return commit_with_retry(attempt_once, backoff=self._transactions, error=self.cancelled)

    def _send(
        self, items: Iterable[Mapping[str, Any]], extra: Mapping[str, Any]
    ) -> tuple[Mapping[str, Any], Cancellation | None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.transact_write_items(TransactItems=list(items), **extra)
        except (BotoCoreError, ClientError) as exc:
            return {}, Cancellation.of(exc)
        return response, None

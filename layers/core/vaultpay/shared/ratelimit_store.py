"""The rate limiter's CounterStore on DynamoDB: one atomic UpdateItem per count, expired by TTL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vaultpay.shared.errors import ConfigurationError, TransientError, VaultPayError

_CONFIGURATION_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "AccessDeniedException",
        "ValidationException",
        "UnrecognizedClientException",
    }
)


class _ConditionFailed(Exception):
    """A conditional counter write found its condition false (the budget is spent, or no counter)."""


class DynamoDBCounterStore:
    """Counters in a table keyed by `pk` (S) with TTL attribute `expires_at` (identity-contract.md).

    `client` is a boto3/botocore DynamoDB client. A store that cannot be reached raises TransientError:
    the limiter then fails closed (the request is refused with 503), never open.
    """

    def __init__(self, client: Any, table_name: str) -> None:
        if not table_name:
            raise ConfigurationError("the rate-limit table name is not configured")
        self._client = client
        self._table = table_name

    def increment(self, key: str, expires_at: int) -> int:
        """ADD creates the counter at zero first, so concurrent increments never lose a count."""
        count = self._add_one(key, expires_at, limit=None)
        assert count is not None  # unconditional: it always counts
        return count

    def increment_below(self, key: str, limit: int, expires_at: int) -> int | None:
        """One conditional UpdateItem: the count goes up only while it is below `limit`."""
        return self._add_one(key, expires_at, limit=limit)

    def _add_one(self, key: str, expires_at: int, *, limit: int | None) -> int | None:
        """The new count; None when `limit` is given and the count had reached it."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"pk": {"S": key}},
            "UpdateExpression": "ADD #count :one SET #expires_at = :expires_at",
            "ExpressionAttributeNames": {"#count": "count", "#expires_at": "expires_at"},
            "ExpressionAttributeValues": {":one": {"N": "1"}, ":expires_at": {"N": str(int(expires_at))}},
            "ReturnValues": "UPDATED_NEW",
        }
        if limit is not None:
            request["ConditionExpression"] = "attribute_not_exists(#count) OR #count < :limit"
            request["ExpressionAttributeValues"][":limit"] = {"N": str(int(limit))}
        try:
            response = self._call("UpdateItem", lambda: self._client.update_item(**request))
        except _ConditionFailed:
            return None
        return int(response["Attributes"]["count"]["N"])

    def decrement(self, key: str) -> None:
        try:
            self._call(
                "UpdateItem",
                lambda: self._client.update_item(
                    TableName=self._table,
                    Key={"pk": {"S": key}},
                    UpdateExpression="ADD #count :minus_one",
                    ConditionExpression="attribute_exists(#count)",
                    ExpressionAttributeNames={"#count": "count"},
                    ExpressionAttributeValues={":minus_one": {"N": "-1"}},
                ),
            )
        except _ConditionFailed:
            return  # the window's counter is gone (TTL): nothing to give back

    def get(self, key: str) -> int:
        response = self._call(
            "GetItem",
            lambda: self._client.get_item(
                TableName=self._table,
                Key={"pk": {"S": key}},
                # A limit read from a stale replica would let a burst through right after a refusal.
                ConsistentRead=True,
                ProjectionExpression="#count",
                ExpressionAttributeNames={"#count": "count"},
            ),
        )
        item = response.get("Item")
        return int(item["count"]["N"]) if item and "count" in item else 0

    def _call(self, operation: str, call: Callable[[], Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "ConditionalCheckFailedException":
                raise _ConditionFailed from exc
            error: VaultPayError
            if code in _CONFIGURATION_CODES:
                error = ConfigurationError(f"rate-limit table {self._table} refused {operation}: {code}")
            else:
                error = TransientError(f"DynamoDB {operation} on the rate-limit table failed: {code}")
            raise error from exc
        except BotoCoreError as exc:
            raise TransientError(f"DynamoDB {operation} on the rate-limit table is unreachable") from exc

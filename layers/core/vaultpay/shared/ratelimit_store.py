"""The rate limiter's CounterStore on DynamoDB: one atomic UpdateItem per count, expired by TTL."""

from __future__ import annotations

from typing import Any

from vaultpay.shared.dynamo import ConditionFailed, Table
from vaultpay.shared.errors import ConfigurationError


class DynamoDBCounterStore:
    """Counters in a table keyed by `pk` (S) with TTL attribute `expires_at` (identity-contract.md).

    `client` is a boto3/botocore DynamoDB client. A store that cannot be reached raises TransientError:
    the limiter then fails closed (the request is refused with 503), never open.
    """

    def __init__(self, client: Any, table_name: str) -> None:
        if not table_name:
            raise ConfigurationError("the rate-limit table name is not configured")
        self._db = Table(client, table_name)

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
            "UpdateExpression": "ADD #count :one SET #expires_at = :expires_at",
            "ExpressionAttributeNames": {"#count": "count", "#expires_at": "expires_at"},
            "ExpressionAttributeValues": {":one": {"N": "1"}, ":expires_at": {"N": str(int(expires_at))}},
            "ReturnValues": "UPDATED_NEW",
        }
        if limit is not None:
            request["ConditionExpression"] = "attribute_not_exists(#count) OR #count < :limit"
            request["ExpressionAttributeValues"][":limit"] = {"N": str(int(limit))}
        try:
            # A failed condition (the budget is spent) is the answer None, not an error.
            response = self._db.update({"pk": {"S": key}}, **request)
        except ConditionFailed:
            return None
        return int(response["Attributes"]["count"]["N"])

    def decrement(self, key: str) -> None:
        try:
            self._db.update(
                {"pk": {"S": key}},
                UpdateExpression="ADD #count :minus_one",
                ConditionExpression="attribute_exists(#count)",
                ExpressionAttributeNames={"#count": "count"},
                ExpressionAttributeValues={":minus_one": {"N": "-1"}},
            )
        except ConditionFailed:
            return  # the window's counter is gone (TTL): nothing to give back

    def get(self, key: str) -> int:
        # Consistent: a limit read from a stale replica would let a burst through right after a refusal.
        item = self._db.get(
            {"pk": {"S": key}},
            consistent=True,
            ProjectionExpression="#count",
            ExpressionAttributeNames={"#count": "count"},
        )
        return int(item["count"]["N"]) if item and "count" in item else 0

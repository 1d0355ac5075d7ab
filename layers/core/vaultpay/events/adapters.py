"""The event relay's DynamoDB adapters: the outbox marker (BatchWriteItem) and the sweeper's pending store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vaultpay.shared import kernel
from vaultpay.shared.observability import get_logger

# Marking published is best effort (the sweeper covers a miss), so it never waits long.
_MARK_TIMEOUT_S = 2.0
_MARK_ATTEMPTS = 2
# BatchWriteItem calls in flight at once (and the client's connection pool, which must be as large).
_MARK_CONCURRENCY = 4
_BATCH_WRITE_MAX = 25  # DynamoDB's limit per BatchWriteItem
# Unprocessed items (throttling) are retried this many times in all, backing off from this delay.
_UNPROCESSED_ATTEMPTS = 3
_UNPROCESSED_BACKOFF_S = 0.05


class DynamoDbMarker:
    """The Marker on DynamoDB: writes each published outbox item back as published (its image with
    `published` true and no `pending`) in BatchWriteItem calls of 25, on worker threads (boto3 blocks; its
    clients are thread-safe). One conditional UpdateItem per item, even 16 at a time, held the relay to a
    few hundred events/s per shard; a batch put costs the same write units in 1/25th of the calls
    (bench/relay_bench.py). Rewriting the whole item is safe: an outbox item never changes but for this
    mark, and the image is the item as written. An item past its expiry is not written back (TTL may
    have removed it; a put would bring it back). The client is made at first use, so importing the relay
    loads no boto3."""

    def __init__(self, client: Any = None, *, clock: Callable[[], float] = kernel.now) -> None:
        self._client = client
        self._clock = clock

    def _dynamodb(self) -> Any:
        if self._client is None:
            from vaultpay.shared.aws import aws_client

            self._client = aws_client(
                "dynamodb",
                timeout_s=_MARK_TIMEOUT_S,
                max_attempts=_MARK_ATTEMPTS,
                max_pool_connections=_MARK_CONCURRENCY,
            )
        return self._client

    async def mark_published(self, table: str, items: Sequence[Mapping[str, Any]]) -> int:
        return await asyncio.to_thread(self._mark, table, list(items))

    def _mark(self, table: str, items: list[Mapping[str, Any]]) -> int:
        now = self._clock()
        requests = [
            {"PutRequest": {"Item": published_image(item)}} for item in items if not _expired(item, now)
        ]
        if not requests:
            return 0
        client = self._dynamodb()
        chunks = [requests[i : i + _BATCH_WRITE_MAX] for i in range(0, len(requests), _BATCH_WRITE_MAX)]
        if len(chunks) == 1:
            return self._write(client, table, chunks[0])
        with ThreadPoolExecutor(
            max_workers=min(_MARK_CONCURRENCY, len(chunks)), thread_name_prefix="outbox-mark"
        ) as pool:
            return sum(pool.map(lambda chunk: self._write(client, table, chunk), chunks))

    def _write(self, client: Any, table: str, requests: list[dict[str, Any]]) -> int:
        """One BatchWriteItem, its unprocessed items retried with a short backoff; returns how many
        items were left unwritten."""
        pending = requests
        for attempt in range(_UNPROCESSED_ATTEMPTS):
            try:
                response = client.batch_write_item(RequestItems={table: pending})
            except Exception as exc:  # throttling, timeouts, permissions: logged, counted, never raised
                get_logger().warning(
                    "outbox items not marked published",
                    extra={"table": table, "items": len(pending), "error": type(exc).__name__},
                )
                return len(pending)
            pending = response.get("UnprocessedItems", {}).get(table, [])
            if not pending:
                return 0
            if attempt + 1 < _UNPROCESSED_ATTEMPTS:
                time.sleep(_UNPROCESSED_BACKOFF_S * 2**attempt)
        get_logger().warning(
            "outbox items not marked published",
            extra={"table": table, "items": len(pending), "error": "UnprocessedItems"},
        )
        return len(pending)


def published_image(item: Mapping[str, Any]) -> dict[str, Any]:
    """The outbox item as marked: `published` true, `pending` gone (out of the sweeper's sparse index)."""
    marked = {name: value for name, value in item.items() if name != "pending"}
    marked["published"] = {"BOOL": True}
    return marked


def _expired(item: Mapping[str, Any], now: float) -> bool:
    expires_at = item.get("expires_at")
    if isinstance(expires_at, Mapping) and isinstance(expires_at.get("N"), str):
        try:
            return int(expires_at["N"]) <= now
        except ValueError:
            return False
    return False


class DynamoDbPendingStore:
    """The sweeper's PendingStore: a paginated Query of the sparse OutboxPending index, on a thread."""

    def __init__(self, client: Any = None) -> None:
        self._client = client

    async def pending(self, table: str, *, before: str, limit: int) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._query, table, before, limit)

    def _query(self, table: str, before: str, limit: int) -> list[dict[str, Any]]:
        from vaultpay.shared.outbox import PENDING, PENDING_INDEX

        if self._client is None:
            from vaultpay.shared.aws import aws_client

            self._client = aws_client("dynamodb")
        items: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while len(items) < limit:
            request: dict[str, Any] = {
                "TableName": table,
                "IndexName": PENDING_INDEX,
                "KeyConditionExpression": "pending = :p AND #t < :before",
                "ExpressionAttributeNames": {"#t": "time"},
                "ExpressionAttributeValues": {":p": {"S": PENDING}, ":before": {"S": before}},
                "Limit": min(100, limit - len(items)),
            }
            if start is not None:
                request["ExclusiveStartKey"] = start
            page = self._client.query(**request)
            items.extend(page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        return items[:limit]


# ---- the rescue's adapters (vaultpay.events.rescue) ---------------------------------------------------

# GetRecords pages in a row that return nothing before a read of an open shard is called incomplete: a
# DynamoDB stream may return empty pages before the records behind them.
_EMPTY_PAGES = 10
_GONE_CODES = frozenset(
    {"TrimmedDataAccessException", "ResourceNotFoundException", "ExpiredIteratorException"}
)


class SqsFailureQueue:
    """The rescue's FailureQueue: the relay mappings' on-failure queue, on worker threads."""

    def __init__(self, queue_url: str, client: Any = None) -> None:
        self._url = queue_url
        self._client = client

    def _sqs(self) -> Any:
        if self._client is None:
            from vaultpay.shared.aws import aws_client

            self._client = aws_client("sqs")
        return self._client

    async def receive(self, max_messages: int) -> list[Any]:
        from vaultpay.events.rescue import QueueMessage

        def call() -> list[QueueMessage]:
            # Long enough for a run to handle what it took; a message it leaves comes back after that.
            response = self._sqs().receive_message(
                QueueUrl=self._url, MaxNumberOfMessages=max_messages, WaitTimeSeconds=0, VisibilityTimeout=120
            )
            return [
                QueueMessage(receipt=m["ReceiptHandle"], message_id=m["MessageId"], body=m["Body"])
                for m in response.get("Messages", [])
            ]

        return await asyncio.to_thread(call)

    async def delete(self, message: Any) -> None:
        await asyncio.to_thread(self._sqs().delete_message, QueueUrl=self._url, ReceiptHandle=message.receipt)


class DynamoDbStreamReader:
    """The rescue's StreamReader: GetShardIterator at the batch's first sequence number, then GetRecords
    until its last one (sequence numbers compare as integers)."""

    def __init__(self, client: Any = None) -> None:
        self._client = client

    async def records(self, batch: Any) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._read, batch)

    def _read(self, batch: Any) -> list[dict[str, Any]]:
        from botocore.exceptions import ClientError

        from vaultpay.events.rescue import IncompleteRead, RecordsGone

        if self._client is None:
            from vaultpay.shared.aws import aws_client

            self._client = aws_client("dynamodbstreams")
        end = int(batch.end)
        records: list[dict[str, Any]] = []
        try:
            iterator = self._client.get_shard_iterator(
                StreamArn=batch.stream_arn,
                ShardId=batch.shard_id,
                ShardIteratorType="AT_SEQUENCE_NUMBER",
                SequenceNumber=batch.start,
            ).get("ShardIterator")
            empty = 0
            while iterator and empty < _EMPTY_PAGES:
                page = self._client.get_records(ShardIterator=iterator, Limit=1000)
                empty = 0 if page.get("Records") else empty + 1
                for record in page.get("Records", []):
                    sequence = int(record["dynamodb"]["SequenceNumber"])
                    if sequence > end:
                        return records
                    records.append(record)
                    if sequence == end:
                        return records
                iterator = page.get("NextShardIterator")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _GONE_CODES:
                raise RecordsGone("the stream no longer holds the batch") from exc
            raise
        if iterator:  # an open shard that has not shown the batch's end yet
            raise IncompleteRead("the stream did not return the whole batch")
        return records  # the shard is closed: these are all it holds of the batch


class DynamoDbPendingMarker:
    """The rescue's PendingMarker: one conditional UpdateItem per item (the rescue path only, never the
    relay's), so an item TTL already removed is not brought back."""

    def __init__(self, client: Any = None) -> None:
        self._client = client

    async def mark_pending(self, table: str, items: Sequence[Mapping[str, Any]]) -> int:
        return await asyncio.to_thread(self._mark, table, list(items))

    def _mark(self, table: str, items: list[Mapping[str, Any]]) -> int:
        from botocore.exceptions import ClientError

        from vaultpay.shared.outbox import PENDING

        if self._client is None:
            from vaultpay.shared.aws import aws_client

            self._client = aws_client("dynamodb")
        failed = 0
        for item in items:
            try:
                self._client.update_item(
                    TableName=table,
                    Key={"pk": item["pk"], "sk": item["sk"]},
                    UpdateExpression="SET pending = :p",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues={":p": {"S": PENDING}},
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    failed += 1
                    get_logger().warning(
                        "outbox item not marked pending",
                        extra={"table": table, "error": exc.response.get("Error", {}).get("Code")},
                    )
        return failed

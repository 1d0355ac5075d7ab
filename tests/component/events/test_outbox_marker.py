"""The sweeper's DynamoDB marker against moto: every re-published outbox item written back as published.
(The relay marks nothing; the sweeper marks the items the rescue of a given-up batch left pending.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeSerializer
from moto import mock_aws
from support.tables import create_table

from vaultpay.events.adapters import DynamoDbMarker
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.outbox import PENDING, outbox_attributes

pytestmark = pytest.mark.component
TABLE = "vaultpay-marker-test"
NOW = 1_800_000_000.0


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "AuthTable", TABLE)  # an outbox table, with the sparse OutboxPending index
        yield client


def _images(client: Any, count: int, *, now: float = NOW) -> list[dict[str, Any]]:
    """`count` outbox items as the rescue leaves them (pending), saved, and returned as the sweeper reads
    them."""
    serializer = TypeSerializer()
    images = []
    for i in range(count):
        event = DomainEvent(
            id=f"evt-{i:03d}",
            type="vaultpay.accounts.account.opened",
            source="vaultpay/accounts",
            subject=f"acc_{i:03d}",
            time="2027-01-15T08:00:00.000Z",
            correlation_id=f"corr-{i}",
            data={"account_id": f"acc_{i:03d}"},
        )
        image = {k: serializer.serialize(v) for k, v in outbox_attributes(event, now=now).items()}
        image["pending"] = {"S": PENDING}
        client.put_item(TableName=TABLE, Item=image)
        images.append(image)
    return images


def _item(client: Any, event_id: str) -> dict[str, Any]:
    key = {"pk": {"S": f"OUTBOX#{event_id}"}, "sk": {"S": "OUTBOX"}}
    return client.get_item(TableName=TABLE, Key=key, ConsistentRead=True).get("Item", {})


def test_a_full_batch_is_marked_and_keeps_everything_else(dynamodb: Any) -> None:
    images = _images(dynamodb, 100)  # four BatchWriteItem calls of 25

    failed = asyncio.run(DynamoDbMarker(dynamodb, clock=lambda: NOW).mark_published(TABLE, images))

    assert failed == 0
    for image in images:
        item = _item(dynamodb, image["event_id"]["S"])
        assert item["published"] == {"BOOL": True}
        assert "pending" not in item  # out of the sweeper's sparse index
        assert {k: v for k, v in item.items() if k not in ("published", "pending")} == {
            k: v for k, v in image.items() if k not in ("published", "pending")
        }


def test_an_expired_item_is_not_brought_back(dynamodb: Any) -> None:
    [image] = _images(dynamodb, 1, now=NOW - 8 * 24 * 3600)  # past its 7-day retention
    dynamodb.delete_item(TableName=TABLE, Key={"pk": image["pk"], "sk": image["sk"]})  # TTL took it

    failed = asyncio.run(DynamoDbMarker(dynamodb, clock=lambda: NOW).mark_published(TABLE, [image]))

    assert failed == 0
    assert _item(dynamodb, image["event_id"]["S"]) == {}


class _FlakyClient:
    """Delegates to the real client; fails whole calls, or leaves items unprocessed, as throttling does."""

    def __init__(self, client: Any, *, fail_calls: int = 0, unprocessed_rounds: int = 0) -> None:
        self._client = client
        self.fail_calls = fail_calls
        self.unprocessed_rounds = unprocessed_rounds
        self.calls = 0

    def batch_write_item(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.fail_calls:
            self.fail_calls -= 1
            raise TimeoutError("injected")
        if self.unprocessed_rounds:
            self.unprocessed_rounds -= 1
            [(table, requests)] = kwargs["RequestItems"].items()
            done, left = requests[:-1], requests[-1:]  # the last one comes back unprocessed
            if done:
                self._client.batch_write_item(RequestItems={table: done})
            return {"UnprocessedItems": {table: left}}
        return self._client.batch_write_item(**kwargs)


def test_unprocessed_items_are_retried_until_written(dynamodb: Any) -> None:
    images = _images(dynamodb, 10)
    client = _FlakyClient(dynamodb, unprocessed_rounds=2)

    failed = asyncio.run(DynamoDbMarker(client, clock=lambda: NOW).mark_published(TABLE, images))

    assert failed == 0 and client.calls == 3
    assert all("pending" not in _item(dynamodb, i["event_id"]["S"]) for i in images)


def test_items_still_unprocessed_after_the_retries_are_counted_not_raised(dynamodb: Any) -> None:
    images = _images(dynamodb, 10)
    client = _FlakyClient(dynamodb, unprocessed_rounds=99)

    failed = asyncio.run(DynamoDbMarker(client, clock=lambda: NOW).mark_published(TABLE, images))

    assert failed == 1 and client.calls == 3
    left_pending = [i for i in images if "pending" in _item(dynamodb, i["event_id"]["S"])]
    assert len(left_pending) == 1  # the sweeper re-publishes it later


def test_a_failed_call_counts_its_items_and_the_other_calls_still_write(dynamodb: Any) -> None:
    images = _images(dynamodb, 50)  # two calls of 25
    client = _FlakyClient(dynamodb, fail_calls=1)

    failed = asyncio.run(DynamoDbMarker(client, clock=lambda: NOW).mark_published(TABLE, images))

    assert failed == 25
    marked = [i for i in images if "pending" not in _item(dynamodb, i["event_id"]["S"])]
    assert len(marked) == 25


def test_nothing_to_mark_makes_no_client() -> None:
    marker = DynamoDbMarker()
    assert asyncio.run(marker.mark_published(TABLE, [])) == 0
    assert marker._client is None

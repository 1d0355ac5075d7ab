"""The rate limiter's DynamoDB counter store against moto: atomic counts, TTL, consistent reads, failures."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from vaultpay.shared.errors import ConfigurationError, RateLimited
from vaultpay.shared.ratelimit import RateLimiter, Window
from vaultpay.shared.ratelimit_store import DynamoDBCounterStore

pytestmark = pytest.mark.component

TABLE = "vaultpay-test-auth-rate-limits"


@pytest.fixture
def counters(cloud: Any) -> DynamoDBCounterStore:
    return DynamoDBCounterStore(cloud.dynamodb, TABLE)


def test_each_increment_returns_the_new_count_and_sets_the_ttl(
    counters: DynamoDBCounterStore, cloud: Any
) -> None:
    assert [counters.increment("RL#login-ip#900#203.0.113.10", 1_800) for _ in range(3)] == [1, 2, 3]
    item = cloud.dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "RL#login-ip#900#203.0.113.10"}})["Item"]
    assert item["count"] == {"N": "3"}
    assert item["expires_at"] == {"N": "1800"}


def test_get_reads_the_count_and_zero_for_an_unknown_key(counters: DynamoDBCounterStore) -> None:
    counters.increment("RL#x#0#a", 60)
    assert counters.get("RL#x#0#a") == 1
    assert counters.get("RL#x#0#nobody") == 0


@pytest.mark.dynamodb_local  # in-process moto does not make UpdateItem atomic across threads
def test_concurrent_increments_lose_no_count(counters: DynamoDBCounterStore) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: counters.increment("RL#race#0#k", 60), range(40)))
    assert sorted(results) == list(range(1, 41))
    assert counters.get("RL#race#0#k") == 40


def test_the_limiter_over_dynamodb_refuses_beyond_the_limit(counters: DynamoDBCounterStore) -> None:
    limiter = RateLimiter(counters)
    window = Window(limit=2, period_s=60)
    limiter.hit("refresh", "fam_1", window, now=1_000.0)
    limiter.hit("refresh", "fam_1", window, now=1_001.0)
    with pytest.raises(RateLimited) as caught:
        limiter.hit("refresh", "fam_1", window, now=1_002.0)
    assert caught.value.retry_after == 18  # the window [960, 1020) ends 18 s later


def test_a_missing_table_is_a_configuration_error(cloud: Any) -> None:
    counters = DynamoDBCounterStore(cloud.dynamodb, "no-such-table")
    with pytest.raises(ConfigurationError, match="no-such-table"):
        counters.increment("RL#x#0#a", 60)


def test_a_store_without_a_table_name_fails_loudly() -> None:
    with pytest.raises(ConfigurationError):
        DynamoDBCounterStore(object(), "")

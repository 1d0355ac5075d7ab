"""DynamoFraudStore and the fraud services on DynamoDB Local, tables as template.yaml has them."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import boto3
import pytest
from support.clocks import ManualClock
from support.tables import create_table

from vaultpay.fraud.config import DEFAULT_CONFIG
from vaultpay.fraud.memory import FakeTasks, FakeTransferViews
from vaultpay.fraud.model import AmountHistory, Decision
from vaultpay.fraud.records import DeviceSeen, ReviewStatus, SecuritySignal, TransferCompleted, TransferEnded
from vaultpay.fraud.service import FraudEngine, ProfileService, ReviewService
from vaultpay.fraud.store import DynamoFraudStore
from vaultpay.shared.errors import ValidationFailed
from vaultpay.shared.ratelimit_store import DynamoDBCounterStore

pytestmark = pytest.mark.component

# DynamoDB Local deletes TTL-expired items (the counters) within about a second, so a test's clock starts at
# real time when the test runs (not when the module was collected, minutes earlier in the full suite) and two
# minutes ahead, so that no velocity window it writes expires while it runs.
CLOCK_LEAD_S = 120


def real_now() -> float:
    return float(int(time.time())) + CLOCK_LEAD_S


USER = "usr_bob"
TOKEN = "tok-" + "x" * 200


def client(endpoint: str) -> Any:
    return boto3.session.Session().client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


@pytest.fixture
def tables(dynamodb_endpoint: str) -> dict[str, Any]:
    dynamodb = client(dynamodb_endpoint)
    suffix = uuid.uuid4().hex[:8]
    names = {"fraud": f"t-{suffix}-FraudTable", "counters": f"t-{suffix}-FraudCountersTable"}
    create_table(dynamodb, "FraudTable", names["fraud"])
    create_table(dynamodb, "FraudCountersTable", names["counters"])
    return {"client": dynamodb, **names}


def tid(n: int) -> str:
    return f"tr_{n:032x}"


REVIEW_AMOUNT = 20_000_000  # ₹2,00,000: HIGH_AMOUNT holds it for review


def state(n: int, amount: int = 100_000, **overrides: Any) -> dict[str, Any]:
    return {
        "transfer_id": tid(n),
        "correlation_id": f"corr-{n}",
        "user_id": USER,
        "device_id": "phone-1",
        "source_account_id": "acc_src",
        "destination_account_id": "acc_dst",
        "amount": amount,
        "currency": "INR",
        **overrides,
    }


def items(tables: dict[str, Any]) -> list[dict[str, Any]]:
    return list(tables["client"].scan(TableName=tables["fraud"], ConsistentRead=True)["Items"])


def test_a_decision_is_stored_once_with_its_two_outbox_events_and_a_repeat_counts_nothing(
    tables: dict[str, Any],
) -> None:
    # Given the engine on the real tables
    store = DynamoFraudStore(tables["client"], tables["fraud"])
    counters = DynamoDBCounterStore(tables["client"], tables["counters"])
    clock = ManualClock(real_now())
    engine = FraudEngine(store=store, counters=counters, config=lambda: DEFAULT_CONFIG, clock=clock)
    # When a transfer in HIGH_AMOUNT's review band is evaluated twice
    first = engine.evaluate(state(1, REVIEW_AMOUNT))
    counted = tables["client"].scan(TableName=tables["counters"], ConsistentRead=True)["Items"]
    clock.now += 1
    again = engine.evaluate(state(1, REVIEW_AMOUNT))
    # Then one decision, two outbox events, and the counters untouched by the repeat
    assert again == first and first["decision"] == "REVIEW"
    stored = items(tables)
    kinds = sorted(item["kind"]["S"] for item in stored)
    assert kinds == ["decision", "outbox", "outbox"]
    outbox = sorted(
        json.loads(i["data"]["S"]) and i["type"]["S"] for i in stored if i["kind"]["S"] == "outbox"
    )
    assert outbox == ["vaultpay.fraud.check.requested", "vaultpay.fraud.result"]
    # Outbox items are never pending when written: only the rescue of a given-up relay batch marks them
    assert not any("pending" in i for i in stored if i["kind"]["S"] == "outbox")
    assert tables["client"].scan(TableName=tables["counters"], ConsistentRead=True)["Items"] == counted
    [decision] = [i for i in stored if i["kind"]["S"] == "decision"]
    assert decision["alert_decision"]["S"] == "REVIEW"
    assert decision["amount"] == {"N": str(REVIEW_AMOUNT)}
    assert set(first["reasons"]) == {"HIGH_AMOUNT", "NEW_DEVICE", "BEHAVIORAL_ANOMALY"}
    # And no device id reached an event
    assert "phone-1" not in json.dumps([i for i in stored if i["kind"]["S"] == "outbox"])


def test_profile_events_build_the_profile_once_in_exact_integers(tables: dict[str, Any]) -> None:
    store = DynamoFraudStore(tables["client"], tables["fraud"], clock=ManualClock(real_now()))
    profiles = ProfileService(store)
    big = 10**12
    assert profiles.apply(DeviceSeen("ev-1", USER, "phone-1", 1_700_000_000)) is True
    assert profiles.apply(DeviceSeen("ev-2", USER, "phone-1", 1_800_000_000)) is True
    assert profiles.apply(DeviceSeen("ev-2", USER, "phone-1", 1_800_000_000)) is False
    for n, amount in enumerate((big, big - 1, 1)):
        assert profiles.apply(TransferCompleted(f"ev-t{n}", USER, "acc_dst", amount)) is True
    assert profiles.apply(TransferCompleted("ev-t0", USER, "acc_dst", big)) is False
    profile = store.get_profile(USER, "acc_dst")
    assert profile.history == AmountHistory.of([big, big - 1, 1])
    assert profile.history.total_squares == big * big + (big - 1) ** 2 + 1
    assert profile.payee_known and not store.get_profile(USER, "acc_other").payee_known
    assert profile.first_seen_at("phone-1") == 1_700_000_000
    markers = [i for i in items(tables) if i["kind"]["S"] == "processed"]
    assert len(markers) == 5 and all("expires_at" in m for m in markers)


def test_the_newest_security_signal_is_kept_whatever_order_the_events_arrive_in(
    tables: dict[str, Any],
) -> None:
    store = DynamoFraudStore(tables["client"], tables["fraud"], clock=ManualClock(real_now()))
    profiles = ProfileService(store)
    assert store.get_profile(USER, "acc_dst").security_signal_at is None
    assert profiles.apply(SecuritySignal("ev-s2", USER, "device_mismatch", 1_800_000_000)) is True
    # An older one, arriving later: seen (its marker is written), but it changes nothing
    assert profiles.apply(SecuritySignal("ev-s1", USER, "token_reuse", 1_700_000_000)) is True
    assert profiles.apply(SecuritySignal("ev-s1", USER, "token_reuse", 1_700_000_000)) is False
    assert profiles.apply(SecuritySignal("ev-s2", USER, "device_mismatch", 1_800_000_000)) is False
    assert store.get_profile(USER, "acc_dst").security_signal_at == 1_800_000_000
    assert profiles.apply(SecuritySignal("ev-s3", USER, "device_mismatch", 1_900_000_000)) is True
    assert store.get_profile(USER, "acc_dst").security_signal_at == 1_900_000_000


def test_reviews_wait_get_decided_once_and_never_show_their_token(tables: dict[str, Any]) -> None:
    # Given a REVIEW decision whose saga waits with a token (replaced once by a retried invoke)
    store = DynamoFraudStore(tables["client"], tables["fraud"])
    counters = DynamoDBCounterStore(tables["client"], tables["counters"])
    engine = FraudEngine(
        store=store, counters=counters, config=lambda: DEFAULT_CONFIG, clock=ManualClock(real_now())
    )
    assert engine.evaluate(state(1, REVIEW_AMOUNT))["decision"] == "REVIEW"
    tasks, views = FakeTasks(open={TOKEN}), FakeTransferViews()
    reviews = ReviewService(store=store, tasks=tasks, transfers=views, clock=ManualClock(real_now()))
    waiting = {"transfer_id": tid(1), "correlation_id": "corr-1", "user_id": USER, "task_token": "old"}
    reviews.await_review(waiting)
    reviews.await_review({**waiting, "task_token": TOKEN})
    assert store.get_review(tid(1)).task_token == TOKEN  # type: ignore[union-attr]
    # Then the alert shows the waiting review without the token
    page = reviews.alerts(role="admin", decision="REVIEW", limit=None, cursor=None).to_json()
    assert page["items"][0]["review"]["status"] == "WAITING"
    assert TOKEN not in json.dumps(page) and "token" not in json.dumps(page)
    # When an admin declines it
    reviews.decide(
        role="admin",
        reviewer="usr_admin",
        transfer_id=tid(1),
        decision="DECLINE",
        note="fraud ring",
        correlation_id="c",
    )
    # Then the saga got it, the review is DECIDED and resumed, the token is gone from the table
    assert tasks.sent == [(TOKEN, {"decision": "DECLINE", "note": "fraud ring", "reviewer": "usr_admin"})]
    review = store.get_review(tid(1))
    assert review is not None and (review.status, review.resumed, review.task_token) == (
        ReviewStatus.DECIDED,
        True,
        None,
    )
    assert TOKEN not in json.dumps(items(tables))
    decided = [i for i in items(tables) if i.get("type", {}).get("S") == "vaultpay.fraud.review.decided"]
    assert [json.loads(i["data"]["S"]) for i in decided] == [
        {"transfer_id": tid(1), "decision": "DECLINE", "reviewer": "usr_admin"}
    ]
    assert decided[0]["correlation_id"]["S"] == "corr-1"
    # And a retried AwaitReview does not bring a token back
    reviews.await_review({**waiting, "task_token": "newer"})
    assert store.get_review(tid(1)).task_token is None  # type: ignore[union-attr]


def test_a_transfer_that_ended_closes_its_waiting_review(tables: dict[str, Any]) -> None:
    store = DynamoFraudStore(tables["client"], tables["fraud"])
    reviews = ReviewService(store=store, clock=ManualClock(real_now()))
    reviews.await_review({"transfer_id": tid(2), "correlation_id": "c", "user_id": USER, "task_token": TOKEN})
    assert ProfileService(store).apply(TransferEnded("ev-end", tid(2))) is True
    assert ProfileService(store).apply(TransferEnded("ev-end", tid(2))) is False
    review = store.get_review(tid(2))
    assert review is not None and (review.status, review.task_token) == (ReviewStatus.CLOSED, None)


def test_alerts_page_newest_first_across_both_decisions_and_by_decision(tables: dict[str, Any]) -> None:
    # Given alerts (REVIEW and DECLINE interleaved) and approvals in between
    store = DynamoFraudStore(tables["client"], tables["fraud"])
    counters = DynamoDBCounterStore(tables["client"], tables["counters"])
    clock = ManualClock(real_now())
    engine = FraudEngine(store=store, counters=counters, config=lambda: DEFAULT_CONFIG, clock=clock)
    high = DEFAULT_CONFIG.rules.HIGH_AMOUNT
    # A month-old device and a known payee: only the amount decides.
    start = clock.now
    ProfileService(store).apply(DeviceSeen("ev-login", USER, "d", int(start) - 30 * 86400))
    ProfileService(store).apply(TransferCompleted("ev-paid", USER, "acc_dst", 100))
    expected: dict[str, str] = {}
    for n in range(1, 11):
        clock.now = start + 3600 * n  # a fresh velocity window each time
        amount = (high.review_amount, high.decline_amount, 100)[n % 3]
        result = engine.evaluate(state(n, amount=amount, device_id="d"))
        if result["decision"] != "APPROVE":
            expected[tid(n)] = result["decision"]
    newest_first = sorted(expected, reverse=True)
    reviews = ReviewService(store=store)
    # When an admin pages through all of them, three at a time
    assert set(expected.values()) == {"REVIEW", "DECLINE"} and len(expected) == 7
    seen: list[str] = []
    cursor = None
    while True:
        page = reviews.alerts(role="admin", decision=None, limit="3", cursor=cursor)
        seen.extend(record.transfer_id for record, _ in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    # Then each alert comes once, newest first, no APPROVE among them
    assert seen == newest_first
    assert Decision.APPROVE.value not in {expected[t] for t in seen}
    declines = reviews.alerts(role="admin", decision="DECLINE", limit="100", cursor=None)
    assert [r.transfer_id for r, _ in declines.items] == [t for t in newest_first if expected[t] == "DECLINE"]
    # And a cursor of one query is refused by another
    first = reviews.alerts(role="admin", decision="REVIEW", limit="1", cursor=None)
    with pytest.raises(ValidationFailed):
        reviews.alerts(role="admin", decision="DECLINE", limit="1", cursor=first.next_cursor)
    with pytest.raises(ValidationFailed):
        reviews.alerts(role="admin", decision=None, limit="1", cursor="not-a-cursor")

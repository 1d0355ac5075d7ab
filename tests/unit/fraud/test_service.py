"""The fraud use cases on in-memory fakes: evaluate once, explain, count velocity once; review and alerts;
the profile consumer applies each event once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from support.clocks import ManualClock

from vaultpay.fraud.config import DEFAULT_CONFIG, FraudConfig, InvalidFraudConfig, load_fraud_config
from vaultpay.fraud.consumer import consume
from vaultpay.fraud.errors import (
    InvalidStepInput,
    ReviewAlreadyDecided,
    ReviewClosed,
    ReviewNotFound,
    StepConflict,
)
from vaultpay.fraud.memory import FakeTasks, FakeTransferViews, MemoryFraudStore
from vaultpay.fraud.model import RULE_ERROR, AmountHistory, FraudContext, RuleResult
from vaultpay.fraud.records import (
    CHECK_REQUESTED,
    FRAUD_RESULT,
    REVIEW_DECIDED,
    DeviceSeen,
    ReviewStatus,
    SecuritySignal,
    TransferCompleted,
    TransferEnded,
    profile_event,
)
from vaultpay.fraud.rules import DEFAULT_RULES
from vaultpay.fraud.service import FraudEngine, ProfileService, ReviewService
from vaultpay.shared.errors import Forbidden, TransientError, ValidationFailed
from vaultpay.shared.ratelimit import FakeCounterStore

pytestmark = pytest.mark.unit

NOW = 1_795_000_000.0
USER = "usr_alice"
DEVICE = "device-1"
RUPEE = 100
TOKEN = "AAAA-secret-task-token-0123456789"


def transfer_id(n: int = 1) -> str:
    return f"tr_{n:032x}"


def saga_state(n: int = 1, **overrides: Any) -> dict[str, Any]:
    state = {
        "transfer_id": transfer_id(n),
        "correlation_id": f"corr-{n}",
        "user_id": USER,
        "device_id": DEVICE,
        "source_account_id": "acc_src",
        "destination_account_id": "acc_dst",
        "amount": 1_000 * RUPEE,
        "currency": "INR",
        "description": "rent",
        "created_at": "2026-11-28T12:00:00.000Z",
        "hold": {"status": "HELD"},
    }
    state.update(overrides)
    return state


@dataclass
class Engine:
    engine: FraudEngine
    store: MemoryFraudStore
    counters: FakeCounterStore
    clock: ManualClock
    configs: list[FraudConfig] = field(default_factory=list)


def make_engine(
    *, config: Callable[[], FraudConfig] | None = None, rules: Mapping[str, Any] = DEFAULT_RULES
) -> Engine:
    store, counters, clock = MemoryFraudStore(), FakeCounterStore(), ManualClock(NOW)
    engine = FraudEngine(
        store=store, counters=counters, config=config or (lambda: DEFAULT_CONFIG), rules=rules, clock=clock
    )
    return Engine(engine, store, counters, clock)


def known_user(store: MemoryFraudStore, *, device: str = DEVICE, seen_at: float = NOW - 30 * 86400) -> None:
    """A user who has logged in from `device` for a month and paid acc_dst before."""
    store.apply_profile_event(DeviceSeen("ev-login", USER, device, int(seen_at)))
    for i in range(6):
        store.apply_profile_event(TransferCompleted(f"ev-done-{i}", USER, "acc_dst", 1_000 * RUPEE))


# ---- evaluate -------------------------------------------------------------------------------------------


def test_a_usual_transfer_from_a_known_device_is_approved_with_nothing_fired() -> None:
    # Given a user with a known device and history
    t = make_engine()
    known_user(t.store)
    # When a usual transfer is evaluated
    result = t.engine.evaluate(saga_state())
    # Then it is approved, explained (nothing fired) and time-stamped
    assert result == {
        "decision": "APPROVE",
        "score": 0,
        "reasons": [],
        "rules": [],
        "decided_at": "2026-11-18T11:06:40.000Z",
    }


def test_a_large_transfer_goes_to_review_with_each_rules_contribution() -> None:
    t = make_engine()
    known_user(t.store)
    result = t.engine.evaluate(saga_state(amount=DEFAULT_CONFIG.rules.HIGH_AMOUNT.review_amount))
    assert result["decision"] == "REVIEW"
    assert "HIGH_AMOUNT" in result["reasons"]
    by_rule = {rule["rule"]: rule for rule in result["rules"]}
    assert by_rule["HIGH_AMOUNT"] == {
        "rule": "HIGH_AMOUNT",
        "score": DEFAULT_CONFIG.rules.HIGH_AMOUNT.review_score,
        "reason": "amount at or above the review limit",
    }
    assert result["reasons"] == [rule["rule"] for rule in result["rules"]]


def test_a_first_user_on_a_never_seen_device_is_scored_as_a_new_device_only() -> None:
    # A profile that knows no device has nothing to mismatch (nor has the consumer caught up yet)
    t = make_engine()
    result = t.engine.evaluate(saga_state())
    assert result["reasons"] == ["NEW_DEVICE"]
    assert (result["score"], result["decision"]) == (25, "APPROVE")


def test_a_device_unknown_to_a_profile_that_knows_another_goes_to_review() -> None:
    t = make_engine()
    known_user(t.store, device="dev-usual-phone")
    result = t.engine.evaluate(saga_state())
    assert set(result["reasons"]) == {"DEVICE_MISMATCH", "NEW_DEVICE"}
    assert (result["score"], result["decision"]) == (85, "REVIEW")


def test_a_first_large_transfer_to_a_new_payee_is_held_for_review_not_declined() -> None:
    # HIGH_AMOUNT's REVIEW band plus a never-seen device and a first payment to a new payee
    t = make_engine()
    amount = DEFAULT_CONFIG.rules.HIGH_AMOUNT.review_amount
    result = t.engine.evaluate(saga_state(amount=amount))
    assert set(result["reasons"]) == {"HIGH_AMOUNT", "NEW_DEVICE", "BEHAVIORAL_ANOMALY"}
    assert (result["score"], result["decision"]) == (80, "REVIEW")


def test_the_decision_and_its_two_events_are_stored_together() -> None:
    t = make_engine()
    known_user(t.store)
    t.engine.evaluate(saga_state())
    stored = t.store.decisions[transfer_id()]
    assert stored.user_id == USER and stored.amount == 1_000 * RUPEE
    requested, result = t.store.events
    assert (requested.type, result.type) == (CHECK_REQUESTED, FRAUD_RESULT)
    assert requested.data == {
        "transfer_id": transfer_id(),
        "user_id": USER,
        "amount": 1_000 * RUPEE,
        "currency": "INR",
    }
    assert result.data == {
        "transfer_id": transfer_id(),
        "user_id": USER,
        "decision": "APPROVE",
        "score": 0,
        "reasons": [],
    }
    assert {requested.correlation_id, result.correlation_id} == {"corr-1"}
    assert DEVICE not in json.dumps([requested.cloudevent(), result.cloudevent()])


def test_a_repeat_returns_the_stored_decision_and_counts_nothing_twice() -> None:
    # Given an evaluated transfer
    t = make_engine()
    first = t.engine.evaluate(saga_state())
    counts = dict(t.counters.counts)
    # When Step Functions delivers the same step again, later
    t.clock.now += 5
    again = t.engine.evaluate(saga_state())
    # Then the stored decision comes back and nothing was counted or written again
    assert again == first
    assert t.counters.counts == counts
    assert len(t.store.events) == 2


def test_a_retry_after_a_crash_before_the_decision_was_stored_does_not_count_the_transfer_again() -> None:
    # Given an evaluation that counted the transfer and died before storing its decision
    t = make_engine()
    t.engine._count(saga_state_transfer(), NOW)  # the crash window, reproduced
    minute = [v for k, v in t.counters.counts.items() if "minute" in k]
    assert minute == [1]
    # When the step is retried
    t.engine.evaluate(saga_state())
    # Then the windows still hold one transfer
    assert sorted(v for k, v in t.counters.counts.items() if "velocity" in k) == [1, 1]


def saga_state_transfer() -> Any:
    from vaultpay.fraud.records import parse_saga_transfer

    return parse_saga_transfer(saga_state())


def test_velocity_fires_on_the_transfer_beyond_the_per_minute_limit() -> None:
    t = make_engine()
    known_user(t.store)
    limit = DEFAULT_CONFIG.rules.VELOCITY.max_per_minute
    results = [t.engine.evaluate(saga_state(n)) for n in range(1, limit + 2)]
    assert all("VELOCITY" not in r["reasons"] for r in results[:limit])
    assert "VELOCITY" in results[limit]["reasons"]


def test_the_same_transfer_id_with_another_amount_is_a_step_conflict() -> None:
    t = make_engine()
    t.engine.evaluate(saga_state())
    with pytest.raises(StepConflict):
        t.engine.evaluate(saga_state(amount=5))


@pytest.mark.parametrize(
    ("field_name", "value"),
    [("amount", 1.5), ("amount", True), ("amount", 0), ("amount", "100"), ("transfer_id", "tr_x"),
     ("currency", "inr"), ("device_id", ""), ("user_id", None)],
)  # fmt: skip
def test_an_invalid_saga_input_is_refused_naming_the_field(field_name: str, value: Any) -> None:
    t = make_engine()
    with pytest.raises(InvalidStepInput) as raised:
        t.engine.evaluate(saga_state(**{field_name: value}))
    assert [error.field for error in raised.value.errors] == [field_name]
    assert not t.counters.counts


def test_an_invalid_configuration_fails_loudly_before_anything_is_counted() -> None:
    def broken() -> FraudConfig:
        return load_fraud_config('{"review_threshold": 50}')

    t = make_engine(config=broken)
    with pytest.raises(InvalidFraudConfig):
        t.engine.evaluate(saga_state())
    assert not t.counters.counts and not t.store.decisions


def test_a_rule_that_raises_sends_the_transfer_to_review_never_approves_it() -> None:
    class Broken:
        name = "HIGH_AMOUNT"

        def evaluate(self, ctx: FraudContext, config: FraudConfig) -> RuleResult | None:
            raise RuntimeError("boom with data 12345")

    t = make_engine(rules={**DEFAULT_RULES, "HIGH_AMOUNT": Broken()})
    known_user(t.store)
    result = t.engine.evaluate(saga_state())
    assert result["decision"] == "REVIEW"
    assert RULE_ERROR in result["reasons"]
    assert "12345" not in json.dumps(result)


def test_amount_history_comes_from_the_profile_in_integers() -> None:
    t = make_engine()
    known_user(t.store)
    history = t.store.get_profile(USER, "acc_dst").history
    assert history == AmountHistory.of([1_000 * RUPEE] * 6)
    # Far above a history that never varies: BEHAVIORAL_ANOMALY fires
    result = t.engine.evaluate(saga_state(amount=1_001 * RUPEE, destination_account_id="acc_new"))
    assert "BEHAVIORAL_ANOMALY" in result["reasons"]


# ---- await review ---------------------------------------------------------------------------------------


def review_input(n: int = 1, token: str = TOKEN) -> dict[str, Any]:
    return {
        "transfer_id": transfer_id(n),
        "correlation_id": f"corr-{n}",
        "user_id": USER,
        "amount": 25_000_000,
        "currency": "INR",
        "fraud": {"decision": "REVIEW", "score": 50, "reasons": ["HIGH_AMOUNT"]},
        "task_token": token,
    }


def make_reviews() -> tuple[ReviewService, MemoryFraudStore, FakeTasks, FakeTransferViews]:
    store, tasks, views = MemoryFraudStore(), FakeTasks(), FakeTransferViews()
    service = ReviewService(store=store, tasks=tasks, transfers=views, clock=ManualClock(NOW))
    return service, store, tasks, views


def test_await_review_stores_the_token_and_answers_without_it() -> None:
    service, store, _, _ = make_reviews()
    answer = service.await_review(review_input())
    assert answer == {"transfer_id": transfer_id(), "status": "WAITING"}
    assert store.reviews[transfer_id()].task_token == TOKEN
    assert TOKEN not in repr(store.reviews[transfer_id()])


def test_a_retried_await_replaces_the_token_only_while_waiting() -> None:
    service, store, tasks, _ = make_reviews()
    service.await_review(review_input(token="old"))
    service.await_review(review_input(token="new"))
    assert store.reviews[transfer_id()].task_token == "new"
    tasks.open.add("new")
    service.decide(
        role="admin", reviewer="usr_admin", transfer_id=transfer_id(), **_body(), correlation_id="c"
    )
    service.await_review(review_input(token="newer"))
    review = store.reviews[transfer_id()]
    assert (review.status, review.task_token) == (ReviewStatus.DECIDED, None)


def test_await_review_refuses_an_input_without_a_token() -> None:
    service, _, _, _ = make_reviews()
    with pytest.raises(InvalidStepInput):
        service.await_review({**review_input(), "task_token": None})


# ---- decide ---------------------------------------------------------------------------------------------


def _body(decision: str = "APPROVE", note: str = "called the customer") -> dict[str, Any]:
    return {"decision": decision, "note": note}


def test_an_admin_decision_resumes_the_saga_and_answers_the_transfer_view() -> None:
    # Given a transfer waiting for review
    service, store, tasks, views = make_reviews()
    service.await_review(review_input())
    tasks.open.add(TOKEN)
    # When an admin approves it
    view = service.decide(
        role="admin", reviewer="usr_admin", transfer_id=transfer_id(), **_body(), correlation_id="c-admin"
    )
    # Then the saga gets the decision, the view comes from the transfers domain
    assert tasks.sent == [
        (TOKEN, {"decision": "APPROVE", "note": "called the customer", "reviewer": "usr_admin"})
    ]
    assert view == {"transfer_id": transfer_id(), "status": "IN_REVIEW"}
    assert views.asked == [transfer_id()]
    # And the review is DECIDED, resumed, its token gone, and the event written without the note or token
    review = store.reviews[transfer_id()]
    assert (review.status, review.resumed, review.task_token) == (ReviewStatus.DECIDED, True, None)
    [event] = store.events
    assert event.type == REVIEW_DECIDED
    assert event.data == {"transfer_id": transfer_id(), "decision": "APPROVE", "reviewer": "usr_admin"}
    assert event.correlation_id == "corr-1"
    assert TOKEN not in json.dumps(event.cloudevent())


def test_a_decision_answers_the_view_even_when_the_first_reads_of_it_fail() -> None:
    # Given a transfer waiting for review, and a transfers domain whose view fails twice (a failed invoke)
    service, store, tasks, views = make_reviews()
    views.failures = 2
    service.await_review(review_input())
    tasks.open.add(TOKEN)
    # When an admin approves it, the answer is the view: the decision was delivered, never a 503 for it
    view = service.decide(
        role="admin", reviewer="usr_admin", transfer_id=transfer_id(), **_body(), correlation_id="c"
    )
    assert view == {"transfer_id": transfer_id(), "status": "IN_REVIEW"}
    assert len(tasks.sent) == 1 and views.asked == [transfer_id()] * 3
    assert store.reviews[transfer_id()].status is ReviewStatus.DECIDED


def test_a_decision_whose_view_never_reads_is_a_transient_error_after_it_was_delivered() -> None:
    service, store, tasks, views = make_reviews()
    views.failures = 99
    service.await_review(review_input())
    tasks.open.add(TOKEN)
    with pytest.raises(TransientError):
        service.decide(
            role="admin", reviewer="usr_admin", transfer_id=transfer_id(), **_body(), correlation_id="c"
        )
    assert len(tasks.sent) == 1 and len(views.asked) == 3
    assert store.reviews[transfer_id()].resumed is True


def test_a_second_decision_is_already_decided() -> None:
    service, _, tasks, _ = make_reviews()
    service.await_review(review_input())
    tasks.open.add(TOKEN)
    service.decide(
        role="admin", reviewer="usr_admin", transfer_id=transfer_id(), **_body(), correlation_id="c"
    )
    for decision in ("APPROVE", "DECLINE"):
        with pytest.raises(ReviewAlreadyDecided):
            service.decide(
                role="admin",
                reviewer="usr_admin",
                transfer_id=transfer_id(),
                **_body(decision),
                correlation_id="c",
            )


def test_a_decision_after_the_saga_stopped_waiting_is_review_closed_and_the_review_is_closed() -> None:
    service, store, _tasks, _ = make_reviews()
    service.await_review(review_input())  # the token is not open: the wait timed out
    with pytest.raises(ReviewClosed):
        service.decide(
            role="admin", reviewer="usr_admin", transfer_id=transfer_id(), **_body(), correlation_id="c"
        )
    review = store.reviews[transfer_id()]
    assert (review.status, review.task_token) == (ReviewStatus.CLOSED, None)
    assert not store.events
    with pytest.raises(ReviewClosed):
        service.decide(
            role="admin", reviewer="usr_admin", transfer_id=transfer_id(), **_body(), correlation_id="c"
        )


def test_a_decision_whose_saga_was_never_told_is_delivered_by_the_same_decision_again() -> None:
    # Given a claim stored by a request that died before SendTaskSuccess
    service, store, tasks, _ = make_reviews()
    service.await_review(review_input())
    tasks.open.add(TOKEN)
    store.claim_review(transfer_id(), decision="DECLINE", reviewer="usr_admin", note="n", decided_at="t")
    # When the admin sends another decision, it conflicts; the same decision is delivered
    with pytest.raises(ReviewAlreadyDecided):
        service.decide(
            role="admin", reviewer="usr_admin", transfer_id=transfer_id(), **_body(), correlation_id="c"
        )
    service.decide(
        role="admin",
        reviewer="usr_admin",
        transfer_id=transfer_id(),
        **_body("DECLINE"),
        correlation_id="c",
    )
    assert [output["decision"] for _, output in tasks.sent] == ["DECLINE"]


def test_an_unknown_or_malformed_transfer_has_no_review() -> None:
    service, _, _, _ = make_reviews()
    for tid in (transfer_id(7), "tr_nope", "../x"):
        with pytest.raises(ReviewNotFound):
            service.decide(role="admin", reviewer="usr_admin", transfer_id=tid, **_body(), correlation_id="c")


@pytest.mark.parametrize("decision", ["approve", "REVIEW", ""])
def test_a_decision_other_than_approve_or_decline_is_a_validation_error(decision: str) -> None:
    # The route's body model refuses these first (tests/component/shared/test_admin_resolver.py); the
    # service gives a caller in code the same answer.
    service, _, tasks, _ = make_reviews()
    service.await_review(review_input())
    tasks.open.add(TOKEN)
    with pytest.raises(ValidationFailed) as raised:
        service.decide(
            role="admin",
            reviewer="usr_admin",
            transfer_id=transfer_id(),
            **_body(decision),
            correlation_id="c",
        )
    assert raised.value.status == 422 and raised.value.errors
    assert not tasks.sent


def test_a_customer_is_forbidden_before_the_decision_is_looked_at() -> None:
    service, _, tasks, _ = make_reviews()
    service.await_review(review_input())
    tasks.open.add(TOKEN)
    for body in (_body(), _body("nonsense")):
        with pytest.raises(Forbidden):
            service.decide(
                role="customer", reviewer="usr_x", transfer_id=transfer_id(), **body, correlation_id="c"
            )
    with pytest.raises(Forbidden):
        service.alerts(role="customer", decision="bogus", limit="0", cursor=None)
    assert not tasks.sent


# ---- alerts ---------------------------------------------------------------------------------------------


def test_alerts_list_non_approved_decisions_newest_first_with_reviews_and_no_token() -> None:
    # Given decisions of every kind, one REVIEW with a waiting review
    t = make_engine()
    known_user(t.store)
    amounts = {1: 1_000 * RUPEE, 2: 20_000_000, 3: 100_000_000, 4: 20_000_000}
    for n, amount in amounts.items():
        t.clock.now = NOW + n
        t.engine.evaluate(saga_state(n, amount=amount))
    service = ReviewService(store=t.store, clock=ManualClock(NOW))
    service.await_review(review_input(2))
    # When an admin lists them
    page = service.alerts(role="admin", decision=None, limit=None, cursor=None).to_json()
    # Then APPROVE is left out, newest first
    assert [item["transfer_id"] for item in page["items"]] == [transfer_id(4), transfer_id(3), transfer_id(2)]
    assert page["next_cursor"] is None
    by_id = {item["transfer_id"]: item for item in page["items"]}
    assert by_id[transfer_id(2)]["review"] == {
        "status": "WAITING",
        "decision": None,
        "reviewer": None,
        "note": None,
        "decided_at": None,
    }
    assert by_id[transfer_id(3)]["review"] is None
    assert set(by_id[transfer_id(3)]) == {
        "transfer_id", "user_id", "decision", "score", "reasons", "rules", "amount", "currency", "review",
        "created_at",
    }  # fmt: skip
    assert TOKEN not in json.dumps(page)
    # And the decision filter and paging work
    reviews = service.alerts(role="admin", decision="REVIEW", limit="1", cursor=None)
    assert [r.transfer_id for r, _ in reviews.items] == [transfer_id(4)]
    rest = service.alerts(role="admin", decision="REVIEW", limit="1", cursor=reviews.next_cursor)
    assert [r.transfer_id for r, _ in rest.items] == [transfer_id(2)]


@pytest.mark.parametrize(
    ("decision", "limit", "cursor", "field_name"),
    [("APPROVE", None, None, "decision"), ("review", None, None, "decision"), (None, "0", None, "limit"),
     (None, "101", None, "limit"), (None, "ten", None, "limit"), (None, "-1", None, "limit"),
     (None, None, "x" * 513, "cursor")],
)  # fmt: skip
def test_bad_alert_queries_are_validation_errors(
    decision: str | None, limit: str | None, cursor: str | None, field_name: str
) -> None:
    service = ReviewService(store=MemoryFraudStore())
    with pytest.raises(ValidationFailed) as raised:
        service.alerts(role="admin", decision=decision, limit=limit, cursor=cursor)
    assert [error.field for error in raised.value.errors] == [field_name]


# ---- the profile consumer -------------------------------------------------------------------------------


def envelope(
    event_type: str, data: dict[str, Any], event_id: str = "ev-1", time: str = "2026-11-28T12:00:00.000Z"
) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "/vaultpay/test",
            "type": event_type,
            "time": time,
            "subject": "x",
            "datacontenttype": "application/json",
            "correlationid": "c",
            "data": data,
        }
    ).encode()


@dataclass
class Message:
    data: bytes
    acked: bool = False
    naked: bool = False
    metadata: Any = None

    async def ack(self) -> None:
        self.acked = True

    async def nak(self, delay: float | None = None) -> None:
        self.naked = True


@dataclass
class Source:
    batches: list[list[Message]]
    flushes: int = 0

    async def fetch(self, batch: int, wait_s: float) -> list[Any]:
        return self.batches.pop(0) if self.batches else []

    async def flush(self) -> None:
        self.flushes += 1


def test_the_consumer_applies_logins_and_completed_transfers_once_and_acks_everything_it_handled() -> None:
    # Given a login, a completed transfer (delivered twice), an event the profile ignores and a poison pill
    store = MemoryFraudStore()
    login = Message(envelope("vaultpay.auth.login.succeeded", {"user_id": USER, "device_id": DEVICE}, "ev-a"))
    done = {"transfer_id": transfer_id(), "user_id": USER, "source_account_id": "acc_src",
            "destination_account_id": "acc_dst", "amount": 12_345, "currency": "INR"}  # fmt: skip
    completed = Message(envelope("vaultpay.transaction.completed", done, "ev-b"))
    redelivered = Message(envelope("vaultpay.transaction.completed", done, "ev-b"))
    other = Message(envelope("vaultpay.account.created", {"account_id": "acc_1"}, "ev-c"))
    poison = Message(b"{not json")
    source = Source([[login, completed, other], [redelivered, poison]])
    # When the consumer runs
    report = asyncio.run(consume(source, ProfileService(store), remaining_ms=lambda: 60_000))
    # Then the profile has the device and exactly one amount and payee
    profile = store.get_profile(USER, "acc_dst")
    assert profile.first_seen_at(DEVICE) == 1_795_867_200
    assert profile.history == AmountHistory.of([12_345])
    assert profile.payee_known
    assert (report.applied, report.duplicates, report.ignored, report.rejected) == (2, 1, 1, 1)
    assert all(m.acked for m in (login, completed, other, redelivered))
    assert poison.naked and not poison.acked
    assert source.flushes == 2


def test_a_transfer_that_ended_closes_a_review_still_waiting() -> None:
    service, store, _, _ = make_reviews()
    service.await_review(review_input())
    profiles = ProfileService(store)
    event = profile_event(
        json.loads(envelope("vaultpay.transaction.declined", {"transfer_id": transfer_id(), "user_id": USER}))
    )
    assert isinstance(event, TransferEnded)
    assert profiles.apply(event) is True
    assert profiles.apply(event) is False
    review = store.reviews[transfer_id()]
    assert (review.status, review.task_token) == (ReviewStatus.CLOSED, None)


def test_a_consumer_write_failure_leaves_the_message_unacked() -> None:
    class Failing(ProfileService):
        def apply(self, event: Any) -> bool:
            raise RuntimeError("DynamoDB down")

    message = Message(envelope("vaultpay.auth.login.succeeded", {"user_id": USER, "device_id": DEVICE}))
    source = Source([[message]])
    with pytest.raises(RuntimeError):
        asyncio.run(consume(source, Failing(MemoryFraudStore()), remaining_ms=lambda: 60_000))
    assert not message.acked and not message.naked
    assert source.flushes == 1


def test_the_sample_events_are_valid_inputs_of_the_saga_steps() -> None:
    from pathlib import Path

    from vaultpay.fraud.records import parse_await_request, parse_saga_transfer

    samples = Path(__file__).resolve().parents[3] / "events" / "fraud"
    transfer = parse_saga_transfer(json.loads((samples / "evaluate.json").read_text()))
    waiting = parse_await_request(json.loads((samples / "await_review.json").read_text()))
    assert transfer.transfer_id == waiting.transfer_id
    result = make_engine().engine.evaluate(json.loads((samples / "evaluate.json").read_text()))
    assert result["decision"] in {"APPROVE", "REVIEW", "DECLINE"}


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        (
            "vaultpay.auth.device.mismatch",
            {"user_id": USER, "token_device_id": DEVICE, "presented_device_id": "thief-laptop"},
        ),
        (
            "vaultpay.auth.token.reuse_detected",
            {"user_id": USER, "family_id": "fam_1", "token_device_id": DEVICE, "presented_device_id": "x"},
        ),
    ],
)
def test_a_device_mismatch_or_token_reuse_makes_the_users_next_transfer_score_device_mismatch(
    event_type: str, data: dict[str, Any]
) -> None:
    # Given a user who always pays from a known device, and someone who used her tokens elsewhere
    t = make_engine()
    known_user(t.store)
    an_hour_before = datetime.fromtimestamp(NOW - 3600, UTC).isoformat().replace("+00:00", "Z")
    source = Source([[Message(envelope(event_type, data, "ev-signal", time=an_hour_before))]])
    report = asyncio.run(consume(source, ProfileService(t.store), remaining_ms=lambda: 60_000))
    assert report.applied == 1
    # When she sends a usual transfer from her own device
    result = t.engine.evaluate(saga_state())
    # Then DEVICE_MISMATCH fires, as the HTTP contract says the fraud engine counts it
    assert "DEVICE_MISMATCH" in result["reasons"], result
    assert result["decision"] == "REVIEW"


def test_an_older_security_signal_never_replaces_a_newer_one() -> None:
    store = MemoryFraudStore()
    profiles = ProfileService(store)
    assert profiles.apply(SecuritySignal("ev-new", USER, "device_mismatch", 2_000)) is True
    assert profiles.apply(SecuritySignal("ev-old", USER, "token_reuse", 1_000)) is True
    assert profiles.apply(SecuritySignal("ev-old", USER, "token_reuse", 1_000)) is False  # a repeat
    assert store.get_profile(USER, "acc_dst").security_signal_at == 2_000


def test_no_new_read_of_the_view_starts_after_its_budget() -> None:
    from vaultpay.fraud.service import VIEW_RETRY_BUDGET_S, _view_after_decision

    views = FakeTransferViews(failures=99)
    now = [0.0]

    def slow_clock() -> float:
        now[0] += VIEW_RETRY_BUDGET_S  # every read took the whole budget
        return now[0]

    with pytest.raises(TransientError):
        _view_after_decision(views, transfer_id(), monotonic=slow_clock)
    assert len(views.asked) == 1  # a function timeout (502) would be worse than this 503

"""Fraud rules and the evaluator: each rule fires exactly at its threshold; every decision is explained."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaultpay.fraud.config import DEFAULT_CONFIG, FraudConfig, load_fraud_config
from vaultpay.fraud.model import (
    RULE_ERROR,
    AmountHistory,
    Decision,
    FraudContext,
    FraudDecision,
    KnownDevice,
    RuleResult,
)
from vaultpay.fraud.rules import (
    DEFAULT_RULES,
    BehavioralAnomaly,
    DeviceMismatch,
    HighAmount,
    NewDevice,
    Rule,
    Velocity,
    evaluate,
)
from vaultpay.shared.kernel import MAX_AMOUNT

pytestmark = pytest.mark.unit

NOW = 1_800_000_000
HOUR = 3600
PHONE = KnownDevice("dev-phone", first_seen_at=NOW - 90 * 24 * HOUR, trusted=True)
RULE_NAMES = ("HIGH_AMOUNT", "VELOCITY", "NEW_DEVICE", "DEVICE_MISMATCH", "BEHAVIORAL_ANOMALY")
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _ctx(**overrides: Any) -> FraudContext:
    """A transfer nothing fires on: a small amount to a known payee from an old, known device."""
    fields: dict[str, Any] = {
        "transfer_id": "tr-1",
        "user_id": "user-1",
        "source_account_id": "acc_src",
        "destination_account_id": "acc_dst",
        "amount": 100_000,
        "currency": "INR",
        "device_id": PHONE.device_id,
        "known_devices": frozenset({PHONE}),
        "device_first_seen_at": PHONE.first_seen_at,
        "transfers_last_minute": 1,
        "transfers_last_hour": 1,
        "history": AmountHistory(),
        "payee_known": True,
        "now": NOW,
    }
    fields.update(overrides)
    return FraudContext(**fields)


def _config(**changes: Any) -> FraudConfig:
    """The default config with `rules__NAME__param`-style paths changed, validated like a stage's document."""
    document = copy.deepcopy(DEFAULT_CONFIG.to_document())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = document
        for part in parents:
            node = node[part]
        node[leaf] = value
    return load_fraud_config(document)


def _only(*names: str, **changes: Any) -> FraudConfig:
    """The default config with every rule but `names` switched off."""
    switches = {f"rules__{name}__enabled": name in names for name in RULE_NAMES}
    return _config(**switches, **changes)


def _unknown_device() -> dict[str, Any]:
    return {"device_id": "dev-stranger", "device_first_seen_at": None}


# ---- HIGH_AMOUNT -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "decision"),
    [
        (19_999_999, Decision.APPROVE),
        (20_000_000, Decision.REVIEW),
        (99_999_999, Decision.REVIEW),
        (100_000_000, Decision.DECLINE),
        (MAX_AMOUNT, Decision.DECLINE),
    ],
)
def test_high_amount_reviews_from_two_lakh_and_declines_from_ten_lakh(
    amount: int, decision: Decision
) -> None:
    result = evaluate(_ctx(amount=amount), _only("HIGH_AMOUNT"))
    assert result.decision is decision
    assert result.reasons == (() if decision is Decision.APPROVE else ("HIGH_AMOUNT",))


def test_high_amount_sets_a_decision_floor_whatever_its_score() -> None:
    # Given a stage that gives HIGH_AMOUNT no score at all
    config = _only("HIGH_AMOUNT", rules__HIGH_AMOUNT__review_score=0, rules__HIGH_AMOUNT__decline_score=0)

    # When large transfers are evaluated
    review = evaluate(_ctx(amount=20_000_000), config)
    decline = evaluate(_ctx(amount=100_000_000), config)

    # Then the floors alone decide
    assert (review.score, review.decision) == (0, Decision.REVIEW)
    assert (decline.score, decline.decision) == (0, Decision.DECLINE)
    assert decline.contributions[0].decision_floor is Decision.DECLINE


def test_high_amount_fires_at_the_configured_amounts() -> None:
    config = _only(
        "HIGH_AMOUNT", rules__HIGH_AMOUNT__review_amount=1_000, rules__HIGH_AMOUNT__decline_amount=2_000
    )
    assert evaluate(_ctx(amount=999), config).decision is Decision.APPROVE
    assert evaluate(_ctx(amount=1_000), config).decision is Decision.REVIEW
    assert evaluate(_ctx(amount=2_000), config).decision is Decision.DECLINE


# ---- VELOCITY ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("per_minute", "per_hour", "fires"),
    [(5, 1, False), (6, 6, True), (1, 20, False), (1, 21, True), (5, 20, False), (6, 21, True)],
)
def test_velocity_fires_above_five_a_minute_or_twenty_an_hour(
    per_minute: int, per_hour: int, fires: bool
) -> None:
    ctx = _ctx(transfers_last_minute=per_minute, transfers_last_hour=per_hour)
    result = Velocity().evaluate(ctx, DEFAULT_CONFIG)
    assert (result is not None) is fires


def test_velocity_names_each_window_exceeded_and_scores_once() -> None:
    result = Velocity().evaluate(_ctx(transfers_last_minute=6, transfers_last_hour=21), DEFAULT_CONFIG)
    assert result is not None
    assert result.score == DEFAULT_CONFIG.rules.VELOCITY.score
    assert "minute" in result.reason
    assert "hour" in result.reason


def test_velocity_alone_sends_a_transfer_to_review() -> None:
    decision = evaluate(_ctx(transfers_last_minute=6), DEFAULT_CONFIG)
    assert (decision.decision, decision.reasons) == (Decision.REVIEW, ("VELOCITY",))


# ---- NEW_DEVICE and DEVICE_MISMATCH ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_seen_at", "fires"),
    [
        (None, True),
        (NOW, True),
        (NOW - 24 * HOUR + 1, True),
        (NOW - 24 * HOUR, False),
        (NOW - 30 * 24 * HOUR, False),
        (NOW + 60, True),  # a clock ahead of ours: still new
    ],
)
def test_new_device_fires_for_a_device_first_seen_less_than_24_hours_ago_or_never(
    first_seen_at: int | None, fires: bool
) -> None:
    result = NewDevice().evaluate(_ctx(device_first_seen_at=first_seen_at), DEFAULT_CONFIG)
    assert (result is not None) is fires


def test_new_device_window_is_configurable() -> None:
    config = _config(rules__NEW_DEVICE__window_hours=1)
    assert NewDevice().evaluate(_ctx(device_first_seen_at=NOW - HOUR + 1), config) is not None
    assert NewDevice().evaluate(_ctx(device_first_seen_at=NOW - HOUR), config) is None


def test_a_new_device_alone_is_a_score_not_a_decline() -> None:
    decision = evaluate(_ctx(device_first_seen_at=NOW - HOUR), DEFAULT_CONFIG)
    assert decision.reasons == ("NEW_DEVICE",)
    assert decision.decision is Decision.APPROVE
    assert decision.contributions[0].decision_floor is None


@pytest.mark.parametrize(
    ("known", "fires"),
    [
        (frozenset({PHONE}), False),
        (frozenset({PHONE, KnownDevice("dev-tablet", NOW - HOUR)}), False),
        (frozenset({KnownDevice("dev-tablet", NOW - HOUR)}), True),
        # A profile that knows no device yet has nothing to mismatch: NEW_DEVICE speaks for it
        (frozenset(), False),
    ],
)
def test_device_mismatch_fires_when_the_device_is_not_among_the_users_devices(
    known: frozenset[KnownDevice], fires: bool
) -> None:
    result = DeviceMismatch().evaluate(_ctx(known_devices=known), DEFAULT_CONFIG)
    assert (result is not None) is fires


@pytest.mark.parametrize(
    ("signal_at", "fires"),
    [
        (None, False),
        (NOW - 60, True),  # a mismatch a minute ago, from the known device itself
        (NOW - 24 * HOUR + 1, True),
        (NOW - 24 * HOUR, False),  # the window is 24 hours
        (NOW + 60, True),  # a writer's clock ahead: counts as recent
    ],
)
def test_device_mismatch_fires_for_a_day_after_another_device_used_the_users_tokens(
    signal_at: int | None, fires: bool
) -> None:
    # Given a transfer from the user's own, known device
    result = DeviceMismatch().evaluate(_ctx(security_signal_at=signal_at), DEFAULT_CONFIG)
    # Then a recent device mismatch or refresh-token reuse on the user fires the rule anyway
    assert (result is not None) is fires
    if result is not None:
        assert result.score == DEFAULT_CONFIG.rules.DEVICE_MISMATCH.score


def test_an_unknown_device_alone_goes_to_review() -> None:
    decision = evaluate(_ctx(**_unknown_device()), DEFAULT_CONFIG)
    assert decision.decision is Decision.REVIEW
    assert decision.reasons == ("DEVICE_MISMATCH", "NEW_DEVICE")


# ---- BEHAVIORAL_ANOMALY ------------------------------------------------------------------------------------

# Mean 2,000 and population standard deviation exactly 1,000: mean + 3 sd is 5,000.
STEADY = AmountHistory.of([1_000, 3_000] * 3)


def test_the_steady_history_has_the_mean_and_deviation_the_boundaries_assume() -> None:
    assert (STEADY.count, STEADY.mean(), STEADY.variance(), STEADY.stddev()) == (6, 2_000, 1_000_000, 1_000)


@pytest.mark.parametrize(("amount", "fires"), [(4_999, False), (5_000, False), (5_001, True)])
def test_anomaly_fires_strictly_above_mean_plus_three_sigma(amount: int, fires: bool) -> None:
    result = BehavioralAnomaly().evaluate(_ctx(amount=amount, history=STEADY), DEFAULT_CONFIG)
    assert (result is not None) is fires


@pytest.mark.parametrize(("count", "fires"), [(0, False), (1, False), (4, False), (5, True), (6, True)])
def test_anomaly_needs_at_least_five_past_transfers(count: int, fires: bool) -> None:
    history = AmountHistory.of(([1_000, 3_000] * 3)[:count])
    result = BehavioralAnomaly().evaluate(_ctx(amount=1_000_000, history=history), DEFAULT_CONFIG)
    assert (result is not None) is fires


def test_anomaly_min_stddev_keeps_a_constant_history_from_flagging_every_small_rise() -> None:
    constant = AmountHistory.of([1_000] * 5)
    plain = _config()
    floored = _config(rules__BEHAVIORAL_ANOMALY__min_stddev=1_000)
    assert BehavioralAnomaly().evaluate(_ctx(amount=1_001, history=constant), plain) is not None
    assert BehavioralAnomaly().evaluate(_ctx(amount=4_000, history=constant), floored) is None
    assert BehavioralAnomaly().evaluate(_ctx(amount=4_001, history=constant), floored) is not None


@pytest.mark.parametrize(
    ("amount", "payee_known", "fires"),
    [(4_999_999, False, False), (5_000_000, False, True), (5_000_000, True, False), (9_000_000, True, False)],
)
def test_anomaly_fires_for_fifty_thousand_rupees_or_more_to_a_new_payee(
    amount: int, payee_known: bool, fires: bool
) -> None:
    result = BehavioralAnomaly().evaluate(_ctx(amount=amount, payee_known=payee_known), DEFAULT_CONFIG)
    assert (result is not None) is fires


def test_anomaly_adds_both_signals_into_one_contribution() -> None:
    params = DEFAULT_CONFIG.rules.BEHAVIORAL_ANOMALY
    result = BehavioralAnomaly().evaluate(
        _ctx(amount=5_000_000, history=STEADY, payee_known=False), DEFAULT_CONFIG
    )
    assert result is not None
    assert result.score == params.outlier_score + params.new_payee_score
    assert "standard deviations" in result.reason
    assert "new payee" in result.reason


# ---- the evaluator -----------------------------------------------------------------------------------------


def test_a_transfer_nothing_fires_on_is_approved_with_score_zero() -> None:
    decision = evaluate(_ctx(history=STEADY, amount=2_000), DEFAULT_CONFIG)
    assert decision == FraudDecision(Decision.APPROVE, 0, (), ())


def test_a_new_device_and_a_large_first_payment_together_reach_review() -> None:
    # Given a device first seen an hour ago and ₹50,000 to a payee never paid before
    ctx = _ctx(device_first_seen_at=NOW - HOUR, amount=5_000_000, payee_known=False)

    # When the engine evaluates it
    decision = evaluate(ctx, DEFAULT_CONFIG)

    # Then neither alone would stop it, but together they ask for a human
    assert decision.score == 50
    assert decision.decision is Decision.REVIEW
    assert decision.reasons == ("NEW_DEVICE", "BEHAVIORAL_ANOMALY")


def test_an_unknown_device_sending_fast_is_declined_with_the_score_capped() -> None:
    ctx = _ctx(**_unknown_device(), transfers_last_minute=9)
    decision = evaluate(ctx, DEFAULT_CONFIG)
    assert decision.decision is Decision.DECLINE
    assert decision.score == 100  # 60 + 50 + 25, capped
    assert decision.reasons == ("DEVICE_MISMATCH", "VELOCITY", "NEW_DEVICE")
    assert [c.score for c in decision.contributions] == [60, 50, 25]


def test_a_floor_raises_the_decision_but_never_lowers_it() -> None:
    # HIGH_AMOUNT floors at REVIEW; an unknown device and velocity push the score past DECLINE
    ctx = _ctx(**_unknown_device(), transfers_last_minute=9, amount=20_000_000, payee_known=True)
    assert evaluate(ctx, DEFAULT_CONFIG).decision is Decision.DECLINE


def test_thresholds_come_from_the_config() -> None:
    ctx = _ctx(transfers_last_minute=6)  # VELOCITY alone: 50
    assert evaluate(ctx, _config(review_threshold=51)).decision is Decision.APPROVE
    assert evaluate(ctx, _config(review_threshold=50)).decision is Decision.REVIEW
    assert evaluate(ctx, _config(review_threshold=10, decline_threshold=50)).decision is Decision.DECLINE


@pytest.mark.parametrize("name", RULE_NAMES)
def test_a_disabled_rule_does_not_fire(name: str) -> None:
    # Given a transfer on which every rule fires
    ctx = _ctx(
        **_unknown_device(),
        amount=100_000_000,
        transfers_last_minute=9,
        history=STEADY,
        payee_known=False,
    )
    assert set(evaluate(ctx, DEFAULT_CONFIG).reasons) == set(RULE_NAMES)

    # When one rule is switched off, then it alone is missing
    decision = evaluate(ctx, _config(**{f"rules__{name}__enabled": False}))
    assert set(decision.reasons) == set(RULE_NAMES) - {name}


def test_with_every_rule_disabled_everything_is_approved() -> None:
    ctx = _ctx(**_unknown_device(), amount=MAX_AMOUNT, transfers_last_minute=99, payee_known=False)
    assert evaluate(ctx, _only()).decision is Decision.APPROVE


def test_the_default_registry_holds_each_built_in_rule_under_its_name() -> None:
    assert set(DEFAULT_RULES) == set(RULE_NAMES)
    assert all(rule.name == name for name, rule in DEFAULT_RULES.items())
    assert isinstance(DEFAULT_RULES["HIGH_AMOUNT"], HighAmount)
    with pytest.raises(TypeError):
        DEFAULT_RULES["HIGH_AMOUNT"] = Velocity()  # type: ignore[index]


class _Exploding:
    name = "EXPLODING"

    def evaluate(self, ctx: FraudContext, config: FraudConfig) -> RuleResult | None:
        raise RuntimeError(f"lookup failed for account 123456789012 of {ctx.user_id}")


class _Returns:
    def __init__(self, name: str, value: Any) -> None:
        self.name = name
        self.value = value

    def evaluate(self, ctx: FraudContext, config: FraudConfig) -> RuleResult | None:
        result: RuleResult | None = self.value
        return result


def _with(*extra: Rule) -> dict[str, Rule]:
    return {**DEFAULT_RULES, **{rule.name: rule for rule in extra}}


def test_a_rule_that_raises_sends_the_transfer_to_review_and_the_other_rules_still_run() -> None:
    # Given a plugged-in rule that fails, on a transfer that the other rules alone would approve
    errors: list[tuple[str, Exception]] = []
    ctx = _ctx(device_first_seen_at=NOW - HOUR)

    # When it is evaluated
    rules = _with(_Exploding())
    decision = evaluate(ctx, DEFAULT_CONFIG, rules, on_rule_error=lambda n, e: errors.append((n, e)))

    # Then a bank neither approves what it could not check nor refuses it for its own bug: a human decides
    assert decision.decision is Decision.REVIEW
    assert decision.reasons == ("NEW_DEVICE", RULE_ERROR)
    error = decision.contributions[-1]
    assert (error.rule, error.score, error.decision_floor) == (RULE_ERROR, 0, Decision.REVIEW)
    assert error.reason == "EXPLODING could not be evaluated (RuntimeError)"
    # and the failure is handed to the caller to log, while the stored reason carries none of its data
    assert [(name, type(exc)) for name, exc in errors] == [("EXPLODING", RuntimeError)]
    assert "123456789012" not in json.dumps(decision.to_json())
    assert "user-1" not in json.dumps(decision.to_json())


def test_a_rule_error_does_not_soften_a_decline() -> None:
    ctx = _ctx(amount=100_000_000)
    assert evaluate(ctx, DEFAULT_CONFIG, _with(_Exploding())).decision is Decision.DECLINE


@pytest.mark.parametrize(
    "value",
    [
        {"rule": "EXPLODING", "score": 10},  # not a RuleResult
        RuleResult("VELOCITY", 10, "claims to be another rule"),
    ],
)
def test_a_rule_that_answers_with_something_else_counts_as_a_rule_error(value: Any) -> None:
    decision = evaluate(_ctx(), DEFAULT_CONFIG, _with(_Returns("EXPLODING", value)))
    assert decision.reasons == (RULE_ERROR,)
    assert decision.decision is Decision.REVIEW


def test_two_failing_rules_are_one_reason_and_two_contributions() -> None:
    class _AlsoExploding(_Exploding):
        name = "ALSO_EXPLODING"

    decision = evaluate(_ctx(), DEFAULT_CONFIG, _with(_Exploding(), _AlsoExploding()))
    assert decision.reasons == (RULE_ERROR,)
    assert len(decision.contributions) == 2


def test_a_plugged_in_rule_runs_and_a_registry_may_leave_built_ins_out() -> None:
    custom = _Returns("SANCTIONS", RuleResult("SANCTIONS", 95, "payee on a sanctions list"))
    decision = evaluate(_ctx(amount=100_000_000), DEFAULT_CONFIG, {"SANCTIONS": custom})
    assert decision.reasons == ("SANCTIONS",)
    assert decision.decision is Decision.DECLINE


def test_the_decision_serialises_to_the_transfer_fraud_field_plus_contributions() -> None:
    decision = evaluate(_ctx(amount=20_000_000, payee_known=False), DEFAULT_CONFIG)
    document = decision.to_json()
    assert document == {
        "decision": "REVIEW",
        "score": 55,
        "reasons": ["HIGH_AMOUNT", "BEHAVIORAL_ANOMALY"],
        "contributions": [
            {
                "rule": "HIGH_AMOUNT",
                "score": 30,
                "reason": "amount at or above the review limit",
                "decision_floor": "REVIEW",
            },
            {
                "rule": "BEHAVIORAL_ANOMALY",
                "score": 25,
                "reason": "large amount to a new payee",
                "decision_floor": None,
            },
        ],
    }
    assert FraudDecision.from_json(json.loads(json.dumps(document))) == decision


# ---- values are checked where they are made ----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rule": "HIGH_AMOUNT", "score": 101, "reason": "x"},
        {"rule": "HIGH_AMOUNT", "score": -1, "reason": "x"},
        {"rule": "HIGH_AMOUNT", "score": True, "reason": "x"},
        {"rule": "high_amount", "score": 1, "reason": "x"},
        {"rule": "HIGH_AMOUNT", "score": 1, "reason": ""},
        {"rule": "HIGH_AMOUNT", "score": 1, "reason": "x" * 201},
    ],
)
def test_a_rule_result_out_of_range_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must be"):
        RuleResult(**kwargs)


@pytest.mark.parametrize(
    "overrides",
    [
        {"amount": 0},
        {"amount": MAX_AMOUNT + 1},
        {"amount": 100.0},
        {"amount": True},
        {"transfers_last_minute": -1},
        {"device_id": ""},
        {"known_devices": {PHONE}},
        {"payee_known": 1},
    ],
)
def test_a_context_with_an_impossible_value_is_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must be"):
        _ctx(**overrides)


@pytest.mark.parametrize(("review", "decline"), [(0, 90), (90, 90), (50, 101)])
def test_combine_refuses_thresholds_that_cannot_work(review: int, decline: int) -> None:
    with pytest.raises(ValueError, match=r"thresholds"):
        FraudDecision.combine((), review_threshold=review, decline_threshold=decline)


# ---- the amount history ------------------------------------------------------------------------------------


def test_with_amount_returns_a_new_history_and_leaves_the_old_one_alone() -> None:
    before = AmountHistory.of([1_000, 3_000])
    after = before.with_amount(5_000)
    assert before == AmountHistory(count=2, total=4_000, total_squares=10_000_000)
    assert after == AmountHistory(count=3, total=9_000, total_squares=35_000_000)
    assert after.mean() == 3_000


def test_an_empty_history_has_no_spread_and_nothing_exceeds_it() -> None:
    empty = AmountHistory()
    assert (empty.mean(), empty.variance(), empty.stddev()) == (0, 0, 0)
    assert not empty.exceeds(MAX_AMOUNT, sigmas=3)


def test_stddev_is_the_floor_of_the_exact_deviation() -> None:
    history = AmountHistory.of([1, 2])  # variance 1/4, sd = 0.5
    assert history.variance() == Fraction(1, 4)
    assert history.stddev() == 0


@pytest.mark.parametrize(
    "fields",
    [
        {"count": -1},
        {"count": 0, "total": 5},
        {"count": 2, "total": 10, "total_squares": 49},  # (Σx)² = 100 > 2·49: no real amounts give that
        {"count": True},
    ],
)
def test_a_corrupt_history_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must|inconsistent"):
        AmountHistory(**fields)


@pytest.mark.parametrize("amount", [0, -5, 1.5, True, MAX_AMOUNT + 1])
def test_with_amount_refuses_anything_but_a_valid_amount(amount: Any) -> None:
    with pytest.raises(ValueError, match=r"amount"):
        AmountHistory().with_amount(amount)


amounts = st.integers(min_value=1, max_value=MAX_AMOUNT)


@PROPERTY
@given(st.lists(amounts, max_size=40), amounts, st.integers(0, 10), st.integers(0, 10**9))
def test_history_statistics_are_exact(past: list[int], amount: int, sigmas: int, min_stddev: int) -> None:
    history = AmountHistory.of(past)
    assert history == AmountHistory.of(reversed(past))
    if not past:
        return
    mean = Fraction(sum(past), len(past))
    variance = sum((Fraction(x) - mean) ** 2 for x in past) / len(past)
    assert history.mean() == mean
    assert history.variance() == variance
    assert history.stddev() ** 2 <= variance < (history.stddev() + 1) ** 2
    spread = max(variance, Fraction(min_stddev) ** 2)
    expected = amount > mean and (amount - mean) ** 2 > sigmas * sigmas * spread
    assert history.exceeds(amount, sigmas=sigmas, min_stddev=min_stddev) is expected
    # far from the boundary, the float formula agrees
    sd_float = max(math.sqrt(variance), min_stddev)
    threshold = float(mean) + sigmas * sd_float
    if abs(amount - threshold) > 1e-6 * max(1.0, threshold):
        assert expected is (amount > threshold)


# ---- properties of the whole engine ------------------------------------------------------------------------


@st.composite
def configs(draw: Callable[..., Any]) -> FraudConfig:
    review = draw(st.integers(1, 99))
    decline = draw(st.integers(review + 1, 100))
    review_amount = draw(st.integers(1, MAX_AMOUNT - 1))
    scores = st.integers(0, 100)
    document = {
        "review_threshold": review,
        "decline_threshold": decline,
        "rules": {
            "HIGH_AMOUNT": {
                "enabled": draw(st.booleans()),
                "review_amount": review_amount,
                "decline_amount": draw(st.integers(review_amount + 1, MAX_AMOUNT)),
                "review_score": draw(scores),
                "decline_score": draw(scores),
            },
            "VELOCITY": {
                "enabled": draw(st.booleans()),
                "max_per_minute": draw(st.integers(1, 20)),
                "max_per_hour": draw(st.integers(1, 200)),
                "score": draw(scores),
            },
            "NEW_DEVICE": {
                "enabled": draw(st.booleans()),
                "window_hours": draw(st.integers(1, 24 * 30)),
                "score": draw(st.integers(0, decline - 1)),
            },
            "DEVICE_MISMATCH": {"enabled": draw(st.booleans()), "score": draw(scores)},
            "BEHAVIORAL_ANOMALY": {
                "enabled": draw(st.booleans()),
                "min_history": draw(st.integers(2, 10)),
                "sigmas": draw(st.integers(1, 5)),
                "min_stddev": draw(st.integers(0, 10**7)),
                "outlier_score": draw(scores),
                "new_payee_amount": draw(amounts),
                "new_payee_score": draw(scores),
            },
        },
    }
    return load_fraud_config(document)


@st.composite
def contexts(draw: Callable[..., Any]) -> FraudContext:
    devices = draw(
        st.frozensets(
            st.builds(
                KnownDevice,
                st.sampled_from(["dev-a", "dev-b", "dev-c"]),
                st.integers(0, NOW + HOUR),
                st.booleans(),
            ),
            max_size=3,
        )
    )
    return _ctx(
        amount=draw(amounts),
        device_id=draw(st.sampled_from(["dev-a", "dev-b", "dev-z"])),
        known_devices=devices,
        device_first_seen_at=draw(st.none() | st.integers(NOW - 60 * 24 * HOUR, NOW + HOUR)),
        transfers_last_minute=draw(st.integers(0, 30)),
        transfers_last_hour=draw(st.integers(0, 300)),
        history=AmountHistory.of(draw(st.lists(st.integers(1, 10**9), max_size=12))),
        payee_known=draw(st.booleans()),
    )


@PROPERTY
@given(configs(), contexts(), amounts, amounts)
def test_with_high_amount_alone_a_bigger_amount_never_gets_a_milder_decision(
    config: FraudConfig, ctx: FraudContext, first: int, second: int
) -> None:
    only_high = load_fraud_config(
        {
            **config.to_document(),
            "rules": {
                name: {**section, "enabled": name == "HIGH_AMOUNT"}
                for name, section in config.to_document()["rules"].items()
            },
        }
    )
    smaller, bigger = sorted((first, second))
    milder = evaluate(_replace_amount(ctx, smaller), only_high).decision
    harsher = evaluate(_replace_amount(ctx, bigger), only_high).decision
    assert milder.severity <= harsher.severity


@PROPERTY
@given(configs(), contexts())
def test_the_score_is_always_0_to_100_and_the_decision_follows_thresholds_and_floors(
    config: FraudConfig, ctx: FraudContext
) -> None:
    decision = evaluate(ctx, config)
    assert 0 <= decision.score <= 100
    assert decision.score == min(100, sum(c.score for c in decision.contributions))
    by_score = (
        Decision.DECLINE
        if decision.score >= config.decline_threshold
        else Decision.REVIEW
        if decision.score >= config.review_threshold
        else Decision.APPROVE
    )
    floors = [c.decision_floor.severity for c in decision.contributions if c.decision_floor is not None]
    assert decision.decision.severity == max([by_score.severity, *floors])
    assert set(decision.reasons) <= {name for name in RULE_NAMES if config.is_enabled(name)}
    assert len(set(decision.reasons)) == len(decision.reasons)
    assert FraudDecision.from_json(json.loads(json.dumps(decision.to_json()))) == decision


def _replace_amount(ctx: FraudContext, amount: int) -> FraudContext:
    return dataclasses.replace(ctx, amount=amount)


def test_a_context_without_its_counters_and_profile_cannot_be_built() -> None:
    # A service that forgot to read the velocity counters must not pass them off as "no transfers".
    with pytest.raises(TypeError):
        FraudContext(  # type: ignore[call-arg]
            transfer_id="tr-1",
            user_id="user-1",
            source_account_id="acc_src",
            destination_account_id="acc_dst",
            amount=100,
            currency="INR",
            device_id="dev-phone",
            now=NOW,
        )

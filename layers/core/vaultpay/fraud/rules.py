"""The built-in fraud rules, the registry they are plugged into, and `evaluate`, which runs them.

A rule is anything with a `name` and an `evaluate(ctx, config)` that returns a `RuleResult` when it fires and
None when it does not. Rules are pure: they read the context and their own section of the configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Protocol

from vaultpay.fraud.config import FraudConfig
from vaultpay.fraud.model import RULE_ERROR, Decision, FraudContext, FraudDecision, RuleResult

HOUR_S = 3600


class Rule(Protocol):
    @property
    def name(self) -> str: ...

    def evaluate(self, ctx: FraudContext, config: FraudConfig) -> RuleResult | None: ...


class HighAmount:
    """A large transfer: at least REVIEW from the review amount, DECLINE from the decline amount."""

    name = "HIGH_AMOUNT"

    def evaluate(self, ctx: FraudContext, config: FraudConfig) -> RuleResult | None:
        params = config.rules.HIGH_AMOUNT
        if ctx.amount >= params.decline_amount:
            return RuleResult(
                self.name, params.decline_score, "amount at or above the decline limit", Decision.DECLINE
            )
        if ctx.amount >= params.review_amount:
            return RuleResult(
                self.name, params.review_score, "amount at or above the review limit", Decision.REVIEW
            )
        return None


class Velocity:
    """Too many transfers by the same user in a minute or in an hour (the counts include this one)."""

    name = "VELOCITY"

    def evaluate(self, ctx: FraudContext, config: FraudConfig) -> RuleResult | None:
        params = config.rules.VELOCITY
        windows = []
        if ctx.transfers_last_minute > params.max_per_minute:
            windows.append(f"more than {params.max_per_minute} transfers in a minute")
        if ctx.transfers_last_hour > params.max_per_hour:
            windows.append(f"more than {params.max_per_hour} transfers in an hour")
        if not windows:
            return None
        return RuleResult(self.name, params.score, " and ".join(windows))


class NewDevice:
    """The transfer comes from a device first seen recently, or never: a score, never a decline on its own."""

    name = "NEW_DEVICE"

    def evaluate(self, ctx: FraudContext, config: FraudConfig) -> RuleResult | None:
        params = config.rules.NEW_DEVICE
        if ctx.device_first_seen_at is None:
            return RuleResult(self.name, params.score, "device never seen before")
        # A first-seen time in the future (clock skew between writers) counts as new, not as old.
        if ctx.now - ctx.device_first_seen_at < params.window_hours * HOUR_S:
            return RuleResult(
                self.name, params.score, f"device first seen less than {params.window_hours} h ago"
            )
        return None


# How long a device mismatch or a refresh-token reuse keeps the user's transfers under DEVICE_MISMATCH.
SECURITY_SIGNAL_WINDOW_S = 24 * HOUR_S


class DeviceMismatch:
    """The transfer's device is not among the devices the user is known to log in from, or someone used the
    user's tokens from another device (`vaultpay.auth.device.mismatch`) or replayed a rotated refresh token
    (`vaultpay.auth.token.reuse_detected`) in the last 24 hours: the account may be in someone else's hands.

    A profile that knows no device yet (a new customer, or one whose logins the fraud-workers consumer has
    not caught up with) has nothing to mismatch: NEW_DEVICE speaks for a device never seen.
    """

    name = "DEVICE_MISMATCH"

    def evaluate(self, ctx: FraudContext, config: FraudConfig) -> RuleResult | None:
        score = config.rules.DEVICE_MISMATCH.score
        signal_at = ctx.security_signal_at
        # A signal "from the future" (clock skew between writers) counts as recent.
        if signal_at is not None and ctx.now - signal_at < SECURITY_SIGNAL_WINDOW_S:
            return RuleResult(self.name, score, "another device used this user's tokens in the last 24 h")
        if ctx.device_known or not ctx.known_devices:
            return None
        return RuleResult(self.name, score, "device not among the user's devices")


class BehavioralAnomaly:
    """An amount far above the user's own history, or a large first payment to a new payee."""

    name = "BEHAVIORAL_ANOMALY"

    def evaluate(self, ctx: FraudContext, config: FraudConfig) -> RuleResult | None:
        params = config.rules.BEHAVIORAL_ANOMALY
        score = 0
        signals = []
        if ctx.history.count >= params.min_history and ctx.history.exceeds(
            ctx.amount, sigmas=params.sigmas, min_stddev=params.min_stddev
        ):
            score += params.outlier_score
            signals.append(f"amount above the user's mean + {params.sigmas} standard deviations")
        if not ctx.payee_known and ctx.amount >= params.new_payee_amount:
            score += params.new_payee_score
            signals.append("large amount to a new payee")
        if not signals:
            return None
        return RuleResult(self.name, min(score, 100), "; ".join(signals))


DEFAULT_RULES: Mapping[str, Rule] = MappingProxyType(
    {
        rule.name: rule
        for rule in (HighAmount(), Velocity(), DeviceMismatch(), NewDevice(), BehavioralAnomaly())
    }
)


def evaluate(
    ctx: FraudContext,
    config: FraudConfig,
    rules: Mapping[str, Rule] = DEFAULT_RULES,
    *,
    on_rule_error: Callable[[str, Exception], None] | None = None,
) -> FraudDecision:
    """Run every enabled rule on `ctx` and merge what fired into one explainable decision.

    A rule that raises (or answers with something that is not its own `RuleResult`) does not stop the
    others, and it is not ignored either: a bank cannot approve a payment it could not fully check, nor
    refuse one for its own bug, so it becomes a `RULE_ERROR` contribution with score 0 and a REVIEW floor,
    and a human decides. `on_rule_error` lets the caller log the exception (this module does no I/O).
    """
    results: list[RuleResult] = []
    for name, rule in rules.items():
        if not config.is_enabled(name):
            continue
        try:
            result = rule.evaluate(ctx, config)
            if result is not None and (not isinstance(result, RuleResult) or result.rule != name):
                raise TypeError(f"rule {name} returned something other than its own RuleResult")
        except Exception as exc:  # any failure of a rule becomes a REVIEW, see above
            if on_rule_error is not None:
                on_rule_error(name, exc)
            # The reason names the rule and the exception's type only: an exception's message may quote data.
            reason = f"{name} could not be evaluated ({type(exc).__name__})"
            results.append(RuleResult(RULE_ERROR, 0, reason[:200], Decision.REVIEW))
            continue
        if result is not None:
            results.append(result)
    return FraudDecision.combine(
        results, review_threshold=config.review_threshold, decline_threshold=config.decline_threshold
    )

"""The fraud engine's pure model: what a transfer looks like to the rules, what a rule says, what is decided.

Nothing here reads or writes anything, and only the standard library and the kernel are imported. The
fraud service gathers a `FraudContext` (the transfer, the authorizer's device id, the user's known devices,
velocity counts and amount history from the fraud tables), the rules each return a `RuleResult` or
nothing, and `FraudDecision.combine` merges those into APPROVE / REVIEW / DECLINE with every contribution
kept, so that each decision can be explained to an admin afterwards.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Any

# MAX_AMOUNT is re-exported: the rules' configuration bounds its amounts with it.
from vaultpay.shared.kernel import MAX_AMOUNT, is_amount

MAX_SCORE = 100
MAX_REASON_LENGTH = 200
# The contribution recorded when a rule raised instead of answering (see `rules.evaluate`).
RULE_ERROR = "RULE_ERROR"

_RULE_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


class Decision(StrEnum):
    APPROVE = "APPROVE"
    REVIEW = "REVIEW"
    DECLINE = "DECLINE"

    @property
    def severity(self) -> int:
        """0 for APPROVE, 1 for REVIEW, 2 for DECLINE: a larger number is a harsher decision."""
        return _SEVERITY[self]

    def at_least(self, floor: Decision | None) -> Decision:
        """This decision, raised to `floor` if `floor` is harsher."""
        if floor is None or floor.severity <= self.severity:
            return self
        return floor


_SEVERITY = {Decision.APPROVE: 0, Decision.REVIEW: 1, Decision.DECLINE: 2}


def _is_int(value: object) -> bool:
    # bool is an int subclass; True must never pass for a count or an amount.
    return isinstance(value, int) and not isinstance(value, bool)


def _require_non_negative(name: str, value: object) -> None:
    if not _is_int(value) or value < 0:  # type: ignore[operator]
        raise ValueError(f"{name} must be a non-negative integer")


def _require_amount(value: object) -> None:
    if not is_amount(value):
        raise ValueError(f"amount must be an integer number of minor units in 1..{MAX_AMOUNT}")


# ---- the user's amount history -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AmountHistory:
    """Running statistics of a user's past transfer amounts, in integers only.

    Welford's algorithm keeps a running mean and M2 to avoid the cancellation that `sum(x^2) - sum(x)^2 / n`
    suffers in floating point. With exact integers there is nothing to cancel: n*M2 = n*sum(x^2) - sum(x)^2
    exactly, so the count, the sum and the sum of squares are stored (all integers; at 10^12 paise a transfer
    the sum of squares of a million transfers has 30 digits, inside DynamoDB's 38) and the mean, variance and
    outlier test are derived exactly with `Fraction` and integer comparisons, never a float.
    """

    count: int = 0
    total: int = 0
    total_squares: int = 0

    def __post_init__(self) -> None:
        _require_non_negative("count", self.count)
        _require_non_negative("total", self.total)
        _require_non_negative("total_squares", self.total_squares)
        if self.count == 0 and (self.total or self.total_squares):
            raise ValueError("an empty history must have a zero total and total_squares")
        # Cauchy-Schwarz: n·Σx² ≥ (Σx)² for any real amounts; a stored history that breaks it is corrupt.
        if self.count * self.total_squares < self.total * self.total:
            raise ValueError("total_squares is inconsistent with count and total")

    def with_amount(self, amount: int) -> AmountHistory:
        """The history after one more transfer of `amount`."""
        _require_amount(amount)
        return AmountHistory(
            count=self.count + 1,
            total=self.total + amount,
            total_squares=self.total_squares + amount * amount,
        )

    @classmethod
    def of(cls, amounts: Iterable[int]) -> AmountHistory:
        """The history of `amounts`, in any order."""
        history = cls()
        for amount in amounts:
            history = history.with_amount(amount)
        return history

    def mean(self) -> Fraction:
        """The exact mean amount (0 for an empty history)."""
        if self.count == 0:
            return Fraction(0)
        return Fraction(self.total, self.count)

    def variance(self) -> Fraction:
        """The exact population variance (0 for an empty history)."""
        if self.count == 0:
            return Fraction(0)
        return Fraction(self._n_squared_variance(), self.count * self.count)

    def stddev(self) -> int:
        """The population standard deviation in whole minor units, rounded down."""
        if self.count == 0:
            return 0
        # isqrt(floor(x)) = floor(sqrt(x)) for x >= 0, so this is the exact floor of the deviation.
        return math.isqrt(self._n_squared_variance() // (self.count * self.count))

    def exceeds(self, amount: int, *, sigmas: int, min_stddev: int = 0) -> bool:
        """Whether `amount` > mean + sigmas * max(stddev, min_stddev), decided exactly in integers.

        An empty history exceeds nothing: there is no "usual" to be far above.
        """
        _require_amount(amount)
        _require_non_negative("sigmas", sigmas)
        _require_non_negative("min_stddev", min_stddev)
        n = self.count
        if n == 0:
            return False
        # Multiply through by n: amount - mean > k*sd  <=>  n*amount - sum(x) > k*sqrt(n^2 * variance), and
        # with both sides non-negative, squaring keeps the order.
        excess = n * amount - self.total
        if excess <= 0:
            return False
        n_squared_variance = max(self._n_squared_variance(), (n * min_stddev) ** 2)
        return excess * excess > sigmas * sigmas * n_squared_variance

    def _n_squared_variance(self) -> int:
        return self.count * self.total_squares - self.total * self.total


# ---- what the rules look at --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KnownDevice:
    """A device the user has logged in from, as the fraud profile records it."""

    device_id: str
    first_seen_at: int  # epoch seconds
    trusted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FraudContext:
    """Everything the rules may look at for one transfer; built by the fraud service, never from a body.

    `device_id` is the authorizer's, `known_devices` and `device_first_seen_at` come from the user's fraud
    profile (kept current by the `fraud-workers` consumer), and the velocity counts include this transfer.
    """

    transfer_id: str
    user_id: str
    source_account_id: str
    destination_account_id: str
    amount: int
    currency: str
    device_id: str
    # No defaults below: a counter or profile the service forgot to read must fail here, not pass as "quiet".
    known_devices: frozenset[KnownDevice]
    device_first_seen_at: int | None  # None: the profile has never seen this device
    transfers_last_minute: int
    transfers_last_hour: int
    history: AmountHistory
    payee_known: bool
    now: int  # epoch seconds
    # The newest device mismatch or refresh-token reuse on the user (epoch seconds); None: none known.
    security_signal_at: int | None = None

    def __post_init__(self) -> None:
        for name in ("transfer_id", "user_id", "source_account_id", "destination_account_id", "device_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string")
        _require_amount(self.amount)
        if not isinstance(self.currency, str) or len(self.currency) != 3:
            raise ValueError("currency must be an ISO 4217 code")
        if not isinstance(self.known_devices, frozenset) or not all(
            isinstance(device, KnownDevice) for device in self.known_devices
        ):
            raise ValueError("known_devices must be a frozenset of KnownDevice")
        if self.device_first_seen_at is not None:
            _require_non_negative("device_first_seen_at", self.device_first_seen_at)
        _require_non_negative("transfers_last_minute", self.transfers_last_minute)
        _require_non_negative("transfers_last_hour", self.transfers_last_hour)
        _require_non_negative("now", self.now)
        if not isinstance(self.history, AmountHistory):
            raise ValueError("history must be an AmountHistory")
        if not isinstance(self.payee_known, bool):
            raise ValueError("payee_known must be a boolean")

    @property
    def device_known(self) -> bool:
        """Whether the transfer's device is one the user has logged in from."""
        return any(device.device_id == self.device_id for device in self.known_devices)


# ---- what the rules say, and what is decided ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One rule's contribution: a score, a short reason (no PII, no account numbers), and optionally a floor
    under the decision (a rule may force at least REVIEW or DECLINE whatever the total score)."""

    rule: str
    score: int
    reason: str
    decision_floor: Decision | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.rule, str) or not _RULE_NAME.fullmatch(self.rule):
            raise ValueError("rule must be an upper-case rule name")
        if not _is_int(self.score) or not 0 <= self.score <= MAX_SCORE:
            raise ValueError(f"score must be an integer in 0..{MAX_SCORE}")
        if not isinstance(self.reason, str) or not 1 <= len(self.reason) <= MAX_REASON_LENGTH:
            raise ValueError(f"reason must be 1..{MAX_REASON_LENGTH} characters")
        if self.decision_floor is not None and not isinstance(self.decision_floor, Decision):
            raise ValueError("decision_floor must be a Decision or None")

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "score": self.score,
            "reason": self.reason,
            "decision_floor": None if self.decision_floor is None else self.decision_floor.value,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RuleResult:
        floor = data.get("decision_floor")
        return cls(
            rule=data["rule"],
            score=data["score"],
            reason=data["reason"],
            decision_floor=None if floor is None else Decision(floor),
        )


@dataclass(frozen=True, slots=True)
class FraudDecision:
    """The engine's verdict on one transfer, with every rule contribution that led to it.

    `reasons` are the names of the rules that fired, highest score first (docs/api.md's `fraud.reasons`);
    `contributions` are in the same order.
    """

    decision: Decision
    score: int
    reasons: tuple[str, ...]
    contributions: tuple[RuleResult, ...]

    @classmethod
    def combine(
        cls, contributions: Iterable[RuleResult], *, review_threshold: int, decline_threshold: int
    ) -> FraudDecision:
        """Sum the scores (capped at 100), map the total through the thresholds, then apply the floors."""
        if not 0 < review_threshold < decline_threshold <= MAX_SCORE:
            raise ValueError(f"thresholds must satisfy 0 < review < decline <= {MAX_SCORE}")
        # sorted() is stable: equal scores keep the order the rules ran in, so the output is deterministic.
        ordered = tuple(sorted(contributions, key=lambda result: -result.score))
        score = min(MAX_SCORE, sum(result.score for result in ordered))
        if score >= decline_threshold:
            decision = Decision.DECLINE
        elif score >= review_threshold:
            decision = Decision.REVIEW
        else:
            decision = Decision.APPROVE
        for result in ordered:
            decision = decision.at_least(result.decision_floor)
        reasons = tuple(dict.fromkeys(result.rule for result in ordered))
        return cls(decision=decision, score=score, reasons=reasons, contributions=ordered)

    def to_json(self) -> dict[str, Any]:
        """docs/api.md's transfer `fraud` object (`decision`, `score`, `reasons`) plus the contributions."""
        return {
            "decision": self.decision.value,
            "score": self.score,
            "reasons": list(self.reasons),
            "contributions": [result.to_json() for result in self.contributions],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FraudDecision:
        """The decision `to_json` produced, read back from storage."""
        score = data["score"]
        if not _is_int(score) or not 0 <= score <= MAX_SCORE:
            raise ValueError(f"score must be an integer in 0..{MAX_SCORE}")
        return cls(
            decision=Decision(data["decision"]),
            score=score,
            reasons=tuple(str(reason) for reason in data["reasons"]),
            contributions=tuple(RuleResult.from_json(item) for item in data.get("contributions", ())),
        )

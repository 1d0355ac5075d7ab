"""The fraud engine's configuration: which rules run, their parameters and the decision thresholds, validated.

A stage's configuration is a JSON document (SSM Parameter Store per stage; the defaults are in
`infra/fraud/default-config.json`, which must parse into exactly `DEFAULT_CONFIG`). Every field is required:
a document that leaves one out fails loudly, naming it, rather than silently running with a value from code.
Values are strict (no `"50"` for 50, no `true` for 1) and unknown keys are refused, so a typo in a rule's
parameter cannot quietly switch that parameter off.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from vaultpay.fraud.model import MAX_SCORE
from vaultpay.shared.errors import ConfigurationError, FieldError
from vaultpay.shared.kernel import MAX_AMOUNT

Score = Annotated[int, Field(ge=0, le=MAX_SCORE)]
Threshold = Annotated[int, Field(ge=1, le=MAX_SCORE)]
Amount = Annotated[int, Field(ge=1, le=MAX_AMOUNT)]


class InvalidFraudConfig(ConfigurationError):
    """A fraud configuration document that cannot be used; `errors` names each bad field."""

    def __init__(self, message: str, *, errors: tuple[FieldError, ...] = ()) -> None:
        super().__init__(message)
        self.errors = errors


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class RuleConfig(_Strict):
    """What every rule's section has: the switch."""

    enabled: bool


class HighAmountConfig(RuleConfig):
    review_amount: Amount  # paise; at or above: at least REVIEW
    decline_amount: Amount  # paise; at or above: DECLINE
    review_score: Score
    decline_score: Score

    @field_validator("decline_amount")
    @classmethod
    def _decline_above_review(cls, value: int, info: ValidationInfo) -> int:
        review = info.data.get("review_amount")
        if review is not None and value <= review:
            raise ValueError("must be greater than review_amount")
        return value


class VelocityConfig(RuleConfig):
    max_per_minute: Annotated[int, Field(ge=1)]  # more than this many in a minute fires
    max_per_hour: Annotated[int, Field(ge=1)]  # more than this many in an hour fires
    score: Score


class NewDeviceConfig(RuleConfig):
    window_hours: Annotated[int, Field(ge=1, le=24 * 365)]  # a device first seen less than this ago is new
    score: Score


class DeviceMismatchConfig(RuleConfig):
    score: Score


class BehavioralAnomalyConfig(RuleConfig):
    # The standard deviation of fewer than two amounts is zero, which would flag any amount above the mean.
    min_history: Annotated[int, Field(ge=2)]
    sigmas: Annotated[int, Field(ge=1, le=100)]
    # A floor under the deviation, in paise, for users whose history barely varies (0: plain mean + k*sd).
    min_stddev: Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
    outlier_score: Score
    new_payee_amount: Amount  # paise; a first transfer to a payee at or above this fires
    new_payee_score: Score


class RulesConfig(_Strict):
    """One section per built-in rule, named exactly as the rule (and as it appears in `fraud.reasons`)."""

    HIGH_AMOUNT: HighAmountConfig
    VELOCITY: VelocityConfig
    NEW_DEVICE: NewDeviceConfig
    DEVICE_MISMATCH: DeviceMismatchConfig
    BEHAVIORAL_ANOMALY: BehavioralAnomalyConfig


class FraudConfig(_Strict):
    """A total score at or above `review_threshold` is REVIEW, at or above `decline_threshold` DECLINE; a
    rule's decision floor can only make the decision harsher."""

    review_threshold: Threshold
    decline_threshold: Threshold
    rules: RulesConfig

    @field_validator("decline_threshold")
    @classmethod
    def _decline_above_review(cls, value: int, info: ValidationInfo) -> int:
        review = info.data.get("review_threshold")
        if review is not None and value <= review:
            raise ValueError("must be greater than review_threshold")
        return value

    @model_validator(mode="after")
    def _new_device_never_declines_alone(self) -> FraudConfig:
        # A new phone is how most customers first meet their bank's app; on its own it may ask for a look,
        # never refuse the payment.
        if self.rules.NEW_DEVICE.score >= self.decline_threshold:
            raise ValueError("rules.NEW_DEVICE.score must be below decline_threshold")
        return self

    def rule_config(self, name: str) -> RuleConfig | None:
        """The section of the rule called `name`, or None for a rule this configuration does not know."""
        if name not in RulesConfig.model_fields:
            return None
        section: RuleConfig = getattr(self.rules, name)
        return section

    def is_enabled(self, name: str) -> bool:
        """Whether the rule called `name` runs. A plugged-in rule without a section here brings its own
        parameters and always runs: the configuration switches off only what it names."""
        section = self.rule_config(name)
        return True if section is None else section.enabled

    def to_document(self) -> dict[str, Any]:
        """The JSON document that `load_fraud_config` reads back into this configuration."""
        return self.model_dump(mode="json")


def load_fraud_config(document: Mapping[str, Any] | str | bytes) -> FraudConfig:
    """Validate a configuration document (parsed, or JSON text); the error names every bad field."""
    if isinstance(document, str | bytes):
        data: Any = _parse_json(document)
    else:
        data = dict(document)
    try:
        return FraudConfig.model_validate(data)
    except ValidationError as exc:
        errors = tuple(_field_error(error) for error in exc.errors(include_input=False, include_url=False))
        problems = "; ".join(f"{error.field} {error.message}" for error in errors)
        # `from None`: pydantic's own text quotes the offending input; the fields and reasons are enough.
        raise InvalidFraudConfig(f"invalid fraud config: {problems}", errors=errors) from None


def _parse_json(text: str | bytes) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        error = FieldError("(document)", f"is not valid JSON (line {exc.lineno}, column {exc.colno})")
        raise InvalidFraudConfig(
            f"invalid fraud config: {error.field} {error.message}", errors=(error,)
        ) from None
    except _DuplicateKey as exc:
        error = FieldError(str(exc), "appears more than once")
        raise InvalidFraudConfig(
            f"invalid fraud config: {error.field} {error.message}", errors=(error,)
        ) from None


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys; in a config that hides which value the author meant.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _field_error(error: Any) -> FieldError:
    name = ".".join(str(part) for part in error["loc"]) or "(document)"
    kind = error["type"]
    if kind == "missing":
        message = "is not set"
    elif kind == "extra_forbidden":
        message = "is not a known setting"
    elif kind == "value_error":
        message = str(error["ctx"]["error"])
    else:
        text: str = error["msg"]
        message = text[:1].lower() + text[1:]
    if kind == "value_error" and name == "(document)" and message.startswith("rules."):
        # A cross-section check names its own field at the start of its message.
        name, _, message = message.partition(" ")
    return FieldError(name, message)


DEFAULT_CONFIG = FraudConfig(
    review_threshold=50,
    decline_threshold=90,
    rules=RulesConfig(
        HIGH_AMOUNT=HighAmountConfig(
            enabled=True,
            review_amount=20_000_000,  # ₹2,00,000
            decline_amount=100_000_000,  # ₹10,00,000
            # Low on purpose: the REVIEW floor already holds it for a human; a high score here would
            # let ordinary soft signals (a new device, a new payee) push a reviewable amount to DECLINE.
            review_score=30,
            decline_score=100,
        ),
        VELOCITY=VelocityConfig(enabled=True, max_per_minute=5, max_per_hour=20, score=50),
        NEW_DEVICE=NewDeviceConfig(enabled=True, window_hours=24, score=25),
        DEVICE_MISMATCH=DeviceMismatchConfig(enabled=True, score=60),
        BEHAVIORAL_ANOMALY=BehavioralAnomalyConfig(
            enabled=True,
            min_history=5,
            sigmas=3,
            min_stddev=0,
            outlier_score=30,
            new_payee_amount=5_000_000,  # ₹50,000
            new_payee_score=25,
        ),
    ),
)

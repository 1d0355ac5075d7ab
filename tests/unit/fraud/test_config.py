"""The fraud configuration: the shipped defaults, and refusing any document a stage should not run with."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from vaultpay.fraud.config import DEFAULT_CONFIG, FraudConfig, InvalidFraudConfig, load_fraud_config
from vaultpay.shared.errors import ConfigurationError

pytestmark = pytest.mark.unit

DEFAULT_FILE = Path(__file__).resolve().parents[3] / "infra" / "fraud" / "default-config.json"


def _document(**changes: Any) -> dict[str, Any]:
    """The default document with `rules__HIGH_AMOUNT__score`-style paths set (or, for None, removed)."""
    document = copy.deepcopy(DEFAULT_CONFIG.to_document())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = document
        for part in parents:
            node = node[part]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    return document


def _refused(document: Any) -> InvalidFraudConfig:
    with pytest.raises(InvalidFraudConfig) as caught:
        load_fraud_config(document)
    return caught.value


def _fields(error: InvalidFraudConfig) -> set[str]:
    return {field_error.field for field_error in error.errors}


# ---- the defaults ------------------------------------------------------------------------------------------


def test_the_shipped_default_file_loads_into_exactly_the_default_config() -> None:
    # Given the JSON the deploy pipeline puts in SSM for a stage with no overrides
    text = DEFAULT_FILE.read_text(encoding="utf-8")

    # When it is loaded
    config = load_fraud_config(text)

    # Then it is the code's default, field for field, and the file holds nothing more
    assert config == DEFAULT_CONFIG
    assert json.loads(text) == DEFAULT_CONFIG.to_document()


def test_the_defaults_are_the_documented_thresholds() -> None:
    rules = DEFAULT_CONFIG.rules
    assert (DEFAULT_CONFIG.review_threshold, DEFAULT_CONFIG.decline_threshold) == (50, 90)
    assert (rules.HIGH_AMOUNT.review_amount, rules.HIGH_AMOUNT.decline_amount) == (20_000_000, 100_000_000)
    assert (rules.VELOCITY.max_per_minute, rules.VELOCITY.max_per_hour) == (5, 20)
    assert rules.NEW_DEVICE.window_hours == 24
    assert rules.NEW_DEVICE.score < DEFAULT_CONFIG.decline_threshold
    assert (rules.BEHAVIORAL_ANOMALY.min_history, rules.BEHAVIORAL_ANOMALY.sigmas) == (5, 3)
    assert rules.BEHAVIORAL_ANOMALY.new_payee_amount == 5_000_000
    assert all(DEFAULT_CONFIG.is_enabled(name) for name in type(rules).model_fields)


def test_a_config_round_trips_through_its_document_as_mapping_text_and_bytes() -> None:
    document = DEFAULT_CONFIG.to_document()
    assert load_fraud_config(document) == DEFAULT_CONFIG
    assert load_fraud_config(json.dumps(document)) == DEFAULT_CONFIG
    assert load_fraud_config(json.dumps(document).encode()) == DEFAULT_CONFIG


def test_a_stage_can_change_a_parameter_and_switch_a_rule_off() -> None:
    config = load_fraud_config(
        _document(rules__VELOCITY__max_per_minute=3, rules__NEW_DEVICE__enabled=False, review_threshold=40)
    )
    assert config.rules.VELOCITY.max_per_minute == 3
    assert config.review_threshold == 40
    assert not config.is_enabled("NEW_DEVICE")
    assert config.is_enabled("VELOCITY")


def test_a_rule_the_config_does_not_name_is_enabled_with_its_own_parameters() -> None:
    assert DEFAULT_CONFIG.rule_config("SANCTIONS_LIST") is None
    assert DEFAULT_CONFIG.is_enabled("SANCTIONS_LIST")


def test_a_loaded_config_cannot_be_changed_in_place() -> None:
    with pytest.raises(ValidationError):
        DEFAULT_CONFIG.review_threshold = 1  # type: ignore[misc]


# ---- refusals ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({**_document(), "decline_threshhold": 95}, "decline_threshhold"),
        (_document(rules__HIGH_AMOUNT__review_amout=1), "rules.HIGH_AMOUNT.review_amout"),
        (_document(rules__SANCTIONS={"enabled": True}), "rules.SANCTIONS"),
    ],
)
def test_unknown_keys_are_refused_by_name(document: dict[str, Any], field: str) -> None:
    error = _refused(document)
    assert field in _fields(error)
    assert f"{field} is not a known setting" in str(error)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"review_threshold": -1}, "review_threshold"),
        ({"review_threshold": 0}, "review_threshold"),
        ({"decline_threshold": 101}, "decline_threshold"),
        ({"rules__HIGH_AMOUNT__review_amount": -20_000_000}, "rules.HIGH_AMOUNT.review_amount"),
        ({"rules__HIGH_AMOUNT__decline_score": -5}, "rules.HIGH_AMOUNT.decline_score"),
        ({"rules__VELOCITY__max_per_hour": -1}, "rules.VELOCITY.max_per_hour"),
        ({"rules__VELOCITY__score": 101}, "rules.VELOCITY.score"),
        ({"rules__NEW_DEVICE__window_hours": 0}, "rules.NEW_DEVICE.window_hours"),
        ({"rules__BEHAVIORAL_ANOMALY__min_history": 1}, "rules.BEHAVIORAL_ANOMALY.min_history"),
        ({"rules__BEHAVIORAL_ANOMALY__min_stddev": -1}, "rules.BEHAVIORAL_ANOMALY.min_stddev"),
        ({"rules__BEHAVIORAL_ANOMALY__new_payee_amount": 0}, "rules.BEHAVIORAL_ANOMALY.new_payee_amount"),
    ],
)
def test_negative_or_out_of_range_values_are_refused_by_name(change: dict[str, Any], field: str) -> None:
    assert _fields(_refused(_document(**change))) == {field}


@pytest.mark.parametrize(("review", "decline"), [(90, 90), (95, 90)])
def test_a_review_threshold_at_or_above_the_decline_threshold_is_refused(review: int, decline: int) -> None:
    error = _refused(_document(review_threshold=review, decline_threshold=decline))
    assert _fields(error) == {"decline_threshold"}
    assert "decline_threshold must be greater than review_threshold" in str(error)


def test_a_decline_amount_at_or_below_the_review_amount_is_refused() -> None:
    error = _refused(_document(rules__HIGH_AMOUNT__decline_amount=20_000_000))
    assert _fields(error) == {"rules.HIGH_AMOUNT.decline_amount"}


def test_a_new_device_score_that_would_decline_on_its_own_is_refused() -> None:
    error = _refused(_document(rules__NEW_DEVICE__score=90))
    assert _fields(error) == {"rules.NEW_DEVICE.score"}
    assert "rules.NEW_DEVICE.score must be below decline_threshold" in str(error)


def test_a_missing_setting_is_named_instead_of_defaulted_from_code() -> None:
    error = _refused(_document(rules__VELOCITY__max_per_minute=None, decline_threshold=None))
    assert _fields(error) == {"rules.VELOCITY.max_per_minute", "decline_threshold"}
    assert "rules.VELOCITY.max_per_minute is not set" in str(error)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"review_threshold": "50"}, "review_threshold"),
        ({"review_threshold": 50.0}, "review_threshold"),
        ({"review_threshold": True}, "review_threshold"),
        ({"rules__VELOCITY__enabled": 1}, "rules.VELOCITY.enabled"),
        ({"rules__VELOCITY__enabled": "false"}, "rules.VELOCITY.enabled"),
    ],
)
def test_values_of_the_wrong_json_type_are_refused_not_coerced(change: dict[str, Any], field: str) -> None:
    assert _fields(_refused(_document(**change))) == {field}


def test_every_bad_field_is_named_in_one_error() -> None:
    error = _refused(_document(review_threshold=-1, rules__VELOCITY__score=-1, rules__DEVICE_MISMATCH__x=1))
    assert _fields(error) == {"review_threshold", "rules.VELOCITY.score", "rules.DEVICE_MISMATCH.x"}


def test_the_error_is_a_configuration_error_without_the_validator_chained() -> None:
    error = _refused(_document(review_threshold=-1))
    assert isinstance(error, ConfigurationError)
    assert error.__cause__ is None
    assert str(error).startswith("invalid fraud config: ")


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ('{"review_threshold": 50,', "(document)", "is not valid JSON"),
        ('{"review_threshold": 50, "review_threshold": 10}', "review_threshold", "appears more than once"),
        ("[1, 2]", "(document)", "input should be a valid dictionary"),
    ],
)
def test_a_document_that_is_not_one_json_object_is_refused(text: str, field: str, message: str) -> None:
    error = _refused(text)
    assert _fields(error) == {field}
    assert message in error.errors[0].message


def test_the_config_model_itself_refuses_what_load_refuses() -> None:
    # Code that builds a FraudConfig directly (tests, tools) gets the same checks as a loaded document.
    with pytest.raises(ValidationError):
        FraudConfig.model_validate(_document(review_threshold=95))

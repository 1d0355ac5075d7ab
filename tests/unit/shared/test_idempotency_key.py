"""The Idempotency-Key header rule (docs/api.md: 1..255 printable ASCII) and a stored response's scope."""

from typing import Any

import pytest

from vaultpay.shared.errors import BadRequest
from vaultpay.shared.idempotency import idempotency_key, idempotency_scope
from vaultpay.shared.observability import bind_step_log_keys, get_logger

pytestmark = pytest.mark.unit


def _event(*values: str, single: bool = False) -> dict[str, Any]:
    if single:
        return {"headers": {"idempotency-key": values[0]}, "multiValueHeaders": None}
    return {
        "headers": {"Idempotency-Key": values[-1]},
        "multiValueHeaders": {"Idempotency-Key": list(values)},
    }


@pytest.mark.parametrize("key", ["a", "k" * 255, "order 42 / retry #1", "~!@#$%^&*()_+{}|:<>?"])
def test_any_1_to_255_printable_ascii_key_is_accepted(key: str) -> None:
    assert idempotency_key(_event(key)) == key
    assert idempotency_key(_event(key, single=True)) == key


def test_surrounding_whitespace_is_not_part_of_the_key_and_a_repeat_of_the_same_value_is_fine() -> None:
    assert idempotency_key(_event("  abc  ")) == "abc"
    assert idempotency_key(_event("abc", "abc")) == "abc"


@pytest.mark.parametrize(
    "values",
    [(), ("",), ("   ",), ("k" * 256,), ("clé",), ("tab\there",), ("nul\x00",), ("key-1", "key-2")],
    ids=["missing", "empty", "blank", "256-chars", "not-ascii", "control", "nul", "two-values"],
)
def test_a_missing_or_malformed_key_is_400_idempotency_key_required(values: tuple[str, ...]) -> None:
    event = _event(*values) if values else {"headers": {}, "multiValueHeaders": {}}
    with pytest.raises(BadRequest) as refused:
        idempotency_key(event)
    assert (refused.value.status, refused.value.code) == (400, "idempotency_key_required")
    assert "Idempotency-Key" in refused.value.detail
    for value in values:
        if value.strip():
            assert value not in refused.value.detail  # the key itself is never echoed


def test_the_scope_names_method_route_user_and_key() -> None:
    assert idempotency_scope("post", "/v1/accounts", "usr_1", "k") == "POST /v1/accounts#usr_1#k"
    assert idempotency_scope("POST", "/v1/accounts", "usr_1", "k") != idempotency_scope(
        "POST", "/v1/accounts", "usr_2", "k"
    )


def test_a_saga_steps_ids_are_bound_to_the_log_only_when_they_look_like_ids() -> None:
    logger = get_logger()
    logger.clear_state()
    bind_step_log_keys(
        {"correlation_id": "c-1", "transfer_id": "trf_1\nforged line", "source_account_id": "acc_1"}
    )
    keys = logger.get_current_keys()
    assert keys.get("correlation_id") == "c-1"
    assert keys.get("account_id") == "acc_1"
    assert "transfer_id" not in keys
    bind_step_log_keys(["not", "a", "mapping"])  # ignored, never raises
    logger.clear_state()

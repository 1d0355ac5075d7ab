"""Request bodies that a parser could read two ways, or that break a limit, are refused before any route."""

from __future__ import annotations

import json

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from vaultpay.shared.errors import ValidationFailed
from vaultpay.shared.strict_json import MAX_BODY_BYTES, MAX_DEPTH, PayloadTooLarge, check_json_body

pytestmark = pytest.mark.unit


def _refusal(body: str | bytes) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        check_json_body(body)
    return caught.value


def test_a_key_given_twice_is_refused_naming_the_key() -> None:
    refused = _refusal('{"source_account_id": "acc_1", "amount": 5, "currency": "INR", "amount": 500000}')
    assert [(e.field, e.message) for e in refused.errors] == [
        ("amount", "The key 'amount' appears more than once in one object.")
    ]


def test_a_key_given_twice_in_a_nested_object_is_refused() -> None:
    assert _refusal('{"a": [{"b": 1, "b": 2}]}').errors[0].field == "b"


def test_the_same_key_in_two_objects_is_fine() -> None:
    check_json_body('{"a": {"id": 1}, "b": {"id": 2}}')


@pytest.mark.parametrize("number", ["9" * 5000, "1" + "0" * 40, "1." + "5" * 40, "1e" + "9" * 40])
def test_a_number_longer_than_the_limit_is_refused(number: str) -> None:
    refused = _refusal('{"amount": ' + number + "}")
    assert "longer than 32 characters" in refused.errors[0].message


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_numbers_are_refused(constant: str) -> None:
    assert "not a JSON number" in _refusal('{"amount": ' + constant + "}").errors[0].message


@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_nesting_beyond_the_limit_is_refused_without_recursion(opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    body = opening * 5000 + "1" + closing * 5000
    refused = _refusal(body)
    assert refused.errors[0].message == f"The body nests deeper than {MAX_DEPTH} levels."


def test_nesting_at_the_limit_passes_and_brackets_inside_strings_do_not_count() -> None:
    check_json_body("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    check_json_body(json.dumps({"description": "[[[[{{{{" * 100 + '\\"]'}))


def test_a_body_over_the_size_limit_is_413() -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        check_json_body('{"description": "' + "x" * MAX_BODY_BYTES + '"}')
    assert (caught.value.status, caught.value.code) == (413, "payload_too_large")


@pytest.mark.parametrize("body", ["{not json", b"\xff\xfe", "", '{"a": 1'])
def test_malformed_json_is_left_to_the_usual_400(body: str | bytes) -> None:
    check_json_body(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


@given(json_values)
def test_any_ordinary_json_document_passes(value: object) -> None:
    text = json.dumps(value)
    assume(text.count("[") + text.count("{") <= MAX_DEPTH)  # keys and strings may hold brackets too: fine
    check_json_body(text)

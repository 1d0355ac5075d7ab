"""DynamoDB attribute values shared by the stores: integers stay exact, errors are read item by item."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from vaultpay.shared import dynamo

pytestmark = pytest.mark.unit


def test_numbers_are_exact_integers_both_ways() -> None:
    assert dynamo.n(10**12) == {"N": "1000000000000"}
    assert dynamo.int_attr({"amount": {"N": "1000000000000"}}, "amount") == 10**12
    assert dynamo.int_attr({"amount": {"N": "5E+2"}}, "amount") == 500


@pytest.mark.parametrize("value", [True, 1.0, "1", None])
def test_anything_but_an_int_is_refused_before_it_is_stored(value: object) -> None:
    with pytest.raises(TypeError):
        dynamo.n(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("stored", [{"N": "1.5"}, {"N": "abc"}, {"S": "1"}])
def test_a_stored_number_that_is_not_an_integer_is_corruption_never_rounded(stored: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="amount"):
        dynamo.int_attr({"amount": stored}, "amount")


def test_a_missing_number_is_an_error_unless_a_default_is_given() -> None:
    with pytest.raises(ValueError, match="count"):
        dynamo.int_attr({}, "count")
    assert dynamo.int_attr({}, "count", default=0) == 0


def test_cancellation_reasons_are_read_in_item_order() -> None:
    error = ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
            "CancellationReasons": [{"Code": "None"}, {"Code": "ConditionalCheckFailed"}, {}],
        },
        "TransactWriteItems",
    )
    assert dynamo.error_code(error) == "TransactionCanceledException"
    assert dynamo.cancellation_reasons(error) == [None, "ConditionalCheckFailed", None]
    assert dynamo.error_code(ValueError("no response")) is None


@pytest.mark.parametrize("text", ["Infinity", "NaN", "-Infinity", None])
def test_a_number_that_is_not_finite_or_absent_is_refused_as_not_a_number(text: str | None) -> None:
    with pytest.raises(ValueError, match="not a number"):
        dynamo.exact_int(text, "amount")

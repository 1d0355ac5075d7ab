"""The shared kernel: Money keeps its currency, range and exact integers; one time format; one id format."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vaultpay.shared.kernel import (
    MAX_AMOUNT,
    MAX_BALANCE,
    MIN_AMOUNT,
    Money,
    MoneyError,
    derived_id,
    epoch_now,
    epoch_seconds,
    format_timestamp,
    is_amount,
    is_id,
    new_correlation_id,
    new_event_id,
    now,
    ordered_id,
    parse_rfc3339,
    parse_timestamp,
    random_id,
    rfc3339,
    secret_token,
    utc_now_rfc3339,
)

pytestmark = pytest.mark.unit

balances = st.integers(min_value=0, max_value=MAX_BALANCE)
amounts = st.integers(min_value=MIN_AMOUNT, max_value=MAX_AMOUNT)
currencies = st.sampled_from(["INR", "USD", "EUR"])
STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


# ---- money -------------------------------------------------------------------------------------------------


@given(
    st.integers(min_value=0, max_value=MAX_BALANCE // 2), st.integers(min_value=0, max_value=MAX_BALANCE // 2)
)
def test_adding_then_subtracting_gives_back_what_was_there(first: int, second: int) -> None:
    # Given two sums of paise
    a, b = Money(first, "INR"), Money(second, "INR")
    # When one is added and taken away again
    total = a + b
    # Then nothing was created or destroyed, and the currency stayed
    assert total.amount == first + second
    assert total - b == a and total - a == b
    assert total.currency == "INR"


@given(balances, amounts)
def test_a_transfer_between_two_balances_conserves_their_sum(balance: int, amount: int) -> None:
    source, destination = Money(max(balance, amount), "INR"), Money(balance // 2, "INR")
    moved = Money.payment(amount, "INR")
    if destination.amount + amount > MAX_BALANCE:
        return
    after_source, after_destination = source - moved, destination + moved
    assert after_source.amount + after_destination.amount == source.amount + destination.amount


@given(balances, balances)
def test_comparison_follows_the_amounts(first: int, second: int) -> None:
    a, b = Money(first, "INR"), Money(second, "INR")
    assert (a < b) == (first < second) and (a <= b) == (first <= second)
    assert (a > b) == (first > second) and (a >= b) == (first >= second)
    assert a.covers(b) == (first >= second)


@given(currencies, currencies, balances, balances)
def test_two_currencies_never_mix(left: str, right: str, first: int, second: int) -> None:
    a, b = Money(first, left), Money(second, right)
    if left == right:
        return
    for combine in (lambda: a + b, lambda: a - b, lambda: a < b, lambda: a.covers(b)):
        with pytest.raises(MoneyError):
            combine()


@pytest.mark.parametrize("amount", [1.0, 0.5, float("nan"), True, False, "100", None, 10**12 + 0.0])
def test_money_refuses_anything_but_an_integer_amount(amount: object) -> None:
    with pytest.raises(MoneyError):
        Money(amount, "INR")  # type: ignore[arg-type]


@pytest.mark.parametrize("other", [1, 1.5, True, "1"])
def test_money_combines_only_with_money(other: object) -> None:
    with pytest.raises(TypeError):
        _ = Money(5, "INR") + other  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = Money(5, "INR") - other  # type: ignore[operator]


@pytest.mark.parametrize("currency", ["inr", "IN", "INRR", "", "₹₹₹", None])
def test_money_needs_an_iso_currency_code(currency: object) -> None:
    with pytest.raises(MoneyError):
        Money(1, currency)  # type: ignore[arg-type]


@given(balances, st.integers(min_value=1, max_value=MAX_BALANCE))
def test_a_sum_never_goes_below_zero(balance: int, taken: int) -> None:
    if taken <= balance:
        assert (Money(balance, "INR") - Money(taken, "INR")).amount == balance - taken
    else:
        with pytest.raises(MoneyError):
            _ = Money(balance, "INR") - Money(taken, "INR")


def test_a_sum_never_passes_the_ceiling() -> None:
    with pytest.raises(MoneyError):
        _ = Money(MAX_BALANCE, "INR") + Money(1, "INR")
    with pytest.raises(MoneyError):
        Money(-1, "INR")
    assert Money(MAX_BALANCE, "INR").amount == MAX_BALANCE


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_an_amount_to_move_is_exactly_the_contract_range(value: int) -> None:
    in_range = MIN_AMOUNT <= value <= MAX_AMOUNT
    assert is_amount(value) is in_range
    if in_range:
        assert Money.payment(value, "INR") == Money(value, "INR")
    else:
        with pytest.raises(MoneyError):
            Money.payment(value, "INR")


@pytest.mark.parametrize("value", [True, 1.0, "5", None, [5]])
def test_a_bool_a_float_or_text_is_never_an_amount(value: object) -> None:
    assert not is_amount(value)
    with pytest.raises(MoneyError):
        Money.payment(value, "INR")


def test_money_is_immutable_and_compares_by_value() -> None:
    price = Money(125050, "INR")
    assert price == Money(125050, "INR") and price != Money(125050, "USD")
    assert Money.zero("INR") == Money(0, "INR")
    with pytest.raises(AttributeError):
        price.amount = 1  # type: ignore[misc]


# ---- time --------------------------------------------------------------------------------------------------


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_rfc3339_is_utc_milliseconds_with_z_and_reads_back(epoch_s: float) -> None:
    stamp = rfc3339(epoch_s)
    assert STAMP.fullmatch(stamp), stamp
    assert epoch_seconds(stamp) == int(datetime.fromtimestamp(epoch_s, UTC).timestamp())
    assert parse_rfc3339(stamp) == parse_timestamp(stamp)


def test_the_format_is_byte_for_byte_the_api_one() -> None:
    assert rfc3339(1_795_860_930.123) == "2026-11-28T10:15:30.123Z"
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    plus_five = datetime(2026, 11, 28, 15, 45, 30, 123999, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert format_timestamp(plus_five) == "2026-11-28T10:15:30.123Z"


def test_the_clock_is_unix_seconds_now() -> None:
    before = time.time()
    assert before <= now() <= time.time()
    assert abs(epoch_now() - int(time.time())) <= 1
    assert STAMP.fullmatch(utc_now_rfc3339())


@pytest.mark.parametrize("text", ["2026-11-28", "2026-11-28T10:15:30", "2026-W48-6T10:15:30Z", "yesterday"])
def test_a_client_time_needs_a_full_date_time_and_an_offset(text: str) -> None:
    with pytest.raises(ValueError, match="date"):
        parse_rfc3339(text)


def test_an_event_time_without_a_zone_has_no_epoch() -> None:
    with pytest.raises(ValueError, match="zone"):
        epoch_seconds("2026-11-28T10:15:30")
    assert epoch_seconds("2026-11-28T10:15:30+05:30") == epoch_seconds("2026-11-28T04:45:30Z")


# ---- ids ---------------------------------------------------------------------------------------------------


def test_event_ids_are_uuid7_and_sort_by_time() -> None:
    first = new_event_id()
    time.sleep(0.002)
    second = new_event_id()
    assert uuid.UUID(first).version == 7 and uuid.UUID(first).variant == uuid.RFC_4122
    assert first < second


@pytest.mark.parametrize("make", [lambda: ordered_id("acc"), lambda: random_id("acc")])
def test_entity_ids_are_a_prefix_and_32_hex_digits(make: object) -> None:
    value = make()  # type: ignore[operator]
    assert re.fullmatch(r"acc_[0-9a-f]{32}", value) and is_id(value, "acc")
    assert not is_id(value, "dep")


def test_a_derived_id_is_the_same_for_the_same_key_and_differs_otherwise() -> None:
    assert derived_id("tr", "POST /v1/transfers|usr_1|k") == derived_id("tr", "POST /v1/transfers|usr_1|k")
    assert derived_id("tr", "a") != derived_id("tr", "b")
    # sha256("abc") begins ba7816bf8f01cfea414140de5dae2223: the derivation is a stored format
    assert derived_id("dep", "abc") == "dep_ba7816bf8f01cfea414140de5dae2223"


@pytest.mark.parametrize(
    "value", ["acc_" + "0" * 31, "acc_" + "A" * 32, "acc_" + "0" * 33, "acc" + "0" * 32, 5, None, "acc_x"]
)
def test_malformed_ids_are_refused(value: object) -> None:
    assert not is_id(value, "acc")


def test_a_secret_token_is_unguessable_url_safe_text() -> None:
    token = secret_token("chl", 32)
    assert re.fullmatch(r"chl_[A-Za-z0-9_-]{43}", token)
    assert token != secret_token("chl", 32)


def test_a_correlation_id_is_a_uuid() -> None:
    assert uuid.UUID(new_correlation_id()).version == 4

"""Lambda event filtering: every comparison operator of the filter rule syntax, matching and not."""

from __future__ import annotations

from typing import Any

import pytest

from localcloud.filtering import FilterPatternError, matches, record_passes, validate_pattern

pytestmark = pytest.mark.unit

EVENT: dict[str, Any] = {
    "name": "Alice",
    "city": "New York",
    "empty": "",
    "nothing": None,
    "price": 100,
    "ratio": 300.0,
    "flag": True,
    "code": "5",
    "region": "us-east-1",
    "file": "photo.PNG",
    "ip": "10.0.0.7",
    "tags": ["blue", "green"],
    "counts": [3, 12],
    "none_yet": [],
    "detail": {"state": "running", "limits": {"cpu": 2}},
    "items": [{"sku": "a1", "qty": 1}, {"sku": "b2", "qty": 5}],
}

# (pattern, matches EVENT?) — one row per behaviour, named by its id.
CASES: list[tuple[str, dict[str, Any], bool]] = [
    # Equals, Or, And
    ("equals_string", {"name": ["Alice"]}, True),
    ("equals_is_case_sensitive", {"name": ["alice"]}, False),
    ("or_any_value_in_the_list", {"name": ["Bob", "Alice"]}, True),
    ("or_none_of_the_values", {"name": ["Bob", "Carol"]}, False),
    ("and_all_keys_must_match", {"name": ["Alice"], "city": ["New York"]}, True),
    ("and_one_key_failing_fails", {"name": ["Alice"], "city": ["Paris"]}, False),
    ("a_missing_field_never_equals", {"surname": ["Alice"]}, False),
    ("number_equals_number", {"price": [100]}, True),
    ("numbers_compare_as_their_text", {"price": [100.0]}, False),
    ("float_equals_same_float", {"ratio": [300.0]}, True),
    ("string_does_not_equal_number", {"code": [5]}, False),
    ("number_does_not_equal_string", {"price": ["100"]}, False),
    ("true_equals_true", {"flag": [True]}, True),
    ("true_is_not_one", {"flag": [1]}, False),
    ("false_does_not_equal_true", {"flag": [False]}, False),
    # Null and empty
    ("null_matches_null", {"nothing": [None]}, True),
    ("null_does_not_match_a_missing_field", {"absent": [None]}, False),
    ("null_does_not_match_empty_string", {"empty": [None]}, False),
    ("empty_matches_empty_string", {"empty": [""]}, True),
    ("empty_does_not_match_null", {"nothing": [""]}, False),
    ("empty_does_not_match_text", {"name": [""]}, False),
    # Prefix, suffix, equals-ignore-case, wildcard
    ("prefix", {"region": [{"prefix": "us-"}]}, True),
    ("prefix_not_matching", {"region": [{"prefix": "eu-"}]}, False),
    ("prefix_is_case_sensitive", {"region": [{"prefix": "US-"}]}, False),
    ("prefix_ignoring_case", {"region": [{"prefix": {"equals-ignore-case": "US-"}}]}, True),
    ("prefix_never_matches_a_number", {"price": [{"prefix": "1"}]}, False),
    ("suffix", {"file": [{"suffix": ".PNG"}]}, True),
    ("suffix_not_matching", {"file": [{"suffix": ".png"}]}, False),
    ("suffix_ignoring_case", {"file": [{"suffix": {"equals-ignore-case": ".png"}}]}, True),
    ("equals_ignore_case", {"name": [{"equals-ignore-case": "ALICE"}]}, True),
    ("equals_ignore_case_not_matching", {"name": [{"equals-ignore-case": "alicia"}]}, False),
    ("wildcard", {"file": [{"wildcard": "photo.*"}]}, True),
    ("wildcard_not_matching", {"file": [{"wildcard": "*.jpg"}]}, False),
    # Anything-but
    ("anything_but_value", {"name": [{"anything-but": "Bob"}]}, True),
    ("anything_but_the_value_itself", {"name": [{"anything-but": "Alice"}]}, False),
    ("anything_but_list", {"name": [{"anything-but": ["Bob", "Carol"]}]}, True),
    ("anything_but_list_containing_it", {"name": [{"anything-but": ["Bob", "Alice"]}]}, False),
    ("anything_but_numbers", {"price": [{"anything-but": [100, 200]}]}, False),
    ("anything_but_other_numbers", {"price": [{"anything-but": [5, 200]}]}, True),
    ("anything_but_prefix", {"region": [{"anything-but": {"prefix": "eu-"}}]}, True),
    ("anything_but_its_prefix", {"region": [{"anything-but": {"prefix": "us-"}}]}, False),
    ("anything_but_suffix", {"file": [{"anything-but": {"suffix": ".PNG"}}]}, False),
    ("anything_but_ignoring_case", {"name": [{"anything-but": {"equals-ignore-case": "alice"}}]}, False),
    ("anything_but_needs_the_field", {"absent": [{"anything-but": "Bob"}]}, False),
    # Numeric
    ("numeric_equals", {"price": [{"numeric": ["=", 100]}]}, True),
    ("numeric_equals_ignores_representation", {"ratio": [{"numeric": ["=", 300]}]}, True),
    ("numeric_not_equal", {"price": [{"numeric": ["=", 99]}]}, False),
    ("numeric_less_than", {"price": [{"numeric": ["<", 101]}]}, True),
    ("numeric_less_than_is_strict", {"price": [{"numeric": ["<", 100]}]}, False),
    ("numeric_at_most", {"price": [{"numeric": ["<=", 100]}]}, True),
    ("numeric_greater_than", {"price": [{"numeric": [">", 99.5]}]}, True),
    ("numeric_greater_than_is_strict", {"price": [{"numeric": [">", 100]}]}, False),
    ("numeric_at_least", {"price": [{"numeric": [">=", 100]}]}, True),
    ("numeric_range", {"price": [{"numeric": [">", 10, "<=", 100]}]}, True),
    ("numeric_outside_range", {"price": [{"numeric": [">", 100, "<=", 200]}]}, False),
    ("numeric_never_matches_a_numeric_string", {"code": [{"numeric": ["=", 5]}]}, False),
    ("numeric_never_matches_a_boolean", {"flag": [{"numeric": ["=", 1]}]}, False),
    # Exists
    ("exists_true_on_a_present_field", {"name": [{"exists": True}]}, True),
    ("exists_true_on_a_null_field", {"nothing": [{"exists": True}]}, True),
    ("exists_true_on_a_missing_field", {"absent": [{"exists": True}]}, False),
    ("exists_false_on_a_missing_field", {"absent": [{"exists": False}]}, True),
    ("exists_false_on_a_present_field", {"name": [{"exists": False}]}, False),
    ("exists_true_on_an_object_is_false_leaf_only", {"detail": [{"exists": True}]}, False),
    ("exists_false_on_an_object_leaf_only", {"detail": [{"exists": False}]}, True),
    ("exists_false_under_a_missing_parent", {"absent": {"child": [{"exists": False}]}}, True),
    ("exists_true_on_an_empty_array", {"none_yet": [{"exists": True}]}, False),
    # Nested objects
    ("nested_object", {"detail": {"state": ["running"]}}, True),
    ("nested_object_not_matching", {"detail": {"state": ["stopped"]}}, False),
    ("deeply_nested", {"detail": {"limits": {"cpu": [{"numeric": [">=", 2]}]}}}, True),
    ("nested_under_a_missing_parent", {"absent": {"state": ["running"]}}, False),
    ("nested_under_a_scalar", {"name": {"first": ["Alice"]}}, False),
    # Arrays in the event
    ("array_matches_when_any_element_does", {"tags": ["green"]}, True),
    ("array_matches_none", {"tags": ["red"]}, False),
    ("array_intersection_with_the_rule_list", {"tags": ["red", "blue"]}, True),
    ("array_prefix_on_any_element", {"tags": [{"prefix": "gr"}]}, True),
    ("array_numeric_on_any_element", {"counts": [{"numeric": [">", 10]}]}, True),
    ("array_numeric_on_no_element", {"counts": [{"numeric": [">", 20]}]}, False),
    ("array_of_objects", {"items": {"sku": ["b2"]}}, True),
    ("array_of_objects_fields_from_one_element", {"items": {"sku": ["a1"], "qty": [5]}}, False),
    ("array_of_objects_both_from_one_element", {"items": {"sku": ["b2"], "qty": [5]}}, True),
    # $or and cidr
    ("or_across_fields", {"$or": [{"name": ["Bob"]}, {"city": ["New York"]}]}, True),
    ("or_across_fields_none_matching", {"$or": [{"name": ["Bob"]}, {"city": ["Paris"]}]}, False),
    ("cidr", {"ip": [{"cidr": "10.0.0.0/24"}]}, True),
    ("cidr_outside", {"ip": [{"cidr": "10.0.1.0/24"}]}, False),
]


@pytest.mark.parametrize(("pattern", "expected"), [(p, e) for _, p, e in CASES], ids=[n for n, _, _ in CASES])
def test_pattern_matches_event_as_aws_does(pattern: dict[str, Any], expected: bool) -> None:
    # Given a valid pattern
    validate_pattern(pattern)
    # When it is applied to the event / Then the result is AWS's
    assert matches(pattern, EVENT) is expected


OUTBOX_PATTERN = {"dynamodb": {"NewImage": {"kind": {"S": ["outbox"]}}}, "eventName": ["INSERT"]}


def _stream_record(event_name: str, kind: str) -> dict[str, Any]:
    image = {"pk": {"S": "ACCOUNT#1"}, "sk": {"S": "EVENT#9"}, "kind": {"S": kind}, "amount": {"N": "500"}}
    return {
        "eventID": "1",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1700000000.0,
            "Keys": {"pk": image["pk"], "sk": image["sk"]},
            "NewImage": image,
            "SequenceNumber": "111",
            "SizeBytes": 26,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
        "eventSourceARN": "arn:aws:dynamodb:ddblocal:000000000000:table/accounts/stream/2026-01-01T00:00:00",
    }


def test_outbox_pattern_passes_an_inserted_outbox_item() -> None:
    assert record_passes([OUTBOX_PATTERN], _stream_record("INSERT", "outbox"))


def test_outbox_pattern_drops_an_inserted_domain_item() -> None:
    assert not record_passes([OUTBOX_PATTERN], _stream_record("INSERT", "account"))


def test_outbox_pattern_drops_a_modified_outbox_item() -> None:
    # The relay marks an outbox item published: that MODIFY must not be relayed again.
    assert not record_passes([OUTBOX_PATTERN], _stream_record("MODIFY", "outbox"))


def test_outbox_pattern_drops_a_removed_item_without_new_image() -> None:
    record = _stream_record("REMOVE", "outbox")
    del record["dynamodb"]["NewImage"]
    assert not record_passes([OUTBOX_PATTERN], record)


def test_dynamodb_numbers_are_strings_so_numeric_filters_do_not_match_them() -> None:
    pattern = {"dynamodb": {"NewImage": {"amount": {"N": [{"numeric": [">", 100]}]}}}}
    assert not record_passes([pattern], _stream_record("INSERT", "outbox"))
    assert record_passes(
        [{"dynamodb": {"NewImage": {"amount": {"N": ["500"]}}}}], _stream_record("INSERT", "x")
    )


def test_no_patterns_let_every_record_through() -> None:
    assert record_passes([], _stream_record("MODIFY", "account"))


def test_any_one_of_several_patterns_lets_a_record_through() -> None:
    patterns = [{"eventName": ["REMOVE"]}, OUTBOX_PATTERN]
    assert record_passes(patterns, _stream_record("INSERT", "outbox"))
    assert not record_passes(patterns, _stream_record("MODIFY", "outbox"))


INVALID: list[tuple[str, Any, str]] = [
    ("not_an_object", ["INSERT"], "JSON object"),
    ("scalar_instead_of_a_list", {"eventName": "INSERT"}, "eventName"),
    ("empty_rule_list", {"eventName": []}, "must not be empty"),
    ("unknown_operator", {"eventName": [{"startswith": "IN"}]}, "unknown comparison operator"),
    ("two_operators_in_one_object", {"price": [{"prefix": "a", "suffix": "b"}]}, "exactly one operator"),
    ("numeric_with_a_bad_operator", {"price": [{"numeric": ["!=", 5]}]}, "numeric"),
    ("numeric_with_a_string_bound", {"price": [{"numeric": [">", "5"]}]}, "finite number"),
    ("numeric_range_upside_down", {"price": [{"numeric": ["<", 5, ">", 1]}]}, "lower bound"),
    ("exists_not_boolean", {"name": [{"exists": "yes"}]}, "exists"),
    ("prefix_not_a_string", {"name": [{"prefix": 5}]}, "prefix"),
    ("nested_rule_lists", {"name": [["Alice"]]}, "nested"),
    ("anything_but_object_value", {"name": [{"anything-but": {"numeric": [">", 1]}}]}, "anything-but"),
    ("or_with_one_alternative", {"$or": [{"name": ["Alice"]}]}, "$or"),
    (
        "deep_error_names_its_path",
        {"dynamodb": {"NewImage": {"kind": {"S": "outbox"}}}},
        "dynamodb.NewImage.kind.S",
    ),
]


@pytest.mark.parametrize(
    ("pattern", "message"), [(p, m) for _, p, m in INVALID], ids=[n for n, _, _ in INVALID]
)
def test_invalid_pattern_is_rejected_with_a_reason(pattern: Any, message: str) -> None:
    with pytest.raises(FilterPatternError, match=message.replace("$", r"\$")):
        validate_pattern(pattern)

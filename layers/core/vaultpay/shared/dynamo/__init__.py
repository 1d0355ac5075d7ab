"""The shared DynamoDB plumbing of the stores: attribute values, the table helper and the cursor codec.

Which store uses what (the low-level client through `Table`, or PynamoDB models) and why: docs/persistence.md.

- attribute values (here): exact integers in and out, strings, the outbox item as attribute values;
- `table`: `Table` (get, update, query pages, batch reads, conditional puts, transactions with per-item
  cancellation reasons and jittered retry), `Backoff`, and the one translation of AWS error codes;
- `cursor`: the one cursor codec of the paged lists.

Importing this package costs the standard library only: no botocore, no PynamoDB.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from vaultpay.shared.dynamo.cursor import (
    InvalidCursor,
    decode_cursor,
    decode_position,
    encode_cursor,
    encode_position,
    position,
)
from vaultpay.shared.dynamo.table import (
    CONFIGURATION_CODES,
    RETRYABLE_REASONS,
    TRANSIENT_CODES,
    Backoff,
    Cancellation,
    ConditionFailed,
    Table,
    cancellation_reasons,
    commit_with_retry,
    error_code,
    translate,
)
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.outbox import outbox_attributes

__all__ = [
    "CONFIGURATION_CODES",
    "RETRYABLE_REASONS",
    "TRANSIENT_CODES",
    "Backoff",
    "Cancellation",
    "ConditionFailed",
    "InvalidCursor",
    "Table",
    "cancellation_reasons",
    "commit_with_retry",
    "decode_cursor",
    "decode_position",
    "encode_cursor",
    "encode_position",
    "error_code",
    "exact_int",
    "int_attr",
    "n",
    "number_text",
    "outbox_item",
    "position",
    "s",
    "str_attr",
    "translate",
]


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int) -> dict[str, str]:
    """An exact integer; anything else (a bool, a float) is a bug, refused before it is stored."""
    return {"N": number_text(value, "a stored number")}


def number_text(value: int, name: str) -> str:
    """The wire text of an exact integer (the low-level items and PynamoDB's integer attribute alike)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return str(value)


def exact_int(text: object, name: str) -> int:
    """A DynamoDB number's text as an int: a number that is not integral is corruption, never rounded."""
    try:
        number = Decimal(text)  # type: ignore[arg-type]  # anything else is refused just below
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"{name} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{name} is not a number")
    if number != number.to_integral_value():
        raise ValueError(f"{name} is not an integer")
    return int(number)


def int_attr(item: Mapping[str, Any], name: str, default: int | None = None) -> int:
    """An exact integer attribute (see exact_int); `default` when it is absent, if one is given."""
    if name not in item and default is not None:
        return default
    value = item.get(name)
    return exact_int(value.get("N") if isinstance(value, Mapping) else None, name)


def str_attr(item: Mapping[str, Any], name: str) -> str | None:
    """A string attribute, or None when it is absent or not a string."""
    value = item.get(name)
    text = value.get("S") if isinstance(value, Mapping) else None
    return text if isinstance(text, str) else None


def outbox_item(event: DomainEvent) -> dict[str, Any]:
    """The shared outbox item (vaultpay.shared.outbox) as DynamoDB attribute values."""
    values: dict[str, Any] = {}
    for name, value in outbox_attributes(event).items():
        if isinstance(value, bool):
            values[name] = {"BOOL": value}
        elif isinstance(value, int):
            values[name] = n(value)
        else:
            values[name] = s(str(value))
    return values

"""DynamoDB attribute values and error reading shared by the domain stores (low-level client).

The stores that write money and state speak DynamoDB's wire format directly (see the README's design notes):
these are the pieces every one of them needs the same way — exact integers in and out, the outbox item as
attribute values, and which error codes mean "retry", "your condition failed" or "misconfigured".
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from vaultpay.shared.events import DomainEvent
from vaultpay.shared.outbox import outbox_attributes

# Error codes worth retrying: lost a race to another transaction, or throttled, or a blip on AWS's side.
TRANSIENT_CODES = frozenset(
    {
        "TransactionConflictException",
        "TransactionInProgressException",
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
# Per-item cancellation reasons of a TransactWriteItems that are worth retrying as a whole.
RETRYABLE_REASONS = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})
# Codes no retry can fix: the table, the grant or the request is wrong.
CONFIGURATION_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "ValidationException",
    }
)


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int) -> dict[str, str]:
    """An exact integer; anything else (a bool, a float) is a bug, refused before it is stored."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"a stored number must be an int, not {type(value).__name__}")
    return {"N": str(value)}


def int_attr(item: Mapping[str, Any], name: str, default: int | None = None) -> int:
    """An exact integer attribute: a number that is not integral is corruption, never rounded."""
    if name not in item and default is not None:
        return default
    try:
        number = Decimal(item[name]["N"])
    except (InvalidOperation, KeyError):
        raise ValueError(f"{name} is not a number") from None
    if number != number.to_integral_value():
        raise ValueError(f"{name} is not an integer")
    return int(number)


def str_attr(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value["S"] if isinstance(value, Mapping) and "S" in value else None


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


def error_code(exc: Exception) -> str | None:
    """The AWS error code of a botocore ClientError; None for anything else (no answer at all)."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def cancellation_reasons(exc: Exception) -> list[str | None]:
    """A cancelled transaction's reasons, item by item in request order (None where an item was fine)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return []
    return [
        (reason or {}).get("Code") if (reason or {}).get("Code") not in (None, "None") else None
        for reason in response.get("CancellationReasons") or []
    ]

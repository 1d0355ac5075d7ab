"""JSON request bodies read one way only: refused before any route when a parser could read them two ways.

Python's `json` (and Powertools, which uses it) keeps the *last* of two equal keys, so `{"amount": 5, ...,
"amount": 500000}` moved the second amount while a proxy, a WAF or a log reader may see the first: a parser
differential. An integer of thousands of digits raised ValueError (CPython's int-string limit) and an object
nested thousands deep raised RecursionError, both answered 500. This module reads a body once, strictly,
with limits a payments API never needs to exceed, before the body reaches validation or a handler:

- at most `MAX_BODY_BYTES` (64 KiB; 413 `payload_too_large`);
- no key twice in one object, nesting at most `MAX_DEPTH` (32) deep, numbers of at most `MAX_NUMBER_CHARS`
  (32) characters, no `NaN`/`Infinity` (422 `validation_failed`, naming the field where there is one).

Malformed JSON is left to the usual path (400 `malformed_json`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from vaultpay.shared.errors import DomainError, FieldError, ValidationFailed

MAX_BODY_BYTES = 64 * 1024
MAX_DEPTH = 32
MAX_NUMBER_CHARS = 32


class PayloadTooLarge(DomainError):
    """The request body is over the documented size limit."""

    code = "payload_too_large"
    status = 413
    title = "Payload too large"


class _Refused(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _nesting_depth(text: str) -> int:
    """How deep arrays and objects nest in `text`, counted outside strings (no recursion, one pass)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _unique_keys(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Refused(key, f"The key {key!r} appears more than once in one object.")
        result[key] = value
    return result


def _number(kind: type) -> Any:
    def parse(text: str) -> Any:
        if len(text) > MAX_NUMBER_CHARS:
            raise _Refused("body", f"A number in the body is longer than {MAX_NUMBER_CHARS} characters.")
        return kind(text)

    return parse


def _constant(name: str) -> Any:
    raise _Refused("body", f"{name} is not a JSON number.")


def check_json_body(body: bytes | str) -> None:
    """Raises PayloadTooLarge or ValidationFailed when `body` could be read two ways or breaks a limit.

    A body that is not JSON at all passes: the caller's parser answers it (400 malformed_json).
    """
    raw = body.encode() if isinstance(body, str) else body
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The request body is larger than {MAX_BODY_BYTES // 1024} KiB.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return
    if _nesting_depth(text) > MAX_DEPTH:
        raise ValidationFailed(
            "The request is not valid.",
            errors=[FieldError("body", f"The body nests deeper than {MAX_DEPTH} levels.")],
        )
    try:
        json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_int=_number(int),
            parse_float=_number(float),
            parse_constant=_constant,
        )
    except _Refused as refused:
        raise ValidationFailed(
            "The request is not valid.", errors=[FieldError(refused.field, str(refused))]
        ) from None
    except (ValueError, RecursionError):
        return  # not JSON: the usual path says so


def strict_loads(payload: bytes | str) -> Any:
    """JSON with one meaning only, for messages from elsewhere (the event bus): a key twice in one object,
    NaN and the infinities are a ValueError, never the last value or a float guessed at."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ValueError("an object repeats a key")
            result[key] = value
        return result

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(payload, object_pairs_hook=no_duplicates, parse_constant=no_constant)

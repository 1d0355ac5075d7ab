"""The one cursor codec of the paged lists (docs/api.md `next_cursor`): unpadded base64url of a JSON object.

A cursor is opaque to clients but not secret or signed: a client can hand back anything. So decoding only
ever yields plain strings and objects that the store then checks, and a store rebuilds the DynamoDB start key
around the caller's own partition (never a key read from the cursor), so a forged cursor can at most resume
inside what the caller may list anyway. Anything that is not a cursor is InvalidCursor, a 422 naming the
`cursor` field, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from vaultpay.shared.errors import FieldError, ValidationFailed

# Far above any cursor the stores hand out (a few hundred characters), and checked before decoding, so a
# client cannot make a request parse megabytes of JSON.
MAX_CURSOR_LENGTH = 512
# The longest string a cursor may carry as a position (a sort key such as `<time>#<id>`).
MAX_POSITION_LENGTH = 200


class InvalidCursor(ValidationFailed):
    """The `cursor` query parameter is not one this list handed out."""

    def __init__(self) -> None:
        super().__init__(
            "The cursor is not valid.", code="invalid_cursor", errors=[FieldError("cursor", "is not valid")]
        )


def encode_cursor(document: Mapping[str, Any]) -> str:
    # json.dumps' default separators: the bytes of every cursor handed out so far, kept stable.
    raw = json.dumps(dict(document)).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The JSON object inside a cursor; InvalidCursor when it is too long, not base64url or not an object."""
    if not isinstance(cursor, str) or not 0 < len(cursor) <= MAX_CURSOR_LENGTH:
        raise InvalidCursor()
    try:
        document = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor() from None
    if not isinstance(document, dict):
        raise InvalidCursor()
    return document


def position(value: object) -> str:
    """A position read from a cursor: a non-empty string of at most MAX_POSITION_LENGTH characters."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_POSITION_LENGTH:
        raise InvalidCursor()
    return value


def encode_position(name: str, value: str) -> str:
    """The cursor of a list that resumes after one sort key: `{name: value}`."""
    return encode_cursor({name: value})


def decode_position(cursor: str, name: str) -> str:
    """The position a one-key cursor (`encode_position`) holds under `name`."""
    return position(decode_cursor(cursor).get(name))

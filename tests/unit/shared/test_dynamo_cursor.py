"""The one cursor codec: cursors handed out before it still decode, and anything else is a 422, not a 500."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from vaultpay.shared import dynamo as ddb
from vaultpay.shared.dynamo.cursor import MAX_CURSOR_LENGTH

pytestmark = pytest.mark.unit


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


@pytest.mark.parametrize(
    "document",
    [
        {"c": "2026-01-01T00:00:00.000Z#acc_0123"},
        {"s": "000000000042"},
        {"t": "2026-01-01T00:00:00.000Z#tr_0123"},
        {"sk": "DEVICE#" + "0" * 64},
        {"q": "ALL", "p": {"REVIEW": "2026-01-01T00:00:00.000Z#tr_0123", "DECLINE": None}},
    ],
)
def test_a_cursor_round_trips_and_keeps_the_bytes_of_the_cursors_already_handed_out(
    document: dict[str, Any],
) -> None:
    # Given the cursor each store wrote before the codec was shared: base64url of json.dumps, unpadded
    before = b64(json.dumps(document).encode("utf-8"))

    # Then the codec writes the same cursor and reads it back
    assert ddb.encode_cursor(document) == before
    assert ddb.decode_cursor(before) == document


def test_a_one_key_cursor_holds_its_position() -> None:
    cursor = ddb.encode_position("s", "000000000042")

    assert cursor == "eyJzIjogIjAwMDAwMDAwMDA0MiJ9"
    assert ddb.decode_position(cursor, "s") == "000000000042"


def test_a_padded_cursor_decodes_too() -> None:
    cursor = ddb.encode_position("t", "x")

    assert ddb.decode_position(cursor + "=" * (-len(cursor) % 4), "t") == "x"


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "%%%not-base64%%%",
        "éé",
        b64(b"not json"),
        b64(b"\xff\xfe"),
        b64(b'["a", "list"]'),
        b64(b'"a string"'),
        b64(b"42"),
        "A" * (MAX_CURSOR_LENGTH + 1),
    ],
)
def test_a_malformed_cursor_is_refused_as_invalid(cursor: str) -> None:
    with pytest.raises(ddb.InvalidCursor) as caught:
        ddb.decode_cursor(cursor)

    assert caught.value.status == 422
    assert caught.value.code == "invalid_cursor"
    assert [error.field for error in caught.value.errors] == ["cursor"]


@pytest.mark.parametrize(
    "document",
    [
        {"c": "x"},  # another list's key
        {"s": 42},  # not a string
        {"s": ""},  # empty
        {"s": "x" * 201},  # longer than any sort key
        {"s": {"pk": {"S": "ACCOUNT#someone-else"}}},  # a forged DynamoDB key
        {"s": None},
    ],
)
def test_a_forged_position_is_refused_as_invalid(document: dict[str, Any]) -> None:
    with pytest.raises(ddb.InvalidCursor):
        ddb.decode_position(ddb.encode_cursor(document), "s")

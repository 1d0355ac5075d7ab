"""The audit chain's pure core: canonical JSON, hashing, event parsing, verify against random tampering."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaultpay.audit.model import (
    GENESIS_HASH,
    MAX_SAFE_INTEGER,
    AuditEntry,
    AuditRecord,
    ChainAnchor,
    InvalidEvent,
    MalformedRecord,
    build_chain,
    canonical_json,
    entry_from_cloudevent,
    entry_from_json,
    normalize_timestamp,
    verify_chain,
)
from vaultpay.shared.events import DomainEvent

pytestmark = pytest.mark.unit

# ---- strategies --------------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)
timestamps = st.datetimes(
    min_value=datetime(2020, 1, 1),
    max_value=datetime(2035, 1, 1),
    timezones=st.just(UTC),
).map(lambda moment: moment.isoformat().replace("+00:00", "Z"))


@st.composite
def entries(draw: st.DrawFn, index: int) -> AuditEntry:
    return AuditEntry(
        audit_id=f"evt-{index:04d}-{draw(st.integers(0, 10**6))}",
        occurred_at=normalize_timestamp(draw(timestamps)),
        type=draw(st.sampled_from(["vaultpay.account.created", "vaultpay.transaction.completed"])),
        actor=draw(st.sampled_from(["usr_01", "usr_02", "system"])),
        correlation_id=draw(st.sampled_from(["c-1", "c-2", "c-3"])),
        subject=draw(st.text(max_size=10)),
        data=draw(st.dictionaries(st.text(max_size=6), json_values, max_size=4)),
    )


@st.composite
def chains(draw: st.DrawFn, min_size: int = 1, max_size: int = 12) -> list[AuditRecord]:
    size = draw(st.integers(min_size, max_size))
    return build_chain([draw(entries(index)) for index in range(size)])


hex64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
FIELDS = [field.name for field in dataclasses.fields(AuditRecord)]
PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def changed_value(draw: st.DrawFn, name: str, old: Any) -> Any:
    """A value for field `name` that really differs from `old` (canonically: 1 and True differ)."""
    if name == "seq":
        return old + draw(st.integers(-5, 5).filter(lambda delta: delta != 0))
    if name in ("prev_hash", "hash"):
        return draw(hex64.filter(lambda value: value != old))
    if name == "data":
        return draw(
            st.dictionaries(st.text(max_size=6), json_values, max_size=4).filter(
                lambda value: canonical_json(value) != canonical_json(old)
            )
        )
    return draw(st.text(max_size=12).filter(lambda value: value != old))


# ---- canonical JSON ----------------------------------------------------------------------------------


def test_canonical_json_sorts_keys_drops_whitespace_and_keeps_unicode_as_utf8() -> None:
    # Given a value with unsorted keys, nesting, non-ASCII text and control characters
    value = {"b": [1, True, None], "a": {"z": "é\u2028", "y": "tab\there\x01"}, "": -7}

    # When it is made canonical
    encoded = canonical_json(value)

    # Then the bytes are exactly the documented form
    assert encoded == '{"":-7,"a":{"y":"tab\\there\\u0001","z":"é\u2028"},"b":[1,true,null]}'.encode()


@pytest.mark.parametrize(
    "value",
    [
        {"amount": 1.5},
        {"n": float("nan")},
        {"big": MAX_SAFE_INTEGER + 1},
        {"small": -MAX_SAFE_INTEGER - 1},
        {1: "non-string key"},
        {"s": "\ud800"},
        {"set": {1, 2}},
    ],
)
def test_canonical_json_refuses_values_outside_the_definition(value: Any) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any message: the point is that nothing is guessed
        canonical_json(value)


@given(json_values)
def test_canonical_json_is_json_dumps_sorted_compact_utf8(value: Any) -> None:
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert canonical_json(value) == expected
    assert json.loads(canonical_json(value)) == value


def test_record_hash_is_sha256_of_the_previous_hash_and_the_canonical_body() -> None:
    # Given a fixed first record
    entry = AuditEntry(
        audit_id="0190f1c2-0000-7000-8000-000000000001",
        occurred_at="2026-11-28T10:15:30.123Z",
        type="vaultpay.account.deposited",
        actor="usr_01JD3F6Q",
        correlation_id="c0ffee00-0000-4000-8000-000000000001",
        subject="acc_01",
        data={"amount": 125050, "currency": "INR"},
    )

    # When it is chained to the genesis
    record = entry.chain(1, GENESIS_HASH)

    # Then the hashed bytes and the hash are exactly the documented ones (pinned: a verifier written in
    # another language must reach the same value)
    body = (
        b'{"actor":"usr_01JD3F6Q","audit_id":"0190f1c2-0000-7000-8000-000000000001",'
        b'"correlation_id":"c0ffee00-0000-4000-8000-000000000001","data":{"amount":125050,"currency":"INR"},'
        b'"occurred_at":"2026-11-28T10:15:30.123Z","prev_hash":"' + b"0" * 64 + b'","seq":1,'
        b'"subject":"acc_01","type":"vaultpay.account.deposited"}'
    )
    assert canonical_json(record.body()) == body
    assert record.hash == hashlib.sha256(b"0" * 64 + body).hexdigest()
    assert record.hash == "831f6a2c0006b3b3d66221c767abf89dfecbfde0eaeaeaee04e3536407127baf"


# ---- events → entries --------------------------------------------------------------------------------


def _event(**overrides: Any) -> dict[str, Any]:
    envelope = DomainEvent(
        type="vaultpay.account.deposited",
        source="/vaultpay/accounts",
        subject="acc_01",
        data={"amount": 125050, "currency": "INR"},
        correlation_id="c0ffee00-0000-4000-8000-000000000001",
        actor="usr_01JD3F6Q",
        time="2026-11-28T15:45:30.123456+05:30",
    ).cloudevent()
    envelope.update(overrides)
    return {key: value for key, value in envelope.items() if value is not None}


def test_a_cloudevent_becomes_an_entry_with_its_time_in_utc_milliseconds() -> None:
    entry = entry_from_cloudevent(_event())

    assert entry.occurred_at == "2026-11-28T10:15:30.123Z"
    assert entry.actor == "usr_01JD3F6Q"
    assert entry.correlation_id == "c0ffee00-0000-4000-8000-000000000001"
    assert entry.data == {"amount": 125050, "currency": "INR"}


def test_an_event_without_an_actor_is_attributed_to_the_system() -> None:
    assert entry_from_cloudevent(_event(actor=None)).actor == "system"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"specversion": "0.3"}, "specversion"),
        ({"id": None}, "id"),
        ({"id": "has space"}, "id"),
        ({"type": "other.thing"}, "type"),
        ({"correlationid": None}, "correlationid"),
        ({"time": "2026-11-28"}, "time"),
        ({"time": "2026-11-28T10:15:30"}, "time"),
        ({"data": [1, 2]}, "data"),
        ({"data": {"amount": 1.5}}, "data"),
        ({"data": {"blob": "x" * 70_000}}, "data"),
    ],
)
def test_an_event_that_cannot_be_audited_is_refused_naming_the_field(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidEvent, match=field):
        entry_from_cloudevent(_event(**overrides))


@pytest.mark.parametrize(
    "payload",
    [b"not json", b'{"id": "a", "id": "b"}', b'{"n": NaN}', b"\xff\xfe", b"[]"],
)
def test_a_payload_that_is_not_a_cloudevent_object_is_refused(payload: bytes) -> None:
    with pytest.raises(InvalidEvent):
        entry_from_json(payload)


@pytest.mark.parametrize(
    ("given_time", "normalized"),
    [
        ("2026-11-28T10:15:30Z", "2026-11-28T10:15:30.000Z"),
        ("2026-11-28t10:15:30.1z", "2026-11-28T10:15:30.100Z"),
        ("2026-11-28T10:15:30.123999999Z", "2026-11-28T10:15:30.123Z"),
        ("2026-11-28T00:15:30-05:00", "2026-11-28T05:15:30.000Z"),
    ],
)
def test_rfc3339_times_are_normalized_to_utc_milliseconds(given_time: str, normalized: str) -> None:
    assert normalize_timestamp(given_time) == normalized


@pytest.mark.parametrize(
    "text", ["2026-11-28", "2026-11-28 10:15:30Z", "2026-13-01T00:00:00Z", "2026-11-28T10:15:60Z", "now"]
)
def test_anything_but_an_rfc3339_date_time_with_offset_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339|valid"):
        normalize_timestamp(text)


# ---- verify ------------------------------------------------------------------------------------------


def test_an_empty_chain_verifies_with_the_genesis_head() -> None:
    result = verify_chain([])

    assert result.ok
    assert result.records_checked == 0
    assert result.head_hash == GENESIS_HASH
    assert result.to_dict() == {
        "ok": True,
        "records_checked": 0,
        "head_hash": GENESIS_HASH,
        "head_seq": 0,
        "checkpoints_checked": 0,
    }


@PROPERTY
@given(chains())
def test_an_untouched_chain_verifies(chain: list[AuditRecord]) -> None:
    result = verify_chain(chain, anchor=ChainAnchor(chain[-1].seq, chain[-1].hash))

    assert result.ok
    assert result.records_checked == len(chain)
    assert result.head_hash == chain[-1].hash
    assert "first_bad_record" not in result.to_dict()


@PROPERTY
@given(chains(), st.data())
def test_changing_any_field_of_any_record_is_detected_at_that_record(
    chain: list[AuditRecord], data: st.DataObject
) -> None:
    # Given a chain and one field of one record changed to a really different value
    index = data.draw(st.integers(0, len(chain) - 1), label="index")
    name = data.draw(st.sampled_from(FIELDS), label="field")
    tampered = list(chain)
    tampered[index] = dataclasses.replace(
        chain[index], **{name: changed_value(data.draw, name, getattr(chain[index], name))}
    )

    # When the chain is verified
    result = verify_chain(tampered)

    # Then that very record is the first bad one, and the hash before it is still trusted
    assert not result.ok
    assert result.records_checked == index + 1
    assert result.head_hash == (chain[index - 1].hash if index else GENESIS_HASH)
    assert result.first_bad_record is not None
    assert result.first_bad_record.audit_id == tampered[index].audit_id
    expected_reason = {"seq": "unexpected_seq", "prev_hash": "broken_link"}.get(name, "hash_mismatch")
    assert result.first_bad_record.reason == expected_reason


@PROPERTY
@given(chains(min_size=2), st.data())
def test_deleting_a_record_is_detected_at_the_record_after_it(
    chain: list[AuditRecord], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(chain) - 2), label="index")
    tampered = chain[:index] + chain[index + 1 :]

    result = verify_chain(tampered)

    assert not result.ok
    assert result.records_checked == index + 1
    assert result.first_bad_record is not None
    assert result.first_bad_record.seq == index + 2
    assert result.first_bad_record.reason == "unexpected_seq"


@PROPERTY
@given(chains(), st.integers(1, 3))
def test_deleting_the_newest_records_is_caught_only_by_an_anchor(chain: list[AuditRecord], cut: int) -> None:
    # Given the newest records deleted (the chain alone cannot tell: it proves only its own prefix)
    anchor = ChainAnchor(chain[-1].seq, chain[-1].hash)
    tampered = chain[: max(0, len(chain) - cut)]
    assert verify_chain(tampered).ok

    # When it is verified against the head recorded earlier
    result = verify_chain(tampered, anchor=anchor)

    # Then the truncation is reported at the anchored seq
    assert not result.ok
    assert result.first_bad_record is not None
    assert result.first_bad_record.reason == "truncated"
    assert result.first_bad_record.seq == anchor.seq


@PROPERTY
@given(chains(min_size=2), st.data())
def test_swapping_two_records_is_detected_at_the_first_of_them(
    chain: list[AuditRecord], data: st.DataObject
) -> None:
    first = data.draw(st.integers(0, len(chain) - 2), label="first")
    second = data.draw(st.integers(first + 1, len(chain) - 1), label="second")
    tampered = list(chain)
    tampered[first], tampered[second] = tampered[second], tampered[first]

    result = verify_chain(tampered)

    assert not result.ok
    assert result.records_checked == first + 1
    assert result.first_bad_record is not None
    assert result.first_bad_record.audit_id == chain[second].audit_id
    assert result.first_bad_record.reason == "unexpected_seq"


@PROPERTY
@given(chains(), st.data())
def test_a_forged_record_with_a_recomputed_hash_but_a_wrong_link_is_detected_where_inserted(
    chain: list[AuditRecord], data: st.DataObject
) -> None:
    # Given a forged record, self-consistent (its hash recomputed) but linked to a made-up hash
    position = data.draw(st.integers(0, len(chain)), label="position")
    true_prev = chain[position - 1].hash if position else GENESIS_HASH
    wrong_link = data.draw(hex64.filter(lambda value: value != true_prev), label="link")
    forged = data.draw(entries(9999)).chain(position + 1, wrong_link)
    tampered = [*chain[:position], forged, *chain[position:]]

    result = verify_chain(tampered)

    assert not result.ok
    assert result.records_checked == position + 1
    assert result.first_bad_record is not None
    assert result.first_bad_record.audit_id == forged.audit_id
    assert result.first_bad_record.reason == "broken_link"


@PROPERTY
@given(chains(), st.data())
def test_a_forged_record_with_a_correct_link_breaks_the_record_after_it(
    chain: list[AuditRecord], data: st.DataObject
) -> None:
    position = data.draw(st.integers(0, len(chain) - 1), label="position")
    true_prev = chain[position - 1].hash if position else GENESIS_HASH
    forged = data.draw(entries(9999)).chain(position + 1, true_prev)
    tampered = [*chain[:position], forged, *chain[position:]]

    result = verify_chain(tampered)

    assert not result.ok
    assert result.records_checked == position + 2
    assert result.head_hash == forged.hash
    assert result.first_bad_record is not None
    assert result.first_bad_record.audit_id == chain[position].audit_id
    assert result.first_bad_record.reason == "unexpected_seq"


@PROPERTY
@given(chains(), st.data())
def test_a_chain_rewritten_and_rehashed_from_a_record_on_is_caught_by_an_anchor(
    chain: list[AuditRecord], data: st.DataObject
) -> None:
    # Given an attacker who edits a record and re-hashes everything after it
    index = data.draw(st.integers(0, len(chain) - 1), label="index")
    edited = dataclasses.replace(chain[index].entry(), subject=chain[index].subject + "!")
    prev = chain[index - 1] if index else None
    rewritten = chain[:index] + build_chain(
        [edited] + [record.entry() for record in chain[index + 1 :]],
        start_seq=index + 1,
        prev_hash=prev.hash if prev else GENESIS_HASH,
    )
    assert verify_chain(rewritten).ok  # self-consistent: only an outside anchor can tell

    result = verify_chain(rewritten, anchor=ChainAnchor(chain[-1].seq, chain[-1].hash))

    assert not result.ok
    assert result.first_bad_record is not None
    assert result.first_bad_record.reason == "anchor_mismatch"
    assert result.first_bad_record.seq == chain[-1].seq


def test_an_unreadable_stored_record_is_reported_as_malformed() -> None:
    chain = build_chain(
        [AuditEntry("e1", "2026-11-28T10:15:30.123Z", "vaultpay.x.y", "system", "c", "s", {"n": 1})]
    )

    result = verify_chain([*chain, MalformedRecord(2, "e2", "data is not a JSON object")])

    assert not result.ok
    assert result.records_checked == 2
    assert result.head_hash == chain[0].hash
    assert result.first_bad_record is not None
    assert result.first_bad_record.to_dict() == {
        "seq": 2,
        "audit_id": "e2",
        "reason": "malformed",
        "detail": "data is not a JSON object",
    }


def test_a_record_whose_data_was_edited_to_a_float_is_malformed_not_a_crash() -> None:
    chain = build_chain(
        [AuditEntry("e1", "2026-11-28T10:15:30.123Z", "vaultpay.x.y", "system", "c", "s", {"amount": 1})]
    )
    tampered = [dataclasses.replace(chain[0], data={"amount": 1.0})]

    result = verify_chain(tampered)

    assert result.first_bad_record is not None
    assert result.first_bad_record.reason == "malformed"


@pytest.mark.parametrize("text", ["0:" + "0" * 64, "1:" + "A" * 64, "x:" + "0" * 64, "1:abc", "1"])
def test_an_anchor_must_be_a_seq_and_a_lower_case_sha256(text: str) -> None:
    with pytest.raises(ValueError, match="anchor"):
        ChainAnchor.parse(text)

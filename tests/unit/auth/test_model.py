"""The identity model's rules: registration fields, challenge states, token families, devices, ids, time."""

from __future__ import annotations

import pytest

from vaultpay.auth.model import (
    CHALLENGE_TTL_S,
    MAX_WRONG_CODES,
    REFRESH_TOKEN_TTL_S,
    Challenge,
    ChallengeState,
    Device,
    RefreshFamily,
    RefreshToken,
    canonical_email,
    canonical_full_name,
    device_key,
    email_problem,
    is_challenge_id,
    is_device_id,
    new_challenge_id,
    registration_problems,
)
from vaultpay.shared.kernel import rfc3339
from vaultpay.shared.pii import normalise_email

pytestmark = pytest.mark.unit

NOW = 1_795_860_930.25
DEVICE = "device-4f1c2a"
GOOD = {
    "email": "asha.rao@example.com",
    "password": "correct horse battery staple",
    "full_name": "Asha Rao",
    "phone": "+919876543210",
}


def test_a_valid_registration_has_no_problems() -> None:
    assert registration_problems(**GOOD) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", ""),
        ("email", "asha.example.com"),
        ("email", "asha@localhost"),
        ("email", "asha rao@example.com"),
        ("email", "asha@exa_mple.com"),
        ("email", "asha@@example.com"),
        ("email", "a@192.168.0.1"),
        ("email", "x" * 65 + "@example.com"),
        ("email", "a@" + "b" * 250 + ".com"),
        ("password", "x" * 11),
        ("password", "x" * 129),
        ("full_name", ""),
        ("full_name", "x" * 101),
        ("full_name", "Asha\nRao"),
        ("full_name", "Asha\x00Rao"),
        ("phone", "9812345678"),
        ("phone", "+0876543210"),
        ("phone", "+91 98765 43210"),
        ("phone", "+1234567"),
        ("phone", "+1234567890123456"),
    ],
)
def test_each_invalid_field_is_named(field: str, value: str) -> None:
    # Given a registration that is valid except for one field
    registration = dict(GOOD, **{field: value})
    # When its problems are listed
    problems = registration_problems(**registration)
    # Then exactly that field is named, with a message that does not repeat the value
    assert [name for name, _ in problems] == [field]
    assert value.strip() == "" or value not in problems[0][1]


@pytest.mark.parametrize(
    ("field", "value"), [("password", "x" * 12), ("password", "x" * 128), ("full_name", "é")]
)
def test_the_length_bounds_are_inclusive(field: str, value: str) -> None:
    assert registration_problems(**dict(GOOD, **{field: value})) == []


def test_every_invalid_field_is_named_at_once() -> None:
    problems = registration_problems(email="nope", password="short", full_name="", phone="123")
    assert [name for name, _ in problems] == ["email", "password", "full_name", "phone"]


def test_email_is_trimmed_and_lower_cased_exactly_as_the_blind_index_does() -> None:
    # The blind index normalises on its own; if the two ever differed, the uniqueness check would be keyed
    # on one form and the login look-up on another.
    for raw in ["  Asha.Rao@Example.COM ", "ASHA@EXAMPLE.COM", "\tİstanbul@example.com\n"]:
        assert canonical_email(raw) == normalise_email(raw)
    assert canonical_email("  Asha.Rao@Example.COM ") == "asha.rao@example.com"
    assert email_problem(canonical_email("  Asha.Rao@Example.COM ")) is None


def test_a_name_typed_with_combining_accents_is_one_name() -> None:
    assert canonical_full_name(" Rene\u0301 ") == canonical_full_name("Ren\u00e9") == "Ren\u00e9"


def test_a_new_challenge_is_open_for_its_device_for_300_seconds() -> None:
    # Given a challenge opened now on one device
    challenge = Challenge.open(user_id="usr_1", device_id=DEVICE, now=NOW)
    # Then it is open on that device until 300 s later, and expired from then on
    assert challenge.expires_at == int(NOW) + CHALLENGE_TTL_S
    assert challenge.state(now=NOW, device_id=DEVICE) is ChallengeState.OPEN
    assert challenge.state(now=challenge.expires_at - 0.001, device_id=DEVICE) is ChallengeState.OPEN
    assert challenge.state(now=challenge.expires_at, device_id=DEVICE) is ChallengeState.EXPIRED


def test_a_challenge_refuses_another_device_before_saying_anything_else() -> None:
    challenge = Challenge.open(user_id="usr_1", device_id=DEVICE, now=NOW)
    used = Challenge(**{**_fields(challenge), "used": True})
    assert challenge.state(now=NOW, device_id="other") is ChallengeState.WRONG_DEVICE
    assert used.state(now=NOW + 10_000, device_id="other") is ChallengeState.WRONG_DEVICE


def test_a_challenge_is_dead_after_five_wrong_codes_and_once_used() -> None:
    challenge = Challenge.open(user_id="usr_1", device_id=DEVICE, now=NOW)
    four = Challenge(**{**_fields(challenge), "attempts": MAX_WRONG_CODES - 1})
    five = Challenge(**{**_fields(challenge), "attempts": MAX_WRONG_CODES})
    used = Challenge(**{**_fields(challenge), "used": True})
    assert four.state(now=NOW, device_id=DEVICE) is ChallengeState.OPEN
    assert five.state(now=NOW, device_id=DEVICE) is ChallengeState.EXHAUSTED
    assert used.state(now=NOW, device_id=DEVICE) is ChallengeState.USED


def test_challenge_ids_are_unguessable_and_recognisable() -> None:
    ids = {new_challenge_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(is_challenge_id(i) for i in ids)
    assert not is_challenge_id("chl_short")
    assert not is_challenge_id("usr_" + "a" * 43)
    assert not is_challenge_id(None)


def test_a_token_family_lives_seven_days_unless_revoked() -> None:
    family = RefreshFamily.open(user_id="usr_1", device_id=DEVICE, now=NOW)
    assert family.expires_at == int(NOW) + REFRESH_TOKEN_TTL_S
    assert family.usable(NOW)
    assert not family.usable(family.expires_at)
    assert not RefreshFamily(**{**_fields(family), "revoked": True}).usable(NOW)


def test_a_refresh_token_inherits_its_familys_user_and_device() -> None:
    family = RefreshFamily.open(user_id="usr_1", device_id=DEVICE, now=NOW)
    token = RefreshToken.issue(token_hash="h" * 64, family=family, now=NOW + 60)
    assert (token.family_id, token.user_id, token.device_id) == (family.family_id, "usr_1", DEVICE)
    assert token.expires_at == int(NOW + 60) + REFRESH_TOKEN_TTL_S
    assert not token.expired(NOW)
    assert token.expired(token.expires_at)


def test_a_device_keeps_its_first_sighting_and_moves_its_last() -> None:
    first = Device.first_seen(user_id="usr_1", device_id=DEVICE, now=NOW)
    later = first.seen(NOW + 3600)
    assert first.first_seen_at == first.last_seen_at == "2026-11-28T10:15:30.250Z"
    assert later.first_seen_at == first.first_seen_at
    assert later.last_seen_at == "2026-11-28T11:15:30.250Z"
    assert later.trusted is False


@pytest.mark.parametrize(
    ("value", "ok"),
    [("device-4f1c2a", True), ("x", True), ("a b~", True), ("x" * 128, True), ("", False), ("x" * 129, False),
     ("tab\there", False), ("é", False), (None, False)],
)  # fmt: skip
def test_device_ids_are_1_to_128_printable_ascii(value: object, ok: bool) -> None:
    assert is_device_id(value) is ok


def test_device_keys_are_fixed_length_and_distinct() -> None:
    assert len(device_key(DEVICE)) == 64
    assert device_key(DEVICE) != device_key(DEVICE + " ")


def test_time_stamps_are_rfc3339_utc_with_milliseconds_and_z() -> None:
    assert rfc3339(NOW) == "2026-11-28T10:15:30.250Z"
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"


def _fields(instance: object) -> dict[str, object]:
    return {name: getattr(instance, name) for name in instance.__dataclass_fields__}  # type: ignore[attr-defined]

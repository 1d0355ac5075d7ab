"""Argon2id password hashing: PHC strings, verification, rehash detection and equal-cost dummy checks."""

from __future__ import annotations

import base64
import statistics
import time
import unicodedata

import pytest
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from vaultpay.shared import passwords
from vaultpay.shared.errors import ValidationFailed
from vaultpay.shared.passwords import hash_password, needs_rehash, verify_against_dummy, verify_password

pytestmark = pytest.mark.unit

# Composed "é": the NFD form of the same password must verify too.
PASSWORD = "correct horse \u00e9 battery staple"


@pytest.fixture(scope="module")
def stored() -> str:
    # Argon2 is slow on purpose: one hash serves the whole module.
    return hash_password(PASSWORD)


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def test_a_hash_is_a_phc_string_with_the_owasp_parameters(stored: str) -> None:
    # Given a freshly hashed password
    # When its fields are read
    _, algorithm, version, params, salt, digest = stored.split("$")
    # Then it names Argon2id v1.3 with m=19456 KiB, t=2, p=1, a 16-byte salt and a 32-byte hash
    assert (algorithm, version, params) == ("argon2id", "v=19", "m=19456,t=2,p=1")
    assert len(_unb64(salt)) == 16
    assert len(_unb64(digest)) == 32
    assert PASSWORD not in stored


def test_the_stored_string_is_readable_by_cryptographys_own_phc_verifier(stored: str) -> None:
    # Given our stored hash, When another PHC implementation verifies it, Then it accepts (no exception)
    Argon2id.verify_phc_encoded(unicodedata.normalize("NFKC", PASSWORD).encode(), stored)


def test_the_right_password_verifies_and_a_wrong_one_does_not(stored: str) -> None:
    assert verify_password(stored, PASSWORD) is True
    assert verify_password(stored, PASSWORD + "!") is False
    assert verify_password(stored, "") is False


def test_a_password_typed_with_decomposed_accents_verifies(stored: str) -> None:
    # Given the same password with "é" as "e" + combining acute accent
    decomposed = unicodedata.normalize("NFD", PASSWORD)
    assert decomposed != PASSWORD
    # When it is verified, Then it matches (NFKC before hashing)
    assert verify_password(stored, decomposed) is True


def test_two_hashes_of_the_same_password_differ_by_their_salt(stored: str) -> None:
    again = hash_password(PASSWORD)
    assert again != stored
    assert again.split("$")[4] != stored.split("$")[4]


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        "plaintext-password",
        "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
        "$argon2id$v=16$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
        "$argon2id$v=19$m=99999999,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
        "$argon2id$v=19$m=19456,t=999,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
        "$argon2id$v=19$m=19456,t=2,p=0$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaA",
        "$argon2id$v=19$m=19456,t=2,p=1$!!notbase64!!$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g$x",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g\n",
    ],
)
def test_a_malformed_stored_hash_is_false_and_never_an_exception(malformed: str) -> None:
    # Given a stored string that is not a hash we can use (including absurd costs)
    # When a password is verified against it, Then the answer is False, quickly, and it needs a rehash
    started = time.perf_counter()
    assert verify_password(malformed, PASSWORD) is False
    assert time.perf_counter() - started < 0.5
    assert needs_rehash(malformed) is True


def test_a_stored_value_of_the_wrong_type_is_false() -> None:
    assert verify_password(None, PASSWORD) is False  # type: ignore[arg-type]


def test_a_current_hash_needs_no_rehash(stored: str) -> None:
    assert needs_rehash(stored) is False


def test_a_hash_with_older_weaker_parameters_still_verifies_and_asks_for_a_rehash() -> None:
    # Given a hash made years ago with lower costs (written by another Argon2 implementation)
    old = Argon2id(salt=b"0123456789abcdef", length=32, iterations=1, lanes=1, memory_cost=8192)
    stored_old = old.derive_phc_encoded(PASSWORD.encode())
    # When the user logs in, Then the password verifies and the login flow is told to re-hash it
    assert verify_password(stored_old, PASSWORD) is True
    assert needs_rehash(stored_old) is True


def test_an_absurdly_long_password_is_refused_without_hashing(stored: str) -> None:
    too_long = "x" * (passwords.MAX_PASSWORD_CHARS + 1)
    with pytest.raises(ValidationFailed) as caught:
        hash_password(too_long)
    assert too_long not in str(caught.value)
    assert verify_password(stored, too_long) is False


def test_the_dummy_verification_always_fails() -> None:
    assert verify_against_dummy(PASSWORD) is False
    assert verify_against_dummy("") is False


def test_an_unknown_email_costs_about_what_a_wrong_password_costs(stored: str) -> None:
    # Given a real user's hash and the dummy, both warmed up once
    verify_password(stored, "wrong password 0")
    verify_against_dummy("wrong password 0")
    real: list[float] = []
    dummy: list[float] = []
    # When both are timed, interleaved so that machine noise hits both alike
    for attempt in range(5):
        started = time.perf_counter()
        verify_password(stored, f"wrong password {attempt}")
        real.append(time.perf_counter() - started)
        started = time.perf_counter()
        verify_against_dummy(f"wrong password {attempt}")
        dummy.append(time.perf_counter() - started)
    # Then the medians are within a factor of two of each other
    ratio = statistics.median(dummy) / statistics.median(real)
    assert 0.5 < ratio < 2.0, f"dummy/real = {ratio:.2f}"

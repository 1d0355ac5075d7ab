"""TOTP (RFC 6238): secrets, provisioning URIs, the drift window, replay refusal and malformed codes."""

from __future__ import annotations

import base64
from typing import Any

import pyotp
import pytest

from vaultpay.auth import totp
from vaultpay.shared.errors import InfrastructureError

pytestmark = pytest.mark.unit

NOW = 1_800_000_015.0  # 15 s into step 60_000_000
STEP = 60_000_000
# RFC 6238 appendix B: the SHA-1 seed "12345678901234567890", base32-encoded.
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()


@pytest.fixture(scope="module")
def secret() -> str:
    return totp.new_secret()


def _code(secret: str, step: int) -> str:
    return pyotp.TOTP(secret).generate_otp(step)


def test_a_new_secret_is_160_bits_of_base32_and_unique() -> None:
    first, second = totp.new_secret(), totp.new_secret()
    assert len(base64.b32decode(first)) == 20
    assert first != second


def test_the_provisioning_uri_describes_sha1_six_digits_thirty_seconds(secret: str) -> None:
    uri = totp.provisioning_uri(secret, "asha@example.com")
    parsed: Any = pyotp.parse_uri(uri)
    assert uri.startswith("otpauth://totp/VaultPay:asha%40example.com?")
    assert (parsed.secret, parsed.issuer, parsed.digits, parsed.interval) == (secret, "VaultPay", 6, 30)
    assert parsed.digest().name == "sha1"


@pytest.mark.parametrize(
    ("unix_time", "code"),
    [(59, "287082"), (1111111109, "081804"), (1234567890, "005924"), (2000000000, "279037")],
)
def test_the_rfc_6238_test_vectors_verify(unix_time: int, code: str) -> None:
    # The RFC lists 8-digit values; a 6-digit code is their last six digits.
    assert totp.verify(RFC_SECRET, code, now=unix_time, last_used_step=None, window=0) == unix_time // 30


def test_the_current_code_verifies_and_returns_its_step(secret: str) -> None:
    assert totp.verify(secret, _code(secret, STEP), now=NOW, last_used_step=None) == STEP


@pytest.mark.parametrize("offset", [-1, 1])
def test_a_code_one_step_off_is_accepted_for_clock_drift(secret: str, offset: int) -> None:
    assert totp.verify(secret, _code(secret, STEP + offset), now=NOW, last_used_step=None) == STEP + offset


@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_a_code_two_or_more_steps_off_is_refused(secret: str, offset: int) -> None:
    code = _code(secret, STEP + offset)
    if code in {_code(secret, STEP + i) for i in (-1, 0, 1)}:
        pytest.skip("a one-in-a-million collision with a code inside the window")
    assert totp.verify(secret, code, now=NOW, last_used_step=None) is None


def test_window_zero_accepts_only_the_current_step(secret: str) -> None:
    assert totp.verify(secret, _code(secret, STEP), now=NOW, last_used_step=None, window=0) == STEP
    assert totp.verify(secret, _code(secret, STEP - 1), now=NOW, last_used_step=None, window=0) is None


def test_a_used_code_is_refused_when_presented_again(secret: str) -> None:
    # Given a code accepted once, whose step the caller stored
    code = _code(secret, STEP)
    used = totp.verify(secret, code, now=NOW, last_used_step=None)
    # When the same code is presented again (10 s later, same step), Then it is a replay
    assert totp.verify(secret, code, now=NOW + 10, last_used_step=used) is None


def test_an_older_code_is_refused_after_a_newer_one_was_used(secret: str) -> None:
    assert totp.verify(secret, _code(secret, STEP - 1), now=NOW, last_used_step=STEP) is None


def test_the_next_steps_code_is_accepted_after_the_current_one_was_used(secret: str) -> None:
    assert totp.verify(secret, _code(secret, STEP + 1), now=NOW + 30, last_used_step=STEP) == STEP + 1


def test_a_wrong_code_is_refused(secret: str) -> None:
    window_codes = {_code(secret, STEP + i) for i in (-1, 0, 1)}
    wrong = next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in window_codes)
    assert totp.verify(secret, wrong, now=NOW, last_used_step=None) is None


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        "12345",
        "1234567",
        "12345a",
        " 123456",
        "123456 ",
        "123456\n",
        "12 345",
        "\u0661\u0662\u0663\u0664\u0665\u0666",
        "".join(chr(0xFF11 + i) for i in range(6)),
        None,
        123456,
    ],
)
def test_a_malformed_code_is_refused_without_error(secret: str, malformed: Any) -> None:
    assert totp.verify(secret, malformed, now=NOW, last_used_step=None) is None


def test_a_valid_code_with_surrounding_space_is_still_refused(secret: str) -> None:
    # Trimming is the API layer's decision; this layer accepts exactly six ASCII digits.
    assert totp.verify(secret, f" {_code(secret, STEP)}", now=NOW, last_used_step=None) is None


def test_a_corrupt_stored_secret_is_an_infrastructure_error_that_does_not_show_it() -> None:
    with pytest.raises(InfrastructureError) as caught:
        totp.verify("not base32 !!", "123456", now=NOW, last_used_step=None)
    assert "not base32 !!" not in str(caught.value)


def test_a_negative_window_is_a_programming_error(secret: str) -> None:
    with pytest.raises(ValueError, match="window"):
        totp.verify(secret, "123456", now=NOW, last_used_step=None, window=-1)

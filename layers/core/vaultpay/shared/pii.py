"""Personal data in canonical form and masked for display: pure functions, no keys and no I/O (the
encryption of these fields is vaultpay.shared.fieldcrypt)."""

from __future__ import annotations

import re

from vaultpay.shared.errors import (
    FieldError,
    ValidationFailed,
)

_E164 = re.compile(r"\+[1-9][0-9]{7,14}")


# E.164 country calling codes are prefix-free: 1 and 7 are the only one-digit codes, these are the
# two-digit ones (ITU-T E.164 list), and every other code has three digits.
_TWO_DIGIT_COUNTRY_CODES = frozenset(
    (  # noqa: SIM905 - the ITU list, kept readable as two lines rather than forty-four
        "20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 "
        "60 61 62 63 64 65 66 81 82 84 86 90 91 92 93 94 95 98"
    ).split()
)


def normalise_email(email: str) -> str:
    """The canonical form under which an email is unique: surrounding space removed, lower case."""
    return email.strip().lower()


def normalise_phone(phone: str) -> str:
    """The phone number in E.164 (`+919876543210`); anything else is a ValidationFailed."""
    candidate = phone.strip() if isinstance(phone, str) else ""
    if not _E164.fullmatch(candidate):
        # The value itself is PII: it is never repeated in the error.
        raise ValidationFailed(
            "phone must be in E.164 format",
            errors=[FieldError("phone", "must be in E.164 format, e.g. +919876543210")],
        )
    return candidate


def mask_phone(phone: str) -> str:
    """`+919876543210` → `+91******3210`: the country code and the last four digits stay visible."""
    digits = normalise_phone(phone)[1:]
    if digits[0] in "17":
        country_len = 1
    elif digits[:2] in _TWO_DIGIT_COUNTRY_CODES:
        country_len = 2
    else:
        country_len = 3
    national = digits[country_len:]
    return "+" + digits[:country_len] + "*" * (len(national) - 4) + national[-4:]

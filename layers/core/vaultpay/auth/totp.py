"""TOTP second factor (RFC 6238: SHA-1, 6 digits, 30 s steps) with drift window and replay refusal."""

from __future__ import annotations

import hmac
import re
from typing import TYPE_CHECKING

from vaultpay.shared.errors import InfrastructureError

if TYPE_CHECKING:
    import pyotp

DIGITS = 6
STEP_S = 30
DEFAULT_WINDOW = 1
SECRET_CHARS = 32  # base32: 32 characters = 160 bits, the HMAC-SHA-1 key size RFC 4226 recommends

# [0-9], not \d: \d also matches other scripts' digits ("١٢٣٤٥٦"), which are no TOTP code.
_CODE = re.compile(r"[0-9]{6}")


def new_secret() -> str:
    """A fresh random TOTP secret, base32 (160 bits)."""
    import pyotp

    return pyotp.random_base32(length=SECRET_CHARS)


def provisioning_uri(secret: str, email: str, issuer: str = "VaultPay") -> str:
    """The `otpauth://totp/...` URI an authenticator app reads (usually shown as a QR code)."""
    return _totp(secret).provisioning_uri(name=email, issuer_name=issuer)


def verify(
    secret: str,
    code: str,
    *,
    now: float,
    last_used_step: int | None,
    window: int = DEFAULT_WINDOW,
) -> int | None:
    """The time step `code` is valid for, or None (wrong, malformed, or already used).

    Steps within `window` of now are accepted, for phone clocks that drift. The caller stores the
    returned step as the user's `last_used_step` in the same write that accepts the login, so a code,
    or any older one, is accepted at most once.
    """
    if window < 0:
        raise ValueError("window cannot be negative")
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        return None
    totp = _totp(secret)
    current = int(now) // STEP_S
    matched: int | None = None
    # Every candidate step is computed and compared, matching or not, so the time taken does not say
    # whether (or which) step matched; compare_digest keeps each comparison constant-time.
    for step in range(current - window, current + window + 1):
        if step < 0:
            continue
        is_match = hmac.compare_digest(totp.generate_otp(step).encode("ascii"), code.encode("ascii"))
        fresh = last_used_step is None or step > last_used_step
        if is_match and fresh and matched is None:
            matched = step
    return matched


def _totp(secret: str) -> pyotp.TOTP:
    import pyotp

    try:
        return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S)
    except (ValueError, TypeError) as exc:
        # The secret came from our own table: a bad one is corrupt data, never the user's input.
        raise InfrastructureError("the stored TOTP secret is not valid base32") from exc

"""Password hashing with Argon2id (OWASP parameters), stored as self-describing PHC strings."""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import os
import re
import unicodedata
from dataclasses import dataclass

from vaultpay.shared.errors import ValidationFailed

# OWASP Password Storage Cheat Sheet, Argon2id option with 19 MiB: m=19456 KiB, t=2, p=1.
# Raising any of these later is safe: every stored hash names its own parameters, and `needs_rehash`
# tells the login flow to re-hash (on a successful login, while the plaintext is in hand).
MEMORY_KIB = 19456
ITERATIONS = 2
LANES = 1
SALT_BYTES = 16
HASH_BYTES = 32
ARGON2_VERSION = 19  # 0x13, Argon2 v1.3: the only version `cryptography` computes

# The API caps passwords at 128 characters; this cap is only a backstop so that a caller that forgot
# the API check cannot make Argon2 pre-hash megabytes.
MAX_PASSWORD_CHARS = 1024

# Bounds on what a *stored* string may ask for. A stored hash is trusted data, but a corrupted or
# injected one must not make a login allocate gigabytes or loop for minutes.
_MAX_MEMORY_KIB = 1024 * 1024
_MAX_ITERATIONS = 16
_MAX_LANES = 16

_PHC = re.compile(
    r"\$argon2id\$v=(?P<v>[0-9]{1,3})\$m=(?P<m>[0-9]{1,8}),t=(?P<t>[0-9]{1,3}),p=(?P<p>[0-9]{1,3})"
    r"\$(?P<salt>[A-Za-z0-9+/]{11,88})\$(?P<hash>[A-Za-z0-9+/]{22,88})"
)


@dataclass(frozen=True, slots=True)
class _Parsed:
    version: int
    memory_kib: int
    iterations: int
    lanes: int
    salt: bytes
    digest: bytes


def hash_password(password: str) -> str:
    """Hash `password` with a fresh random salt; the result is the string to store."""
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValidationFailed("the password is too long", code="password_too_long")
    salt = os.urandom(SALT_BYTES)
    digest = _derive(_encode(password), salt, MEMORY_KIB, ITERATIONS, LANES, HASH_BYTES)
    return _format(MEMORY_KIB, ITERATIONS, LANES, salt, digest)


def verify_password(stored: str, password: str) -> bool:
    """Whether `password` matches the `stored` hash; a malformed stored string is simply False."""
    parsed = _parse(stored)
    if parsed is None or len(password) > MAX_PASSWORD_CHARS:
        return False
    candidate = _derive(
        _encode(password), parsed.salt, parsed.memory_kib, parsed.iterations, parsed.lanes, len(parsed.digest)
    )
    return hmac.compare_digest(candidate, parsed.digest)


def needs_rehash(stored: str) -> bool:
    """Whether `stored` was made with other parameters than today's (or cannot be read at all)."""
    parsed = _parse(stored)
    if parsed is None:
        return True
    return (parsed.memory_kib, parsed.iterations, parsed.lanes, len(parsed.salt), len(parsed.digest)) != (
        MEMORY_KIB,
        ITERATIONS,
        LANES,
        SALT_BYTES,
        HASH_BYTES,
    )


def verify_against_dummy(password: str) -> bool:
    """Spend exactly the work of a failed `verify_password`, for a login whose email matches no user.

    Without it, "no such email" answers in microseconds and "wrong password" in tens of milliseconds,
    and the difference tells an attacker which emails are registered. Always False.
    """
    return verify_password(_dummy_hash(), password)


@functools.cache
def _dummy_hash() -> str:
    # Today's parameters with a random salt and a random digest: verifying against it costs one full
    # Argon2id derivation, like a real failure, and no password derives to a random 256-bit digest.
    # Built lazily (no work at import time) and without hashing anything, so even the first unknown
    # email on a cold Lambda costs the same as a wrong password.
    return _format(MEMORY_KIB, ITERATIONS, LANES, os.urandom(SALT_BYTES), os.urandom(HASH_BYTES))


def _encode(password: str) -> bytes:
    # NFKC (NIST SP 800-63B §5.1.1.2): the same password typed on two keyboards that compose accents
    # differently must hash the same. Fixed now, because changing it later would lock users out.
    return unicodedata.normalize("NFKC", password).encode("utf-8")


def _derive(secret: bytes, salt: bytes, memory_kib: int, iterations: int, lanes: int, length: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    kdf = Argon2id(salt=salt, length=length, iterations=iterations, lanes=lanes, memory_cost=memory_kib)
    return kdf.derive(secret)


def _format(memory_kib: int, iterations: int, lanes: int, salt: bytes, digest: bytes) -> str:
    return f"$argon2id$v={ARGON2_VERSION}$m={memory_kib},t={iterations},p={lanes}${_b64(salt)}${_b64(digest)}"


def _parse(stored: object) -> _Parsed | None:
    if not isinstance(stored, str):
        return None
    match = _PHC.fullmatch(stored)
    if match is None:
        return None
    version, memory_kib = int(match["v"]), int(match["m"])
    iterations, lanes = int(match["t"]), int(match["p"])
    if version != ARGON2_VERSION:
        return None
    if not (1 <= lanes <= _MAX_LANES and 1 <= iterations <= _MAX_ITERATIONS):
        return None
    # Argon2 itself requires at least 8 KiB per lane.
    if not 8 * lanes <= memory_kib <= _MAX_MEMORY_KIB:
        return None
    salt, digest = _unb64(match["salt"]), _unb64(match["hash"])
    if salt is None or digest is None or len(salt) < 8 or not 16 <= len(digest) <= 64:
        return None
    return _Parsed(version, memory_kib, iterations, lanes, salt, digest)


def _b64(raw: bytes) -> str:
    # The PHC string format: standard base64 alphabet, no padding (what libargon2 and `cryptography`'s
    # own `derive_phc_encoded` write, so stored hashes stay readable by any Argon2 implementation).
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes | None:
    if len(text) % 4 == 1:
        return None
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None

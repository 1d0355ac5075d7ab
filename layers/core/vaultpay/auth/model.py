"""The identity domain in pure Python: users, login challenges, token families, devices and their rules."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field, replace
from enum import StrEnum

# rfc3339 is re-exported: the identity store writes its time stamps with it.
from vaultpay.shared.kernel import parse_timestamp, random_id, rfc3339, secret_token

# docs/api.md "Authentication and identity".
CHALLENGE_TTL_S = 300
MAX_WRONG_CODES = 5
ACCESS_TOKEN_TTL_S = 900
REFRESH_TOKEN_TTL_S = 7 * 24 * 3600
# However often it is refreshed, a session (refresh family) ends this long after its login: a stolen refresh
# token kept alive by rotation still dies, and the user signs in again with the password and TOTP.
FAMILY_MAX_LIFETIME_S = 30 * 24 * 3600
PASSWORD_MIN_CHARS = 12
PASSWORD_MAX_CHARS = 128
FULL_NAME_MAX_CHARS = 100
# RFC 5321: a forward-path holds at most 256 octets, so an address longer than 254 is never deliverable.
EMAIL_MAX_CHARS = 254
EMAIL_LOCAL_MAX_CHARS = 64

EVENT_SOURCE = "/vaultpay/auth"
USER_CREATED = "vaultpay.auth.user.created"
LOGIN_SUCCEEDED = "vaultpay.auth.login.succeeded"
LOGIN_FAILED = "vaultpay.auth.login.failed"
TOKEN_REUSE_DETECTED = "vaultpay.auth.token.reuse_detected"  # noqa: S105 - an event type, not a secret
DEVICE_MISMATCH = "vaultpay.auth.device.mismatch"
USER_DISABLED = "vaultpay.auth.user.disabled"
USER_ENABLED = "vaultpay.auth.user.enabled"

# The same rule as vaultpay.shared.pii.normalise_phone, repeated: the model imports only the kernel.
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
# Deliberately plain: one @, no spaces or controls, a dotted domain of LDH labels. Whether the mailbox
# exists is not knowable here; what matters is that the same address always normalises the same way.
_EMAIL_LOCAL = re.compile(r"[^\s@\x00-\x1f\x7f]{1,64}")
_DOMAIN_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# docs/api.md: 1..128 printable ASCII (the authorizer applies the same rule).
_DEVICE_ID = re.compile(r"[\x20-\x7e]{1,128}")
_CHALLENGE_ID = re.compile(r"chl_[A-Za-z0-9_-]{43}")


class Role(StrEnum):
    CUSTOMER = "customer"
    ADMIN = "admin"


class ChallengeState(StrEnum):
    """What a login challenge allows right now, for the device presenting it."""

    OPEN = "open"
    WRONG_DEVICE = "wrong_device"
    USED = "used"
    EXHAUSTED = "exhausted"  # MAX_WRONG_CODES wrong codes: dead for good
    EXPIRED = "expired"


class UserStatus(StrEnum):
    """A disabled user cannot sign in, refresh or use a token issued before the change."""

    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"


class TokenStatus(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"


def canonical_email(email: str) -> str:
    """Trimmed and lower-cased (docs/api.md); fieldcrypt's blind index normalises identically (tested)."""
    return email.strip().lower()


def canonical_full_name(full_name: str) -> str:
    # NFC so that "é" typed as one or two code points is one name, and counts as one character.
    return unicodedata.normalize("NFC", full_name.strip())


def email_problem(email: str) -> str | None:
    """Why `email` (already canonical) is not acceptable, or None."""
    if not email or len(email) > EMAIL_MAX_CHARS:
        return f"must be an email address of at most {EMAIL_MAX_CHARS} characters"
    local, at, domain = email.rpartition("@")
    labels = domain.split(".")
    if (
        not at
        or not _EMAIL_LOCAL.fullmatch(local)
        or len(labels) < 2
        or not all(_DOMAIN_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        return "must be an email address such as name@example.com"
    return None


def password_problem(password: str) -> str | None:
    if not PASSWORD_MIN_CHARS <= len(password) <= PASSWORD_MAX_CHARS:
        return f"must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters long"
    return None


def full_name_problem(full_name: str) -> str | None:
    """Why `full_name` (already canonical) is not acceptable, or None."""
    if not 1 <= len(full_name) <= FULL_NAME_MAX_CHARS:
        return f"must be 1 to {FULL_NAME_MAX_CHARS} characters long"
    # Control and separator characters would let a name forge lines in statements and audit views.
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in full_name):
        return "must not contain control characters"
    return None


def phone_problem(phone: str) -> str | None:
    if not _E164.fullmatch(phone):
        return "must be in E.164 format, e.g. +919876543210"
    return None


def registration_problems(*, email: str, password: str, full_name: str, phone: str) -> list[tuple[str, str]]:
    """Every (field, message) wrong with a registration whose values are already canonical."""
    checks = (
        ("email", email_problem(email)),
        ("password", password_problem(password)),
        ("full_name", full_name_problem(full_name)),
        ("phone", phone_problem(phone)),
    )
    return [(name, message) for name, message in checks if message is not None]


def is_device_id(value: object) -> bool:
    return isinstance(value, str) and _DEVICE_ID.fullmatch(value) is not None


def is_user_id(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(r"usr_[0-9a-f]{32}", value) is not None


def is_challenge_id(value: object) -> bool:
    return isinstance(value, str) and _CHALLENGE_ID.fullmatch(value) is not None


def new_user_id() -> str:
    return random_id("usr")


def new_family_id() -> str:
    return random_id("fam")


def new_challenge_id() -> str:
    # A challenge id is half a login (the password is proven): 256 random bits, never guessable.
    return secret_token("chl", 32)


def device_key(device_id: str) -> str:
    """The device's sort-key suffix: a fixed-length hash, so any printable id is a safe key."""
    return hashlib.sha256(device_id.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class User:
    """A user's profile as stored: PII only as ciphertext and blind indexes."""

    user_id: str
    role: Role
    email_index: str
    email_enc: str = field(repr=False)
    full_name_enc: str = field(repr=False)
    phone_index: str
    phone_enc: str = field(repr=False)
    password_hash: str = field(repr=False)
    totp_secret_enc: str = field(repr=False)
    created_at: str
    last_totp_step: int | None = None
    status: UserStatus = UserStatus.ACTIVE
    # Every session opened and every access token issued at or before this (Unix seconds) has ended: set
    # when the user is disabled, and kept when they are enabled again (old sessions stay ended).
    sessions_ended_at: int | None = None

    def session_ended(self, opened_at: float) -> bool:
        """Whether a session (or token) opened at `opened_at` has been ended for this user."""
        return self.sessions_ended_at is not None and opened_at <= self.sessions_ended_at


@dataclass(frozen=True, slots=True)
class Challenge:
    """The second half of a login: the password was right, a TOTP code from the same device must follow."""

    challenge_id: str
    user_id: str
    device_id: str
    created_at: str
    expires_at: int  # Unix seconds; also the table's TTL attribute
    attempts: int = 0  # wrong codes so far
    used: bool = False

    @classmethod
    def open(cls, *, user_id: str, device_id: str, now: float) -> Challenge:
        return cls(
            challenge_id=new_challenge_id(),
            user_id=user_id,
            device_id=device_id,
            created_at=rfc3339(now),
            expires_at=int(now) + CHALLENGE_TTL_S,
        )

    def state(self, *, now: float, device_id: str) -> ChallengeState:
        # The device comes first: a caller on another device learns nothing about the challenge.
        if device_id != self.device_id:
            return ChallengeState.WRONG_DEVICE
        if self.used:
            return ChallengeState.USED
        if self.attempts >= MAX_WRONG_CODES:
            return ChallengeState.EXHAUSTED
        # TTL deletion can lag by days (and DynamoDB Local's by a second): expiry is decided here.
        if now >= self.expires_at:
            return ChallengeState.EXPIRED
        return ChallengeState.OPEN


@dataclass(frozen=True, slots=True)
class RefreshFamily:
    """Every refresh token descended from one login; revoking it ends them all."""

    family_id: str
    user_id: str
    device_id: str
    created_at: str
    expires_at: int  # moved forward on each rotation: always at least the newest token's expiry
    revoked: bool = False

    @classmethod
    def open(cls, *, user_id: str, device_id: str, now: float) -> RefreshFamily:
        return cls(
            family_id=new_family_id(),
            user_id=user_id,
            device_id=device_id,
            created_at=rfc3339(now),
            expires_at=int(now) + REFRESH_TOKEN_TTL_S,
        )

    def usable(self, now: float) -> bool:
        """Not revoked, within the sliding lifetime of its newest token and within its absolute one."""
        return not self.revoked and now < self.expires_at and now < self.ends_at

    @property
    def opened_at(self) -> float:
        """When the login that opened it happened (Unix seconds)."""
        return parse_timestamp(self.created_at).timestamp()

    @property
    def ends_at(self) -> float:
        """The absolute end: FAMILY_MAX_LIFETIME_S after the login that opened it."""
        return self.opened_at + FAMILY_MAX_LIFETIME_S


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """A refresh token as stored: only its SHA-256 hash identifies it."""

    token_hash: str
    family_id: str
    user_id: str
    device_id: str
    created_at: str
    expires_at: int
    status: TokenStatus = TokenStatus.ACTIVE

    @classmethod
    def issue(cls, *, token_hash: str, family: RefreshFamily, now: float) -> RefreshToken:
        return cls(
            token_hash=token_hash,
            family_id=family.family_id,
            user_id=family.user_id,
            device_id=family.device_id,
            created_at=rfc3339(now),
            expires_at=int(now) + REFRESH_TOKEN_TTL_S,
        )

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


@dataclass(frozen=True, slots=True)
class Device:
    """A device a user has completed a login from."""

    user_id: str
    device_id: str
    first_seen_at: str
    last_seen_at: str
    # Nothing marks a device trusted yet (no API does): every device starts, and stays, untrusted.
    trusted: bool = False

    @classmethod
    def first_seen(cls, *, user_id: str, device_id: str, now: float) -> Device:
        at = rfc3339(now)
        return cls(user_id=user_id, device_id=device_id, first_seen_at=at, last_seen_at=at)

    def seen(self, now: float) -> Device:
        return replace(self, last_seen_at=rfc3339(now))

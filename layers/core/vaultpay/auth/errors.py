"""The identity domain's write conflicts: the store raises these when a conditional write loses, and the use
cases decide what each means to the caller (a 409, a 401, a retry).
"""

from __future__ import annotations

from vaultpay.shared.errors import (
    ConcurrentModification,
    NotFound,
)


class WriteConflict(ConcurrentModification):
    """A conditional write found the state changed since it was read."""


class EmailAlreadyRegistered(WriteConflict):
    """The email's blind index was claimed by another registration."""


class ChallengeNotOpen(WriteConflict):
    """The challenge was used, exhausted, expired or rebound meanwhile."""


class TotpStepAlreadyUsed(WriteConflict):
    """Another verification already accepted this (or a later) TOTP step for the user."""


class DeviceRecordChanged(WriteConflict):
    """The device record appeared or vanished since it was read; read it again."""


class RefreshTokenNotActive(WriteConflict):
    """The refresh token was retired (or expired) since it was read: another refresh won."""


class FamilyRevoked(WriteConflict):
    """The token family was revoked (or is gone) since it was read."""


class UserNotFound(NotFound):
    """No user has this id (an admin operation named one)."""

    code = "user_not_found"

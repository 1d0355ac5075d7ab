"""What the identity use cases need from the outside world: the store, field encryption, the blind index and
the password hasher, with the values the store hands back.

Implementations: vaultpay.auth.store, vaultpay.shared.fieldcrypt, vaultpay.shared.passwords; wired in
vaultpay.bootstrap.auth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from vaultpay.auth.model import (
    Challenge,
    Device,
    RefreshFamily,
    RefreshToken,
    User,
    UserStatus,
)
from vaultpay.shared.events import DomainEvent


@dataclass(frozen=True, slots=True)
class LoginCompletion:
    """Everything a successful MFA verification commits at once."""

    challenge: Challenge
    user_id: str
    totp_step: int
    device: Device
    device_is_new: bool
    family: RefreshFamily
    token: RefreshToken
    event: DomainEvent
    now: float


@dataclass(frozen=True, slots=True)
class DevicePage:
    items: Sequence[Device]
    next_cursor: str | None


class AuthStore(Protocol):
    """The auth table. Every method that writes more than one item writes them in one transaction."""

    def email_registered(self, email_index: str) -> bool: ...

    def create_user(self, user: User, event: DomainEvent) -> None:
        """Profile, email claim and event; EmailAlreadyRegistered if the email index is claimed."""
        ...

    def find_user_by_email(self, email_index: str) -> User | None:
        """The user holding the email; costs the same reads whether or not there is one."""
        ...

    def get_user(self, user_id: str) -> User | None: ...

    def update_password_hash(self, user_id: str, password_hash: str) -> None: ...

    def add_challenge(self, challenge: Challenge) -> None: ...

    def get_challenge(self, challenge_id: str) -> Challenge | None: ...

    def record_wrong_code(self, challenge_id: str, event: DomainEvent) -> None:
        """One more wrong code on the challenge, and its event."""
        ...

    def get_device(self, user_id: str, device_id: str) -> Device | None: ...

    def list_devices(self, user_id: str, *, limit: int, cursor: str | None) -> DevicePage: ...

    def complete_login(self, completion: LoginCompletion) -> None:
        """Consumes the challenge, records the TOTP step, the device, the family, the token and the event.

        ChallengeNotOpen, TotpStepAlreadyUsed or DeviceRecordChanged when a condition no longer holds.
        """
        ...

    def get_refresh_token(self, token_hash: str) -> RefreshToken | None: ...

    def get_family(self, family_id: str) -> RefreshFamily | None: ...

    def rotate_refresh_token(self, old: RefreshToken, new: RefreshToken, *, now: float) -> None:
        """Retires `old`, stores `new` and extends the family to `new`'s expiry.

        RefreshTokenNotActive if `old` is no longer active, FamilyRevoked if the family is.
        """
        ...

    def revoke_family(self, family_id: str, *, reason: str, now: float, event: DomainEvent | None) -> None:
        """Marks the family revoked (idempotent) and writes `event`, if any, in the same transaction."""
        ...

    def record_event(self, event: DomainEvent) -> None: ...

    def set_user_status(
        self, user_id: str, status: UserStatus, *, sessions_ended_at: int | None, event: DomainEvent
    ) -> None:
        """The user's status, the end of their sessions so far when given, and the event, in one commit;
        UserNotFound when there is no such user."""
        ...


class FieldEncryption(Protocol):
    """vaultpay.shared.fieldcrypt.FieldCipher."""

    def encrypt(self, plaintext: str, *, context: Mapping[str, str]) -> str: ...

    def decrypt(self, blob: str, *, context: Mapping[str, str]) -> str: ...


class Indexer(Protocol):
    """vaultpay.shared.fieldcrypt.BlindIndex."""

    def of(self, kind: str, value: str) -> str: ...


class PasswordHasher(Protocol):
    """The vaultpay.shared.passwords module."""

    def hash_password(self, password: str) -> str: ...

    def verify_password(self, stored: str, password: str) -> bool: ...

    def needs_rehash(self, stored: str) -> bool: ...

    def verify_against_dummy(self, password: str) -> bool: ...

"""The identity use cases with in-memory fakes of every port: no I/O, a fixed clock, real TOTP and JWTs."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pyotp
import pytest
from support.clocks import ManualClock

from vaultpay.auth.errors import (
    ChallengeNotOpen,
    DeviceRecordChanged,
    EmailAlreadyRegistered,
    FamilyRevoked,
    RefreshTokenNotActive,
    TotpStepAlreadyUsed,
    UserNotFound,
)
from vaultpay.auth.model import (
    DEVICE_MISMATCH,
    LOGIN_FAILED,
    LOGIN_SUCCEEDED,
    MAX_WRONG_CODES,
    TOKEN_REUSE_DETECTED,
    USER_CREATED,
    Challenge,
    Device,
    RefreshFamily,
    RefreshToken,
    Role,
    TokenStatus,
    User,
    UserStatus,
)
from vaultpay.auth.ports import DevicePage, LoginCompletion
from vaultpay.auth.service import AuthService, NewUser, TokenPair, device_id_from_event, source_ip_from_event
from vaultpay.auth.tokens import (
    SigningKeySet,
    generate_signing_key_document,
    refresh_token_hash,
    verify_access_token,
)
from vaultpay.shared.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    RateLimited,
    Unauthorized,
    ValidationFailed,
)
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.fieldcrypt import BlindIndex
from vaultpay.shared.ratelimit import FakeCounterStore, RateLimiter

pytestmark = pytest.mark.unit

ISSUER = "https://auth.vaultpay.dev/test"
AUDIENCE = "vaultpay-api"
NOW = 1_795_860_900.0  # the start of a 30-second TOTP step
PHONE = "+919876543210"
PASSWORD = "correct horse battery staple"
DEVICE = "device-4f1c2a"
IP = "203.0.113.10"
CID = "c0ffee00-0000-4000-8000-000000000001"


# ---- fakes -------------------------------------------------------------------------------------------------


class InMemoryAuthStore:
    """The AuthStore port in memory, with the real store's conditions checked atomically at each write.

    `before_commit[name]` runs once, just before the named write checks its conditions: a test puts a
    whole concurrent request there to make it win the race.
    """

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.emails: dict[str, str] = {}
        self.challenges: dict[str, Challenge] = {}
        self.devices: dict[tuple[str, str], Device] = {}
        self.families: dict[str, RefreshFamily] = {}
        self.revocations: dict[str, str] = {}
        self.tokens: dict[str, RefreshToken] = {}
        self.events: list[DomainEvent] = []
        self.before_commit: dict[str, Callable[[], None]] = {}
        self.fail_next: dict[str, Exception] = {}
        self._lock = threading.RLock()

    def _about_to_commit(self, name: str) -> None:
        hook = self.before_commit.pop(name, None)
        if hook is not None:
            hook()
        failure = self.fail_next.pop(name, None)
        if failure is not None:
            raise failure

    def events_of(self, type_: str) -> list[DomainEvent]:
        return [event for event in self.events if event.type == type_]

    def email_registered(self, email_index: str) -> bool:
        return email_index in self.emails

    def create_user(self, user: User, event: DomainEvent) -> None:
        self._about_to_commit("create_user")
        with self._lock:
            if user.email_index in self.emails:
                raise EmailAlreadyRegistered("claimed")
            self.emails[user.email_index] = user.user_id
            self.users[user.user_id] = user
            self.events.append(event)

    def find_user_by_email(self, email_index: str) -> User | None:
        user_id = self.emails.get(email_index)
        return self.users.get(user_id) if user_id else None

    def get_user(self, user_id: str) -> User | None:
        return self.users.get(user_id)

    def update_password_hash(self, user_id: str, password_hash: str) -> None:
        with self._lock:
            self.users[user_id] = replace(self.users[user_id], password_hash=password_hash)

    def add_challenge(self, challenge: Challenge) -> None:
        with self._lock:
            assert challenge.challenge_id not in self.challenges
            self.challenges[challenge.challenge_id] = challenge

    def get_challenge(self, challenge_id: str) -> Challenge | None:
        return self.challenges.get(challenge_id)

    def record_wrong_code(self, challenge_id: str, event: DomainEvent) -> None:
        with self._lock:
            challenge = self.challenges.get(challenge_id)
            if challenge is not None:
                self.challenges[challenge_id] = replace(challenge, attempts=challenge.attempts + 1)
            self.events.append(event)

    def get_device(self, user_id: str, device_id: str) -> Device | None:
        return self.devices.get((user_id, device_id))

    def list_devices(self, user_id: str, *, limit: int, cursor: str | None) -> DevicePage:
        mine = sorted((d for (u, _), d in self.devices.items() if u == user_id), key=lambda d: d.device_id)
        start = int(cursor) if cursor else 0
        page = mine[start : start + limit]
        more = start + limit < len(mine)
        return DevicePage(items=page, next_cursor=str(start + limit) if more else None)

    def complete_login(self, completion: LoginCompletion) -> None:
        self._about_to_commit("complete_login")
        c = completion
        with self._lock:
            user = self.users.get(c.user_id)
            challenge = self.challenges.get(c.challenge.challenge_id)
            key = (c.user_id, c.device.device_id)
            if user is None or (user.last_totp_step is not None and user.last_totp_step >= c.totp_step):
                raise TotpStepAlreadyUsed("step used")
            if (
                challenge is None
                or challenge.used
                or challenge.attempts >= MAX_WRONG_CODES
                or challenge.expires_at <= math.floor(c.now)
                or challenge.device_id != c.device.device_id
                or challenge.user_id != c.user_id
            ):
                raise ChallengeNotOpen("not open")
            if (key in self.devices) == c.device_is_new:
                raise DeviceRecordChanged("device changed")
            assert c.family.family_id not in self.families and c.token.token_hash not in self.tokens
            self.challenges[challenge.challenge_id] = replace(challenge, used=True)
            self.users[c.user_id] = replace(user, last_totp_step=c.totp_step)
            self.devices[key] = c.device
            self.families[c.family.family_id] = c.family
            self.tokens[c.token.token_hash] = c.token
            self.events.append(c.event)

    def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        return self.tokens.get(token_hash)

    def get_family(self, family_id: str) -> RefreshFamily | None:
        return self.families.get(family_id)

    def rotate_refresh_token(self, old: RefreshToken, new: RefreshToken, *, now: float) -> None:
        self._about_to_commit("rotate_refresh_token")
        with self._lock:
            current = self.tokens.get(old.token_hash)
            family = self.families.get(old.family_id)
            if (
                current is None
                or current.status is not TokenStatus.ACTIVE
                or current.expires_at <= math.floor(now)
            ):
                raise RefreshTokenNotActive("not active")
            if family is None or family.revoked:
                raise FamilyRevoked("revoked")
            self.tokens[old.token_hash] = replace(current, status=TokenStatus.RETIRED)
            self.tokens[new.token_hash] = new
            self.families[family.family_id] = replace(family, expires_at=new.expires_at)

    def revoke_family(self, family_id: str, *, reason: str, now: float, event: DomainEvent | None) -> None:
        with self._lock:
            family = self.families.get(family_id)
            if family is not None:
                self.families[family_id] = replace(family, revoked=True)
                self.revocations.setdefault(family_id, reason)
            if event is not None:
                self.events.append(event)

    def set_user_status(
        self, user_id: str, status: UserStatus, *, sessions_ended_at: int | None, event: DomainEvent
    ) -> None:
        with self._lock:
            self._about_to_commit("set_user_status")
            user = self.users.get(user_id)
            if user is None:
                raise UserNotFound(f"no user {user_id}")
            ended = sessions_ended_at if sessions_ended_at is not None else user.sessions_ended_at
            self.users[user_id] = replace(user, status=status, sessions_ended_at=ended)
            self.events.append(event)

    def record_event(self, event: DomainEvent) -> None:
        with self._lock:
            self.events.append(event)


class FakeCipher:
    """Opaque blobs; decrypting needs the very context the value was sealed with, as with FieldCipher."""

    def __init__(self) -> None:
        self._sealed: dict[str, tuple[dict[str, str], str]] = {}
        self._ids = itertools.count()

    def encrypt(self, plaintext: str, *, context: Mapping[str, str]) -> str:
        blob = f"blob-{next(self._ids)}"
        self._sealed[blob] = (dict(context), plaintext)
        return blob

    def decrypt(self, blob: str, *, context: Mapping[str, str]) -> str:
        sealed_context, plaintext = self._sealed[blob]
        assert sealed_context == dict(context), "decrypted under another context"
        return plaintext


@dataclass
class FakePasswords:
    """Records which operation ran: the enumeration tests compare the work done, not wall time."""

    calls: list[str] = field(default_factory=list)
    outdated: bool = False

    def hash_password(self, password: str) -> str:
        self.calls.append("hash")
        return "fake$" + hashlib.sha256(password.encode()).hexdigest()

    def verify_password(self, stored: str, password: str) -> bool:
        self.calls.append("verify")
        return stored == "fake$" + hashlib.sha256(password.encode()).hexdigest()

    def needs_rehash(self, stored: str) -> bool:
        return self.outdated

    def verify_against_dummy(self, password: str) -> bool:
        self.calls.append("verify")  # the same work as a failed verify_password: that is its contract
        return False


@dataclass
class World:
    service: AuthService
    store: InMemoryAuthStore
    passwords: FakePasswords
    counters: FakeCounterStore
    clock: ManualClock
    keys: SigningKeySet


@pytest.fixture(scope="module")
def key_document() -> str:
    return generate_signing_key_document()


@pytest.fixture
def world(key_document: str) -> World:
    store = InMemoryAuthStore()
    passwords = FakePasswords()
    counters = FakeCounterStore()
    clock = ManualClock(NOW)
    service = AuthService(
        store=store,
        cipher=FakeCipher(),
        index=BlindIndex(b"blind-index-key-for-unit-tests-only!"),
        passwords=passwords,
        signer=SigningKeySet.from_secret(key_document),
        limiter=RateLimiter(counters),
        issuer=ISSUER,
        audience=AUDIENCE,
        clock=clock,
    )
    return World(service, store, passwords, counters, clock, SigningKeySet.from_secret(key_document))


def _new_user(**overrides: str) -> NewUser:
    fields = {
        "email": "  Asha.Rao@Example.COM ",
        "password": PASSWORD,
        "full_name": "Asha Rao",
        "phone": PHONE,
    }
    return NewUser(**{**fields, **overrides})


def _register(world: World, **overrides: str) -> tuple[str, str, str]:
    """(user id, canonical email, TOTP secret) of a new customer."""
    enrolment = world.service.register(_new_user(**overrides), correlation_id=CID)
    return enrolment.user_id, enrolment.email, enrolment.totp_secret


def _login(world: World, email: str, *, device: str = DEVICE, ip: str = IP, password: str = PASSWORD) -> str:
    return world.service.login(
        email, password, device_id=device, source_ip=ip, correlation_id=CID
    ).challenge_id


def _verify(world: World, challenge_id: str, code: str, *, device: str = DEVICE) -> TokenPair:
    return world.service.verify_mfa(challenge_id, code, device_id=device, source_ip=IP, correlation_id=CID)


def _code(secret: str, at: float) -> str:
    return str(pyotp.TOTP(secret).at(at))


def _signed_in(world: World, *, device: str = DEVICE) -> tuple[str, str, TokenPair]:
    user_id, email, secret = _register(world)
    pair = _verify(world, _login(world, email, device=device), _code(secret, world.clock.now), device=device)
    return user_id, secret, pair


def _refresh(world: World, token: str, *, device: str = DEVICE) -> TokenPair:
    return world.service.refresh(token, device_id=device, source_ip=IP, correlation_id=CID)


def _refused(code: str, call: Callable[[], object], error: type[Exception] = Unauthorized) -> Any:
    with pytest.raises(error) as caught:
        call()
    assert getattr(caught.value, "code", None) == code, caught.value
    return caught.value


# ---- registration ------------------------------------------------------------------------------------------


def test_register_creates_a_customer_whose_pii_is_stored_only_sealed_and_indexed(world: World) -> None:
    # Given a registration with a mixed-case, padded email
    # When the customer registers
    enrolment = world.service.register(_new_user(), correlation_id=CID)
    # Then the email comes back canonical, with a TOTP enrolment for it
    assert enrolment.email == "asha.rao@example.com"
    assert enrolment.role is Role.CUSTOMER
    assert enrolment.otpauth_uri.startswith("otpauth://totp/VaultPay:asha.rao%40example.com?secret=")
    assert enrolment.totp_secret in enrolment.otpauth_uri
    # And the stored profile holds no plaintext PII, password or secret, only blobs and blind indexes
    user = world.store.users[enrolment.user_id]
    stored = json.dumps([getattr(user, name) for name in user.__dataclass_fields__], default=str)
    for plaintext in ("asha.rao@example.com", "Asha Rao", PHONE, PASSWORD, enrolment.totp_secret):
        assert plaintext not in stored
    assert user.email_index == BlindIndex(b"blind-index-key-for-unit-tests-only!").of(
        "email", "ASHA.RAO@example.com"
    )
    assert user.password_hash.startswith("fake$")
    assert user.last_totp_step is None


def test_each_field_is_sealed_under_its_own_name_and_user(world: World) -> None:
    # FakeCipher refuses any other context; reading the profile back proves the contexts used at register.
    user_id, _, _ = _register(world)
    profile = world.service.profile(user_id)
    assert (profile.email, profile.full_name, profile.phone_masked) == (
        "asha.rao@example.com",
        "Asha Rao",
        "+91******3210",
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("password", "x" * 11),
        ("password", "x" * 129),
        ("full_name", "   "),
        ("full_name", "x" * 101),
        ("phone", "98765 43210"),
    ],
)
def test_register_refuses_an_invalid_field_with_422_naming_it(world: World, field: str, value: str) -> None:
    # Given one invalid field
    # When registering
    error = _refused(
        "validation_failed",
        lambda: world.service.register(_new_user(**{field: value}), correlation_id=CID),
        ValidationFailed,
    )
    # Then the error names the field, and nothing was written or hashed
    assert [e.field for e in error.errors] == [field]
    assert world.store.users == {} and world.store.events == []
    assert "hash" not in world.passwords.calls


def test_the_registration_command_has_no_role_to_assign(world: World) -> None:
    # Mass assignment: whatever a client adds to the body, the command has no place for a role or an id.
    with pytest.raises(TypeError):
        NewUser(email="a@example.com", password=PASSWORD, full_name="A", phone=PHONE, role="admin")  # type: ignore[call-arg]
    user_id, _, _ = _register(world)
    assert world.store.users[user_id].role is Role.CUSTOMER


def test_an_email_registers_only_once_whatever_its_case(world: World) -> None:
    _register(world)
    _refused(
        "email_taken",
        lambda: world.service.register(_new_user(email="ASHA.RAO@EXAMPLE.COM"), correlation_id=CID),
        Conflict,
    )
    assert len(world.store.users) == 1


def test_two_concurrent_registrations_of_one_email_give_one_user_and_one_409(world: World) -> None:
    # Given another registration of the same email commits while this one is between its check and commit
    world.store.before_commit["create_user"] = lambda: _register(world)
    # When this one commits
    _refused("email_taken", lambda: world.service.register(_new_user(), correlation_id=CID), Conflict)
    # Then exactly one user exists
    assert len(world.store.users) == 1
    assert len(world.store.events_of(USER_CREATED)) == 1


def test_user_created_event_names_the_user_and_role_but_no_pii(world: World) -> None:
    user_id, _, secret = _register(world)
    [event] = world.store.events_of(USER_CREATED)
    assert event.subject == user_id and event.correlation_id == CID
    assert dict(event.data) == {
        "user_id": user_id,
        "role": "customer",
        "created_at": world.store.users[user_id].created_at,
    }
    assert "asha" not in event.data_json().lower() and secret not in event.data_json()


def test_create_admin_is_the_way_to_an_admin(world: World) -> None:
    enrolment = world.service.create_admin(_new_user(email="ops@vaultpay.dev"), correlation_id=CID)
    assert enrolment.role is Role.ADMIN
    assert world.store.users[enrolment.user_id].role is Role.ADMIN
    [event] = world.store.events_of(USER_CREATED)
    assert event.actor == "operator" and event.data["role"] == "admin"


def test_create_admin_validates_like_register(world: World) -> None:
    _refused(
        "validation_failed",
        lambda: world.service.create_admin(_new_user(password="short"), correlation_id=CID),
        ValidationFailed,
    )


def test_registrations_are_limited_per_source_ip_before_any_work(world: World) -> None:
    from vaultpay.auth.service import REGISTRATIONS_PER_IP

    for n in range(REGISTRATIONS_PER_IP.limit):
        world.service.register(_new_user(email=f"user{n}@example.com"), correlation_id=CID, source_ip=IP)
    world.passwords.calls.clear()
    refused = _refused(
        "rate_limited",
        lambda: world.service.register(
            _new_user(email="one.more@example.com"), correlation_id=CID, source_ip=IP
        ),
        RateLimited,
    )
    assert refused.retry_after > 0
    assert world.passwords.calls == []  # no Argon2 for a refused registration
    # Another address still registers
    world.service.register(
        _new_user(email="elsewhere@example.com"), correlation_id=CID, source_ip="198.51.100.1"
    )


def test_registrations_are_limited_for_the_whole_api(world: World) -> None:
    from vaultpay.auth.service import REGISTRATIONS_GLOBAL

    # Given the window's registrations all spent (as many requests from everywhere would)
    for _ in range(REGISTRATIONS_GLOBAL.limit):
        world.counters.increment(_global_register_key(world), expires_at=int(NOW) + 60)
    _refused(
        "rate_limited",
        lambda: world.service.register(_new_user(), correlation_id=CID, source_ip="198.51.100.2"),
        RateLimited,
    )


def _global_register_key(world: World) -> str:
    from vaultpay.shared.ratelimit import window_key

    return window_key("register-global", "all", world.clock(), 60)[0]


# ---- login -------------------------------------------------------------------------------------------------


def test_login_with_the_right_password_opens_a_challenge_bound_to_the_device(world: World) -> None:
    user_id, email, _ = _register(world)
    result = world.service.login(email, PASSWORD, device_id=DEVICE, source_ip=IP, correlation_id=CID)
    assert result.expires_in == 300
    challenge = world.store.challenges[result.challenge_id]
    assert (challenge.user_id, challenge.device_id, challenge.attempts, challenge.used) == (
        user_id,
        DEVICE,
        0,
        False,
    )
    assert challenge.expires_at == int(NOW) + 300
    # And no failure was counted (the attempt reserved before the password was checked was given back)
    failures = {k: v for k, v in world.counters.counts.items() if "#login-" in k or "#mfa-user#" in k}
    assert failures and all(count == 0 for count in failures.values()), world.counters.counts


def test_unknown_email_and_wrong_password_are_the_same_401_after_the_same_work(world: World) -> None:
    # Given a registered customer
    _, email, _ = _register(world)
    world.passwords.calls.clear()
    # When one login names an unknown email and another the right email with a wrong password
    unknown = _refused("invalid_credentials", lambda: _login(world, "nobody@example.com"))
    unknown_work = list(world.passwords.calls)
    world.passwords.calls.clear()
    wrong = _refused("invalid_credentials", lambda: _login(world, email, password="wrong password!"))
    wrong_work = list(world.passwords.calls)
    # Then the client sees exactly the same error, and each cost one password verification
    assert (unknown.status, unknown.code, unknown.detail) == (wrong.status, wrong.code, wrong.detail)
    assert unknown_work == wrong_work == ["verify"]
    # And each counted one failure against its account and the source IP
    login_counts = {k: v for k, v in world.counters.counts.items() if "#login-" in k}
    assert sorted(login_counts.values()) == [1, 1, 2]


def test_login_failures_are_events_that_name_no_email(world: World) -> None:
    user_id, email, _ = _register(world)
    for attempt in ("nobody@example.com", email):
        _refused(
            "invalid_credentials", lambda attempt=attempt: _login(world, attempt, password="wrong password!")
        )
    unknown, wrong = world.store.events_of(LOGIN_FAILED)
    assert (unknown.data["reason"], wrong.data["reason"]) == ("unknown_account", "wrong_password")
    assert wrong.subject == user_id and unknown.data["user_id"] is None
    for event in (unknown, wrong):
        assert "@" not in event.data_json() and "nobody" not in event.data_json()
        assert len(event.data["email_index"]) == 64


def test_five_failed_logins_block_the_account_with_429_and_retry_after(world: World) -> None:
    _, email, _ = _register(world)
    for n in range(5):
        _refused(
            "invalid_credentials",
            lambda n=n: _login(world, email, password="wrong password!", ip=f"198.51.100.{n}"),
        )
    world.passwords.calls.clear()
    # The right password does not help while the account is blocked, and costs no Argon2
    blocked = _refused("rate_limited", lambda: _login(world, email, ip="198.51.100.99"), RateLimited)
    assert 1 <= blocked.retry_after <= 900
    assert world.passwords.calls == []
    # Once the window has passed, the right password works again
    world.clock.now += 900
    assert _login(world, email, ip="198.51.100.99")


def test_an_unknown_email_is_blocked_after_five_failures_too(world: World) -> None:
    # Otherwise "429 after five" versus "401 forever" would tell registered emails from the rest.
    for _ in range(5):
        _refused("invalid_credentials", lambda: _login(world, "nobody@example.com"))
    _refused("rate_limited", lambda: _login(world, "nobody@example.com"), RateLimited)


def test_thirty_failed_logins_from_one_address_block_that_address(world: World) -> None:
    _, email, _ = _register(world)
    for n in range(30):
        _refused("invalid_credentials", lambda n=n: _login(world, f"guess{n}@example.com"))
    _refused("rate_limited", lambda: _login(world, email), RateLimited)
    # Another address is not affected
    assert _login(world, email, ip="192.0.2.1")


def test_a_successful_login_rehashes_a_password_stored_with_old_parameters(world: World) -> None:
    user_id, email, _ = _register(world)
    world.store.users[user_id] = replace(
        world.store.users[user_id], password_hash="fake$" + hashlib.sha256(PASSWORD.encode()).hexdigest()
    )
    world.passwords.outdated = True
    world.passwords.calls.clear()
    _login(world, email)
    assert world.passwords.calls == ["verify", "hash"]


# ---- MFA verification --------------------------------------------------------------------------------------


def test_the_current_code_from_the_same_device_returns_a_token_pair(world: World) -> None:
    # Given a customer who passed the password step on a device
    user_id, email, secret = _register(world)
    challenge_id = _login(world, email)
    # When the current TOTP code arrives from the same device
    pair = _verify(world, challenge_id, _code(secret, NOW))
    # Then a bearer pair comes back: a 15-minute access token for this user, role and device
    assert (pair.token_type, pair.expires_in, pair.refresh_expires_in) == ("Bearer", 900, 604800)
    claims = verify_access_token(
        pair.access_token,
        public_keys_by_kid=world.keys.public_keys_by_kid(),
        issuer=ISSUER,
        audience=AUDIENCE,
        now=NOW,
    )
    assert (claims.user_id, claims.role, claims.device_id) == (user_id, "customer", DEVICE)
    assert claims.expires_at - claims.issued_at == 900
    # And only the refresh token's hash is stored, bound to the device, for 7 days
    [token] = world.store.tokens.values()
    assert token.token_hash == refresh_token_hash(pair.refresh_token)
    assert pair.refresh_token not in json.dumps(
        [t.__dict__ if hasattr(t, "__dict__") else str(t) for t in world.store.tokens.values()]
    )
    assert (token.device_id, token.expires_at) == (DEVICE, int(NOW) + 604800)
    # And the challenge is used, the device recorded, and the login announced as from a new device
    assert world.store.challenges[challenge_id].used
    assert world.store.devices[(user_id, DEVICE)].first_seen_at == "2026-11-28T10:15:00.000Z"
    [event] = world.store.events_of(LOGIN_SUCCEEDED)
    assert event.data["new_device"] is True and event.data["device_id"] == DEVICE


def test_a_second_login_from_a_known_device_is_not_a_new_device(world: World) -> None:
    user_id, email, secret = _register(world)
    _verify(world, _login(world, email), _code(secret, NOW))
    world.clock.now = NOW + 3600
    _verify(world, _login(world, email), _code(secret, NOW + 3600))
    first, second = world.store.events_of(LOGIN_SUCCEEDED)
    assert (first.data["new_device"], second.data["new_device"]) == (True, False)
    device = world.store.devices[(user_id, DEVICE)]
    assert (device.first_seen_at, device.last_seen_at) == (
        "2026-11-28T10:15:00.000Z",
        "2026-11-28T11:15:00.000Z",
    )


def test_a_challenge_expires_after_300_seconds(world: World) -> None:
    _, email, secret = _register(world)
    challenge_id = _login(world, email)
    world.clock.now = NOW + 300
    _refused("challenge_expired", lambda: _verify(world, challenge_id, _code(secret, NOW + 300)))
    assert world.store.tokens == {}


def test_after_five_wrong_codes_the_challenge_is_dead_even_for_the_right_code(world: World) -> None:
    _, email, secret = _register(world)
    challenge_id = _login(world, email)
    right = _code(secret, NOW)
    wrong = "000000" if right != "000000" else "111111"
    for _ in range(MAX_WRONG_CODES):
        _refused("invalid_code", lambda: _verify(world, challenge_id, wrong))
    _refused("invalid_challenge", lambda: _verify(world, challenge_id, right))
    assert world.store.tokens == {}
    assert len(world.store.events_of(LOGIN_FAILED)) == MAX_WRONG_CODES


def test_a_challenge_is_used_once(world: World) -> None:
    _, email, secret = _register(world)
    challenge_id = _login(world, email)
    _verify(world, challenge_id, _code(secret, NOW))
    world.clock.now = NOW + 30
    _refused("invalid_challenge", lambda: _verify(world, challenge_id, _code(secret, NOW + 30)))


def test_a_challenge_from_another_device_is_refused_counted_and_reported(world: World) -> None:
    _, email, secret = _register(world)
    challenge_id = _login(world, email)
    _refused(
        "device_mismatch", lambda: _verify(world, challenge_id, _code(secret, NOW), device="attacker-device")
    )
    assert world.store.challenges[challenge_id].attempts == 1
    [event] = world.store.events_of(DEVICE_MISMATCH)
    assert event.data["token_device_id"] == DEVICE and event.data["presented_device_id"] == "attacker-device"
    # The owner's device can still finish the login
    assert _verify(world, challenge_id, _code(secret, NOW)).access_token


def test_a_totp_code_is_accepted_only_once_per_user(world: World) -> None:
    # Given a code accepted for one login
    _, email, secret = _register(world)
    code = _code(secret, NOW)
    _verify(world, _login(world, email), code)
    # When the same code is presented for a second login in the same step
    world.clock.now = NOW + 5
    second = _login(world, email)
    # Then it is a replay
    _refused("invalid_code", lambda: _verify(world, second, code))
    # And the next step's code is accepted
    world.clock.now = NOW + 30
    assert _verify(world, second, _code(secret, NOW + 30)).access_token


def test_two_concurrent_verifications_with_one_code_cannot_both_pass(world: World) -> None:
    # Given two open challenges, and a code that a concurrent request gets accepted just before ours commits
    _, email, secret = _register(world)
    ours, theirs = _login(world, email), _login(world, email)
    code = _code(secret, NOW)
    winners: list[TokenPair] = []
    world.store.before_commit["complete_login"] = lambda: winners.append(_verify(world, theirs, code))
    # When ours commits
    _refused("invalid_code", lambda: _verify(world, ours, code))
    # Then exactly one token pair exists
    assert len(winners) == 1 and len(world.store.tokens) == 1
    assert not world.store.challenges[ours].used


def test_a_device_record_race_is_retried_with_a_fresh_read(world: World) -> None:
    user_id, email, secret = _register(world)
    challenge_id = _login(world, email)
    first = Device.first_seen(user_id=user_id, device_id=DEVICE, now=NOW - 10)

    def another_login_records_the_device() -> None:
        world.store.devices[(user_id, DEVICE)] = first
        world.store.fail_next["complete_login"] = DeviceRecordChanged("changed")

    world.store.before_commit["complete_login"] = another_login_records_the_device
    assert _verify(world, challenge_id, _code(secret, NOW)).access_token
    assert world.store.devices[(user_id, DEVICE)].first_seen_at == first.first_seen_at
    [event] = world.store.events_of(LOGIN_SUCCEEDED)
    assert event.data["new_device"] is False


def test_ten_wrong_codes_across_challenges_block_the_user(world: World) -> None:
    # Whoever knows the password can open challenges at will; the per-user budget still ends the guessing.
    _, email, secret = _register(world)
    for _ in range(2):
        challenge_id = _login(world, email)
        for _ in range(MAX_WRONG_CODES):
            _refused(
                "invalid_code",
                lambda challenge_id=challenge_id: _verify(
                    world, challenge_id, "999999" if _code(secret, NOW) != "999999" else "888888"
                ),
            )
    _refused("rate_limited", lambda: _verify(world, _login(world, email), _code(secret, NOW)), RateLimited)


@pytest.mark.parametrize("challenge_id", ["", "chl_nope", "chl_" + "A" * 43, "x" * 500])
def test_an_unknown_or_malformed_challenge_is_invalid(world: World, challenge_id: str) -> None:
    _refused("invalid_challenge", lambda: _verify(world, challenge_id, "123456"))


# ---- refresh and logout ------------------------------------------------------------------------------------


def test_refresh_rotates_the_token_and_issues_a_new_pair(world: World) -> None:
    user_id, _, first = _signed_in(world)
    world.clock.now = NOW + 600
    second = _refresh(world, first.refresh_token)
    assert second.refresh_token != first.refresh_token and second.access_token != first.access_token
    assert world.store.tokens[refresh_token_hash(first.refresh_token)].status is TokenStatus.RETIRED
    assert world.store.tokens[refresh_token_hash(second.refresh_token)].status is TokenStatus.ACTIVE
    claims = verify_access_token(
        second.access_token,
        public_keys_by_kid=world.keys.public_keys_by_kid(),
        issuer=ISSUER,
        audience=AUDIENCE,
        now=NOW + 600,
    )
    assert (claims.user_id, claims.device_id) == (user_id, DEVICE)
    # The family now lives as long as its newest token
    [family] = world.store.families.values()
    assert family.expires_at == int(NOW + 600) + 604800
    # And the new token refreshes in turn
    assert _refresh(world, second.refresh_token).refresh_token


def test_access_tokens_name_their_session_so_that_ending_it_ends_them(world: World) -> None:
    _, _, first = _signed_in(world)
    second = _refresh(world, first.refresh_token)
    [family] = world.store.families.values()

    def session_of(token: str) -> str | None:
        claims = verify_access_token(
            token,
            public_keys_by_kid=world.keys.public_keys_by_kid(),
            issuer=ISSUER,
            audience=AUDIENCE,
            now=NOW,
        )
        return claims.session_id

    # The login's token and every refreshed one carry the family id: the authorizer looks it up
    assert session_of(first.access_token) == session_of(second.access_token) == family.family_id


def test_a_session_ends_thirty_days_after_its_login_however_often_it_is_refreshed(world: World) -> None:
    from vaultpay.auth.model import FAMILY_MAX_LIFETIME_S

    _, _, pair = _signed_in(world)
    # Refreshed every six days, so the 7-day sliding lifetime never runs out
    at = NOW
    while at + 6 * 86400 < NOW + FAMILY_MAX_LIFETIME_S:
        at += 6 * 86400
        world.clock.now = at
        pair = _refresh(world, pair.refresh_token)
    # Past the 30 days from the login, the next refresh is refused
    world.clock.now = NOW + FAMILY_MAX_LIFETIME_S + 1
    _refused("invalid_refresh_token", lambda: _refresh(world, pair.refresh_token))


ADMIN = "usr_" + "f" * 32


def test_a_disabled_user_cannot_sign_in_refresh_or_finish_an_open_login(world: World) -> None:
    from vaultpay.auth.model import USER_DISABLED

    user_id, secret, pair = _signed_in(world)
    email = "asha.rao@example.com"
    open_challenge = _login(world, email)
    world.clock.now = NOW + 40
    # When an admin disables the user
    user = world.service.disable_user(
        user_id, reason="card reported stolen", admin_id=ADMIN, correlation_id=CID
    )
    assert (user.status, user.sessions_ended_at) == (UserStatus.DISABLED, int(NOW + 40))
    [event] = world.store.events_of(USER_DISABLED)
    assert (event.actor, event.data["reason"], event.data["status"]) == (
        ADMIN,
        "card reported stolen",
        "DISABLED",
    )
    # Then the right password answers 403 user_disabled (a wrong one still 401: nothing is revealed)
    _refused("user_disabled", lambda: _login(world, email), Forbidden)
    _refused("invalid_credentials", lambda: _login(world, email, password="wrong password!"))
    # A login opened before cannot be finished, and the session's refresh token is dead
    world.clock.now = NOW + 60
    _refused("user_disabled", lambda: _verify(world, open_challenge, _code(secret, NOW + 60)), Forbidden)
    _refused("invalid_refresh_token", lambda: _refresh(world, pair.refresh_token))


def test_an_enabled_user_signs_in_again_but_sessions_ended_while_disabled_stay_ended(world: World) -> None:
    user_id, _, pair = _signed_in(world)
    email = "asha.rao@example.com"
    world.clock.now = NOW + 40
    world.service.disable_user(user_id, reason="suspicious", admin_id=ADMIN, correlation_id=CID)
    user = world.service.enable_user(user_id, reason="verified by phone", admin_id=ADMIN, correlation_id=CID)
    assert user.status is UserStatus.ACTIVE
    assert _login(world, email)  # a new challenge
    _refused("invalid_refresh_token", lambda: _refresh(world, pair.refresh_token))


def test_disabling_checks_the_reason_the_user_and_that_the_admin_is_someone_else(world: World) -> None:
    user_id, _, _ = _register(world)
    _refused(
        "validation_failed",
        lambda: world.service.disable_user(user_id, reason="  ", admin_id=ADMIN, correlation_id=CID),
        ValidationFailed,
    )
    for unknown in ("usr_" + "0" * 32, "not-a-user-id"):
        _refused(
            "user_not_found",
            lambda u=unknown: world.service.disable_user(u, reason="x", admin_id=ADMIN, correlation_id=CID),
            UserNotFound,
        )
    _refused(
        "forbidden",
        lambda: world.service.disable_user(user_id, reason="x", admin_id=user_id, correlation_id=CID),
        Forbidden,
    )


def test_a_retired_refresh_token_presented_again_revokes_the_whole_family(world: World) -> None:
    # Given a token that was rotated (retired), and its successor
    user_id, _, first = _signed_in(world)
    second = _refresh(world, first.refresh_token)
    # When the retired one is presented again (a thief, or the owner after a thief)
    _refused("refresh_token_reused", lambda: _refresh(world, first.refresh_token))
    # Then the family is revoked and the successor stops working too
    [family] = world.store.families.values()
    assert family.revoked and world.store.revocations[family.family_id] == "reuse"
    _refused("invalid_refresh_token", lambda: _refresh(world, second.refresh_token))
    # And the reuse is announced
    [event] = world.store.events_of(TOKEN_REUSE_DETECTED)
    assert event.subject == user_id and event.data["family_id"] == family.family_id
    assert first.refresh_token not in event.data_json()


def test_reuse_is_detected_from_any_device(world: World) -> None:
    _, _, first = _signed_in(world)
    _refresh(world, first.refresh_token)
    _refused("refresh_token_reused", lambda: _refresh(world, first.refresh_token, device="thief-phone"))
    assert all(f.revoked for f in world.store.families.values())


def test_two_concurrent_refreshes_with_one_token_end_as_reuse(world: World) -> None:
    # Given another refresh with the same token commits while ours is between its read and its commit
    _, _, first = _signed_in(world)
    winners: list[TokenPair] = []
    world.store.before_commit["rotate_refresh_token"] = lambda: winners.append(
        _refresh(world, first.refresh_token)
    )
    # When ours commits, it loses, and the loss is handled as theft
    _refused("refresh_token_reused", lambda: _refresh(world, first.refresh_token))
    # Then the whole family is revoked: even the winner's new token is dead
    assert len(winners) == 1
    _refused("invalid_refresh_token", lambda: _refresh(world, winners[0].refresh_token))
    assert len(world.store.events_of(TOKEN_REUSE_DETECTED)) == 1


def test_a_refresh_token_from_another_device_is_refused_and_its_family_revoked(world: World) -> None:
    _, _, pair = _signed_in(world)
    _refused("device_mismatch", lambda: _refresh(world, pair.refresh_token, device="thief-phone"))
    [family] = world.store.families.values()
    assert family.revoked
    [event] = world.store.events_of(DEVICE_MISMATCH)
    assert event.data["resource"] == "/v1/auth/refresh"
    _refused("invalid_refresh_token", lambda: _refresh(world, pair.refresh_token))


@pytest.mark.parametrize("token", ["", "not-a-token", "vprt_" + "A" * 43, "vprt_" + "A" * 44])
def test_a_malformed_or_unknown_refresh_token_is_invalid(world: World, token: str) -> None:
    _refused("invalid_refresh_token", lambda: _refresh(world, token))


def test_an_expired_refresh_token_is_invalid(world: World) -> None:
    _, _, pair = _signed_in(world)
    world.clock.now = NOW + 604800
    _refused("invalid_refresh_token", lambda: _refresh(world, pair.refresh_token))


def test_refreshes_are_limited_per_family(world: World) -> None:
    _, _, pair = _signed_in(world)
    token = pair.refresh_token
    for _ in range(30):
        token = _refresh(world, token).refresh_token
    _refused("rate_limited", lambda: _refresh(world, token), RateLimited)


def test_logout_revokes_the_family_and_is_idempotent(world: World) -> None:
    _, _, pair = _signed_in(world)

    def logout() -> None:
        world.service.logout(pair.refresh_token, device_id=DEVICE, source_ip=IP, correlation_id=CID)

    logout()
    _refused("invalid_refresh_token", lambda: _refresh(world, pair.refresh_token))
    logout()  # already revoked: still fine
    [family] = world.store.families.values()
    assert world.store.revocations[family.family_id] == "logout"


def test_logout_with_an_unknown_token_is_401(world: World) -> None:
    _refused(
        "invalid_refresh_token",
        lambda: world.service.logout("vprt_" + "B" * 43, device_id=DEVICE, source_ip=IP, correlation_id=CID),
    )


# ---- the signed-in user ------------------------------------------------------------------------------------


def test_the_profile_shows_the_email_and_name_and_only_a_masked_phone(world: World) -> None:
    user_id, _, _ = _register(world)
    profile = world.service.profile(user_id)
    assert profile.user_id == user_id and profile.role is Role.CUSTOMER
    assert profile.phone_masked == "+91******3210"
    assert profile.created_at == "2026-11-28T10:15:00.000Z"


def test_the_profile_of_a_user_that_is_gone_is_401(world: World) -> None:
    _refused("unauthorized", lambda: world.service.profile("usr_gone"))


def test_devices_lists_the_devices_a_user_signed_in_from(world: World) -> None:
    user_id, email, secret = _register(world)
    for n, device in enumerate(("phone", "tablet")):
        world.clock.now = NOW + 30 * n
        _verify(world, _login(world, email, device=device), _code(secret, world.clock.now), device=device)
    page = world.service.devices(user_id, limit=20)
    assert [d.device_id for d in page.items] == ["phone", "tablet"]
    assert page.next_cursor is None
    assert world.service.devices("usr_someone_else").items == []


# ---- request helpers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "multi"),
    [({}, {}), ({"X-Device-Id": ""}, None), ({"X-Device-Id": "x" * 129}, None), ({"X-Device-Id": "é"}, None),
     ({"X-Device-Id": "a"}, {"X-Device-Id": ["a", "b"]})],
)  # fmt: skip
def test_a_missing_repeated_or_malformed_device_id_is_400(headers: dict[str, str], multi: Any) -> None:
    event = {"headers": headers, "multiValueHeaders": multi}
    _refused("device_id_required", lambda: device_id_from_event(event), BadRequest)


def test_the_device_id_header_is_read_case_insensitively() -> None:
    assert device_id_from_event({"headers": {"x-device-id": " device-1 "}}) == "device-1"
    assert device_id_from_event({"multiValueHeaders": {"X-DEVICE-ID": ["device-2"]}}) == "device-2"


def test_the_source_ip_is_api_gateways_not_the_forwarded_header() -> None:
    event = {"headers": {"X-Forwarded-For": "1.2.3.4"}, "requestContext": {"identity": {"sourceIp": IP}}}
    assert source_ip_from_event(event) == IP
    assert source_ip_from_event({}) == "unknown"


def test_no_log_line_holds_a_password_code_token_email_or_phone(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a whole session, with failures along the way
    user_id, email, secret = _register(world)
    _refused("invalid_credentials", lambda: _login(world, email, password="wrong password!"))
    challenge_id = _login(world, email)
    _refused(
        "invalid_code",
        lambda: _verify(world, challenge_id, "000000" if _code(secret, NOW) != "000000" else "111111"),
    )
    pair = _verify(world, challenge_id, _code(secret, NOW))
    second = _refresh(world, pair.refresh_token)
    _refused("refresh_token_reused", lambda: _refresh(world, pair.refresh_token))
    # When the log output is read
    logged = "\n".join(json.dumps(vars(record), default=str) for record in caplog.records)
    # Then it speaks of the user by id only
    assert user_id in logged
    secrets = (email, PHONE, PHONE[1:], PASSWORD, "wrong password!", secret, _code(secret, NOW))
    tokens = (pair.access_token, pair.refresh_token, second.refresh_token, challenge_id)
    for secret_value in secrets + tokens:
        assert secret_value not in logged

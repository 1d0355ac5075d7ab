"""Identity use cases (register, login, MFA verify, refresh, logout, profile, devices) over their ports.

Errors, all from `vaultpay.shared.errors` (code, HTTP status):

- `validation_failed` 422 — a registration field is invalid (`errors` names each field).
- `email_taken` 409 — the normalised email is already registered.
- `device_id_required` 400 — X-Device-Id missing, repeated, or not 1..128 printable ASCII.
- `invalid_credentials` 401 — unknown email or wrong password (indistinguishable, also in timing).
- `invalid_challenge` 401 — the challenge id is unknown, already used, or dead after 5 wrong codes.
- `challenge_expired` 401 — the challenge is older than 300 s.
- `invalid_code` 401 — wrong, malformed or already used (replayed) TOTP code.
- `device_mismatch` 401 — the challenge or refresh token belongs to another device.
- `invalid_refresh_token` 401 — the refresh token is malformed, unknown, expired, or its family is revoked.
- `refresh_token_reused` 401 — a retired refresh token was presented: its whole family is now revoked.
- `unauthorized` 401 — the authenticated caller's user no longer exists.
- `rate_limited` 429 — too many failed logins (per account, per source IP), wrong codes (per user) or
  refreshes (per token family); carries `retry_after`.
- `concurrent_modification` 409, `service_unavailable` 503 — a write kept losing races, or AWS failed.

No message, log line or event names a password, token, TOTP code or secret, email address or phone number:
users are named by id, unknown accounts by the email's blind index.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypedDict

from vaultpay.auth import totp
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
    ACCESS_TOKEN_TTL_S,
    CHALLENGE_TTL_S,
    DEVICE_MISMATCH,
    EVENT_SOURCE,
    LOGIN_FAILED,
    LOGIN_SUCCEEDED,
    REFRESH_TOKEN_TTL_S,
    TOKEN_REUSE_DETECTED,
    USER_CREATED,
    USER_DISABLED,
    USER_ENABLED,
    Challenge,
    ChallengeState,
    Device,
    RefreshFamily,
    RefreshToken,
    Role,
    TokenStatus,
    User,
    UserStatus,
    canonical_email,
    canonical_full_name,
    is_challenge_id,
    is_device_id,
    is_user_id,
    new_user_id,
    registration_problems,
)
from vaultpay.auth.ports import (
    AuthStore,
    DevicePage,
    FieldEncryption,
    Indexer,
    LoginCompletion,
    PasswordHasher,
)
from vaultpay.auth.tokens import (
    TokenSigner,
    issue_access_token,
    new_refresh_token,
    refresh_token_hash,
    refresh_token_lookup_key,
)
from vaultpay.shared import kernel
from vaultpay.shared.errors import (
    BadRequest,
    Conflict,
    FieldError,
    Forbidden,
    RateLimited,
    Unauthorized,
    ValidationFailed,
)
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.kernel import rfc3339
from vaultpay.shared.observability import get_logger
from vaultpay.shared.pii import mask_phone
from vaultpay.shared.ratelimit import RateLimiter, Window

TOKEN_TYPE = "Bearer"  # noqa: S105 - the OAuth token_type, not a secret
TOTP_ISSUER = "VaultPay"
DEVICE_HEADER = "x-device-id"
# A new device record can race only with another login of the same user on the same device.
_DEVICE_RACE_ATTEMPTS = 3


# identity-contract.md "Rate limits". All count failures, except the refresh limit, which counts every use.
LOGIN_PER_ACCOUNT = Window(limit=5, period_s=900)
LOGIN_PER_IP = Window(limit=30, period_s=900)
# Each challenge allows 5 wrong codes, but whoever knows the password can open challenges at will: without
# a per-user budget the 10^6 codes could be worked through 5 at a time.
WRONG_CODES_PER_USER = Window(limit=10, period_s=900)
REFRESH_PER_FAMILY = Window(limit=30, period_s=3600)
# Challenges a correct password may open per user in the challenge lifetime: each allows 5 wrong codes, so a
# password thief cannot fan a burst of guesses out over many challenges (the per-user budget caps it too).
CHALLENGES_PER_USER = Window(limit=3, period_s=300)
# Registration runs Argon2id: bounded per source IP and for the whole API, before any of that work.
REGISTRATIONS_PER_IP = Window(limit=20, period_s=3600)
REGISTRATIONS_GLOBAL = Window(limit=600, period_s=60)


@dataclass(frozen=True, slots=True)
class RateLimits:
    login_account: Window = LOGIN_PER_ACCOUNT
    login_ip: Window = LOGIN_PER_IP
    mfa_user: Window = WRONG_CODES_PER_USER
    refresh: Window = REFRESH_PER_FAMILY
    challenges_user: Window = CHALLENGES_PER_USER
    register_ip: Window = REGISTRATIONS_PER_IP
    register_global: Window = REGISTRATIONS_GLOBAL


# ---- commands and results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewUser:
    """A registration as received (not yet normalised or validated). Only the field names in repr."""

    email: str = field(repr=False)
    password: str = field(repr=False)
    full_name: str = field(repr=False)
    phone: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Enrolment:
    """A created user and the TOTP secret to enrol in an authenticator app (shown once, never again)."""

    user_id: str
    email: str = field(repr=False)
    role: Role
    totp_secret: str = field(repr=False)
    otpauth_uri: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class LoginChallenge:
    challenge_id: str = field(repr=False)
    expires_in: int


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    refresh_expires_in: int
    token_type: str = TOKEN_TYPE

    def body(self) -> dict[str, Any]:
        """The token response of MFA verify and refresh (docs/api.md)."""
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "refresh_expires_in": self.refresh_expires_in,
        }


@dataclass(frozen=True, slots=True)
class Profile:
    user_id: str
    email: str = field(repr=False)
    full_name: str = field(repr=False)
    phone_masked: str
    role: Role
    created_at: str


def device_id_from_event(event: Mapping[str, Any]) -> str:
    """The request's X-Device-Id under the contract's rule; BadRequest `device_id_required` otherwise.

    The public auth routes have no authorizer to check it, so their handlers call this. A header sent
    twice is refused: which copy a proxy keeps is not something to bind a session to.
    """
    multi = event.get("multiValueHeaders") or {}
    values = [v for k, vs in multi.items() if str(k).lower() == DEVICE_HEADER for v in (vs or [])]
    single = [v for k, v in (event.get("headers") or {}).items() if str(k).lower() == DEVICE_HEADER]
    candidates = values or single
    value = candidates[0].strip() if len(candidates) == 1 and isinstance(candidates[0], str) else None
    if value is None or not is_device_id(value):
        raise BadRequest(
            "The X-Device-Id header is required (1 to 128 printable ASCII characters).",
            code="device_id_required",
        )
    return value


def source_ip_from_event(event: Mapping[str, Any]) -> str:
    """API Gateway's view of the caller's address (not X-Forwarded-For, which the caller writes)."""
    identity = (event.get("requestContext") or {}).get("identity") or {}
    source_ip = identity.get("sourceIp")
    return source_ip if isinstance(source_ip, str) and source_ip else "unknown"


class RequestOrigin(TypedDict):
    """Where a public auth request comes from: the keyword arguments of every use case that opens, uses or
    ends a session (login, verify_mfa, refresh, logout), which bind it to a device and log its address."""

    device_id: str
    source_ip: str
    correlation_id: str


def request_origin(event: Mapping[str, Any], *, correlation_id: str) -> RequestOrigin:
    """The request's device (`device_id_from_event`'s rule: BadRequest when it has none), address and
    correlation id, for a public auth route's handler: `service.logout(token, **request_origin(...))`."""
    return RequestOrigin(
        device_id=device_id_from_event(event),
        source_ip=source_ip_from_event(event),
        correlation_id=correlation_id,
    )


class AuthService:
    """The identity use cases. Every state change commits with its event in one store call."""

    def __init__(
        self,
        *,
        store: AuthStore,
        cipher: FieldEncryption,
        index: Indexer,
        passwords: PasswordHasher,
        signer: TokenSigner,
        limiter: RateLimiter,
        issuer: str,
        audience: str,
        limits: RateLimits = RateLimits(),
        clock: Callable[[], float] = kernel.now,
        totp_cipher: FieldEncryption | None = None,
    ) -> None:
        """`totp_cipher` seals the TOTP secrets under data keys of their own KMS encryption context, which
        only the MFA functions may decrypt (`cipher` when not given: one cipher for all, as in tests)."""
        self._store = store
        self._cipher = cipher
        self._totp_cipher = totp_cipher or cipher
        self._index = index
        self._passwords = passwords
        self._signer = signer
        self._limiter = limiter
        self._issuer = issuer
        self._audience = audience
        self._limits = limits
        self._clock = clock

    # ---- registration ---------------------------------------------------------------------------------

    def register(self, new_user: NewUser, *, correlation_id: str, source_ip: str = "unknown") -> Enrolment:
        """A new customer (the API's only way in: the role is never taken from the request).

        Counted per source IP and for the whole API before anything else (Argon2id, KMS, the email
        look-up that would otherwise answer `email_taken` to anyone enumerating addresses at full speed).
        """
        now = self._clock()
        self._limiter.hit("register-ip", source_ip, self._limits.register_ip, now=now)
        self._limiter.hit("register-global", "all", self._limits.register_global, now=now)
        return self._create_user(new_user, role=Role.CUSTOMER, correlation_id=correlation_id)

    def create_admin(
        self, new_user: NewUser, *, correlation_id: str, operator: str | None = None
    ) -> Enrolment:
        """A new admin, for the operator command only (no API route reaches this). `operator` is who ran
        it (the IAM principal's ARN, or `local:<name>` locally): the event's actor and `created_by`."""
        return self._create_user(new_user, role=Role.ADMIN, correlation_id=correlation_id, operator=operator)

    def _create_user(
        self, new_user: NewUser, *, role: Role, correlation_id: str, operator: str | None = None
    ) -> Enrolment:
        email = canonical_email(new_user.email)
        full_name = canonical_full_name(new_user.full_name)
        phone = new_user.phone.strip()
        problems = registration_problems(
            email=email, password=new_user.password, full_name=full_name, phone=phone
        )
        if problems:
            raise ValidationFailed(
                "The registration is not valid.",
                errors=[FieldError(name, message) for name, message in problems],
            )
        email_index = self._index.of("email", email)
        # Checked before the slow work (Argon2, KMS); the transaction's condition is what guarantees it.
        if self._store.email_registered(email_index):
            raise _email_taken()
        now = self._clock()
        user_id = new_user_id()
        secret = totp.new_secret()

        def sealed(name: str, value: str) -> str:
            # The user id in the context binds each ciphertext to its row: copied elsewhere, it fails.
            cipher = self._totp_cipher if name == "totp_secret" else self._cipher
            return cipher.encrypt(value, context={"field": name, "user_id": user_id})

        user = User(
            user_id=user_id,
            role=role,
            email_index=email_index,
            email_enc=sealed("email", email),
            full_name_enc=sealed("full_name", full_name),
            phone_index=self._index.of("phone", phone),
            phone_enc=sealed("phone", phone),
            password_hash=self._passwords.hash_password(new_user.password),
            totp_secret_enc=sealed("totp_secret", secret),
            created_at=rfc3339(now),
        )
        event = DomainEvent(
            type=USER_CREATED,
            source=EVENT_SOURCE,
            subject=user_id,
            actor=user_id if role is Role.CUSTOMER else (operator or "operator"),
            correlation_id=correlation_id,
            data={
                "user_id": user_id,
                "role": role.value,
                "created_at": user.created_at,
                **({"created_by": operator} if operator is not None and role is Role.ADMIN else {}),
            },
        )
        try:
            self._store.create_user(user, event)
        except EmailAlreadyRegistered:
            raise _email_taken() from None
        get_logger().info("user registered", extra={"user_id": user_id, "role": role.value})
        return Enrolment(
            user_id=user_id,
            email=email,
            role=role,
            totp_secret=secret,
            otpauth_uri=totp.provisioning_uri(secret, email, issuer=TOTP_ISSUER),
        )

    # ---- login: password, then a challenge for the second factor ---------------------------------------

    def login(
        self, email: str, password: str, *, device_id: str, source_ip: str, correlation_id: str
    ) -> LoginChallenge:
        """Checks the password and opens a challenge bound to the device.

        Unknown email and wrong password take the same path: the same reads, one Argon2 derivation,
        the same counters and the same kind of event, so neither the answer nor its timing tells them
        apart. Each attempt is counted (per source IP and per account) *before* the password is evaluated,
        in one conditional write per counter: however many arrive at once, at most the window's limit are
        evaluated, and a blocked caller costs no Argon2. A correct password gives its count back.
        """
        now = self._clock()
        email_index = self._index.of("email", canonical_email(email))
        ip_attempt = self._limiter.reserve("login-ip", source_ip, self._limits.login_ip, now=now)
        try:
            account_attempt = self._limiter.reserve(
                "login-account", email_index, self._limits.login_account, now=now
            )
        except RateLimited:
            self._limiter.release(ip_attempt)  # not evaluated: it costs the address nothing
            raise
        user = self._store.find_user_by_email(email_index)
        if user is None:
            self._passwords.verify_against_dummy(password)
            self._login_failed(
                None,
                email_index,
                device_id=device_id,
                source_ip=source_ip,
                correlation_id=correlation_id,
                now=now,
            )
        if not self._passwords.verify_password(user.password_hash, password):
            self._login_failed(
                user,
                email_index,
                device_id=device_id,
                source_ip=source_ip,
                correlation_id=correlation_id,
                now=now,
            )
        self._limiter.release(account_attempt)
        self._limiter.release(ip_attempt)
        if user.status is UserStatus.DISABLED:
            raise _user_disabled()  # only to the holder of the right password: nobody else learns of it
        if self._passwords.needs_rehash(user.password_hash):
            # The only moment the plaintext is at hand: stored hashes move to today's parameters here.
            self._store.update_password_hash(user.user_id, self._passwords.hash_password(password))
        self._limiter.reserve("mfa-challenges", user.user_id, self._limits.challenges_user, now=now)
        challenge = Challenge.open(user_id=user.user_id, device_id=device_id, now=now)
        self._store.add_challenge(challenge)
        get_logger().info("login challenge opened", extra={"user_id": user.user_id})
        return LoginChallenge(challenge_id=challenge.challenge_id, expires_in=CHALLENGE_TTL_S)

    def _login_failed(
        self,
        user: User | None,
        email_index: str,
        *,
        device_id: str,
        source_ip: str,
        correlation_id: str,
        now: float,
    ) -> NoReturn:
        # The event tells the fraud engine which kind of failure it was; the caller is never told.
        reason = "unknown_account" if user is None else "wrong_password"
        user_id = user.user_id if user is not None else None
        self._store.record_event(
            DomainEvent(
                type=LOGIN_FAILED,
                source=EVENT_SOURCE,
                subject=user_id or email_index,
                actor=user_id,
                correlation_id=correlation_id,
                data={
                    "reason": reason,
                    "user_id": user_id,
                    "email_index": email_index,
                    "device_id": device_id,
                    "source_ip": source_ip,
                },
            )
        )
        get_logger().info("login refused", extra={"reason": reason, "email_index": email_index})
        # The attempt stays counted (login() reserved it before evaluating the password).
        raise Unauthorized("The email or password is not correct.", code="invalid_credentials")

    def verify_mfa(
        self, challenge_id: str, code: str, *, device_id: str, source_ip: str, correlation_id: str
    ) -> TokenPair:
        """Accepts the current TOTP code once, from the challenge's device, and starts a token family."""
        now = self._clock()
        challenge = self._store.get_challenge(challenge_id) if is_challenge_id(challenge_id) else None
        if challenge is None:
            raise _invalid_challenge()
        state = challenge.state(now=now, device_id=device_id)
        if state is ChallengeState.WRONG_DEVICE:
            # Counted as a wrong code: a challenge being tried from elsewhere should die sooner, not later.
            self._store.record_wrong_code(
                challenge.challenge_id,
                _device_mismatch(
                    user_id=challenge.user_id,
                    expected=challenge.device_id,
                    presented=device_id,
                    resource="/v1/auth/mfa/verify",
                    source_ip=source_ip,
                    correlation_id=correlation_id,
                ),
            )
            raise _device_mismatch_error()
        if state is ChallengeState.EXPIRED:
            raise Unauthorized("The login challenge has expired; sign in again.", code="challenge_expired")
        if state is not ChallengeState.OPEN:
            raise _invalid_challenge()
        # Counted before the code is evaluated (one conditional write): at most the window's limit of codes
        # is ever checked for a user, however many arrive at once; a correct code gives its count back.
        code_attempt = self._limiter.reserve("mfa-user", challenge.user_id, self._limits.mfa_user, now=now)
        user = self._store.get_user(challenge.user_id)
        if user is None:
            raise _invalid_challenge()
        if user.status is UserStatus.DISABLED:
            raise _user_disabled()
        secret = self._totp_cipher.decrypt(
            user.totp_secret_enc, context={"field": "totp_secret", "user_id": user.user_id}
        )
        step = totp.verify(secret, code, now=now, last_used_step=user.last_totp_step)
        if step is None:
            self._wrong_code(challenge, source_ip=source_ip, correlation_id=correlation_id)
        family = RefreshFamily.open(user_id=user.user_id, device_id=device_id, now=now)
        # Signed before the commit, so that nothing can fail between consuming the challenge and
        # answering; a commit that fails discards the token unseen.
        access_token = self._access_token(user, device_id=device_id, session_id=family.family_id, now=now)
        refresh_token = new_refresh_token()
        token = RefreshToken.issue(token_hash=refresh_token_hash(refresh_token), family=family, now=now)
        for attempt in range(_DEVICE_RACE_ATTEMPTS):
            known = self._store.get_device(user.user_id, device_id)
            device = (
                known.seen(now)
                if known
                else Device.first_seen(user_id=user.user_id, device_id=device_id, now=now)
            )
            event = DomainEvent(
                type=LOGIN_SUCCEEDED,
                source=EVENT_SOURCE,
                subject=user.user_id,
                actor=user.user_id,
                correlation_id=correlation_id,
                data={
                    "user_id": user.user_id,
                    "role": user.role.value,
                    "device_id": device_id,
                    "new_device": known is None,
                    "family_id": family.family_id,
                    "source_ip": source_ip,
                },
            )
            completion = LoginCompletion(
                challenge=challenge,
                user_id=user.user_id,
                totp_step=step,
                device=device,
                device_is_new=known is None,
                family=family,
                token=token,
                event=event,
                now=now,
            )
            try:
                self._store.complete_login(completion)
                break
            except TotpStepAlreadyUsed:
                # A concurrent verification accepted this code first: for this request it is a replay.
                raise _invalid_code() from None
            except ChallengeNotOpen:
                raise _invalid_challenge() from None
            except DeviceRecordChanged:
                if attempt == _DEVICE_RACE_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0, 0.02 * 2**attempt))  # noqa: S311 - jitter, not a secret
        self._limiter.release(code_attempt)
        get_logger().info("login succeeded", extra={"user_id": user.user_id, "new_device": known is None})
        return _token_pair(access_token, refresh_token)

    def _wrong_code(self, challenge: Challenge, *, source_ip: str, correlation_id: str) -> NoReturn:
        event = DomainEvent(
            type=LOGIN_FAILED,
            source=EVENT_SOURCE,
            subject=challenge.user_id,
            actor=challenge.user_id,
            correlation_id=correlation_id,
            data={
                "reason": "invalid_code",
                "user_id": challenge.user_id,
                "device_id": challenge.device_id,
                "attempt": challenge.attempts + 1,
                "source_ip": source_ip,
            },
        )
        self._store.record_wrong_code(challenge.challenge_id, event)
        get_logger().info(
            "wrong code", extra={"user_id": challenge.user_id, "attempt": challenge.attempts + 1}
        )
        raise _invalid_code()  # it stays counted: verify_mfa reserved it before evaluating the code

    # ---- an admin disables or enables a user ---------------------------------------------------------

    def disable_user(self, user_id: str, *, reason: str, admin_id: str, correlation_id: str) -> User:
        """DISABLED: no login, no refresh, and every session and access token so far ends (the authorizer
        answers 401 token_revoked within its session check interval). Idempotent."""
        return self._set_status(
            user_id, UserStatus.DISABLED, reason=reason, admin_id=admin_id, correlation_id=correlation_id
        )

    def enable_user(self, user_id: str, *, reason: str, admin_id: str, correlation_id: str) -> User:
        """ACTIVE again: the user signs in anew; the sessions ended while disabled stay ended."""
        return self._set_status(
            user_id, UserStatus.ACTIVE, reason=reason, admin_id=admin_id, correlation_id=correlation_id
        )

    def _set_status(
        self, user_id: str, status: UserStatus, *, reason: str, admin_id: str, correlation_id: str
    ) -> User:
        reason = reason.strip()
        if not 1 <= len(reason) <= 500:
            raise ValidationFailed(
                "The request is not valid.",
                errors=[FieldError("reason", "Give a reason of 1 to 500 characters.")],
            )
        if not is_user_id(user_id):
            raise UserNotFound("No such user.")
        if user_id == admin_id:
            raise Forbidden("An admin cannot change their own account's status.", code="forbidden")
        now = self._clock()
        ended_at = int(now) if status is UserStatus.DISABLED else None
        event = DomainEvent(
            type=USER_DISABLED if status is UserStatus.DISABLED else USER_ENABLED,
            source=EVENT_SOURCE,
            subject=user_id,
            actor=admin_id,
            correlation_id=correlation_id,
            data={"user_id": user_id, "status": status.value, "reason": reason, "by": admin_id},
        )
        self._store.set_user_status(user_id, status, sessions_ended_at=ended_at, event=event)
        user = self._store.get_user(user_id)
        if user is None:
            raise UserNotFound("No such user.")
        get_logger().info("user status changed", extra={"user_id": user_id, "status": status.value})
        return user

    # ---- refresh tokens ---------------------------------------------------------------------------------

    def refresh(
        self, refresh_token: str, *, device_id: str, source_ip: str, correlation_id: str
    ) -> TokenPair:
        """A new pair for an active refresh token presented from its own device; the old one retires."""
        now = self._clock()
        origin = RequestOrigin(device_id=device_id, source_ip=source_ip, correlation_id=correlation_id)
        record = self._presented_token(refresh_token, origin, resource="/v1/auth/refresh", now=now)
        self._limiter.hit("refresh", record.family_id, self._limits.refresh, now=now)
        family = self._store.get_family(record.family_id)
        if family is None or not family.usable(now):
            raise _invalid_refresh_token()
        user = self._store.get_user(record.user_id)
        # A disabled user refreshes nothing, and a session opened before their sessions were ended stays so.
        if user is None or user.status is UserStatus.DISABLED or user.session_ended(family.opened_at):
            raise _invalid_refresh_token()
        access_token = self._access_token(
            user, device_id=record.device_id, session_id=record.family_id, now=now
        )
        new_token = new_refresh_token()
        successor = RefreshToken.issue(token_hash=refresh_token_hash(new_token), family=family, now=now)
        try:
            self._store.rotate_refresh_token(record, successor, now=now)
        except RefreshTokenNotActive:
            # Two refreshes with one token: at most one can be its owner. Whichever lost the race is
            # handled as theft, which also ends the winner's new token (the owner signs in again).
            self._reuse_detected(record, origin, now=now)
        except FamilyRevoked:
            raise _invalid_refresh_token() from None
        get_logger().info(
            "refresh token rotated", extra={"user_id": user.user_id, "family_id": family.family_id}
        )
        return _token_pair(access_token, new_token)

    def logout(self, refresh_token: str, *, device_id: str, source_ip: str, correlation_id: str) -> None:
        """Revokes the token's family; an already revoked family is fine (logout is idempotent)."""
        now = self._clock()
        origin = RequestOrigin(device_id=device_id, source_ip=source_ip, correlation_id=correlation_id)
        record = self._presented_token(refresh_token, origin, resource="/v1/auth/logout", now=now)
        self._store.revoke_family(record.family_id, reason="logout", now=now, event=None)
        get_logger().info("logged out", extra={"user_id": record.user_id, "family_id": record.family_id})

    def _access_token(self, user: User, *, device_id: str, session_id: str, now: float) -> str:
        """The user's access token for one session (its refresh family), bound to its device."""
        token, _ = issue_access_token(
            self._signer,
            user_id=user.user_id,
            role=user.role.value,
            device_id=device_id,
            issuer=self._issuer,
            audience=self._audience,
            now=now,
            ttl_s=ACCESS_TOKEN_TTL_S,
            session_id=session_id,
        )
        return token

    def _presented_token(
        self, refresh_token: str, origin: RequestOrigin, *, resource: str, now: float
    ) -> RefreshToken:
        """The presented token's record, past the theft checks. They come before any rate limit, so that an
        attacker cannot spend the owner's budget first."""
        try:
            token_hash = refresh_token_lookup_key(refresh_token)
        except Unauthorized:
            raise _invalid_refresh_token() from None
        record = self._store.get_refresh_token(token_hash)
        # An expired token is refused like an unknown one: TTL deletes it at some point anyway.
        if record is None or record.expired(now):
            raise _invalid_refresh_token()
        if record.status is TokenStatus.RETIRED:
            self._reuse_detected(record, origin, now=now)
        device_id = origin["device_id"]
        if device_id != record.device_id:
            # A refresh token lives for days: one presented from another device is treated as stolen, and
            # its family ends now rather than when the thief finds out the device id.
            event = _device_mismatch(
                user_id=record.user_id,
                expected=record.device_id,
                presented=device_id,
                resource=resource,
                source_ip=origin["source_ip"],
                correlation_id=origin["correlation_id"],
            )
            self._store.revoke_family(record.family_id, reason="device_mismatch", now=now, event=event)
            get_logger().warning(
                "refresh token from another device",
                extra={"user_id": record.user_id, "family_id": record.family_id},
            )
            raise _device_mismatch_error()
        return record

    def _reuse_detected(self, record: RefreshToken, origin: RequestOrigin, *, now: float) -> NoReturn:
        event = DomainEvent(
            type=TOKEN_REUSE_DETECTED,
            source=EVENT_SOURCE,
            subject=record.user_id,
            actor=None,
            correlation_id=origin["correlation_id"],
            data={
                "user_id": record.user_id,
                "family_id": record.family_id,
                "token_device_id": record.device_id,
                "presented_device_id": origin["device_id"],
                "source_ip": origin["source_ip"],
            },
        )
        self._store.revoke_family(record.family_id, reason="reuse", now=now, event=event)
        get_logger().warning(
            "refresh token reuse", extra={"user_id": record.user_id, "family_id": record.family_id}
        )
        raise Unauthorized(
            "This refresh token was already used; every session from that sign-in is now ended.",
            code="refresh_token_reused",
        )

    # ---- the signed-in user ----------------------------------------------------------------------------

    def profile(self, user_id: str) -> Profile:
        user = self._store.get_user(user_id)
        if user is None:
            # A valid token for a user that is gone: the credential no longer names anyone.
            raise Unauthorized("The authenticated user does not exist.")

        def opened(name: str, blob: str) -> str:
            return self._cipher.decrypt(blob, context={"field": name, "user_id": user.user_id})

        return Profile(
            user_id=user.user_id,
            email=opened("email", user.email_enc),
            full_name=opened("full_name", user.full_name_enc),
            phone_masked=mask_phone(opened("phone", user.phone_enc)),
            role=user.role,
            created_at=user.created_at,
        )

    def devices(self, user_id: str, *, limit: int = 20, cursor: str | None = None) -> DevicePage:
        return self._store.list_devices(user_id, limit=limit, cursor=cursor)


def _token_pair(access_token: str, refresh_token: str) -> TokenPair:
    return TokenPair(
        access_token=access_token,
        refresh_token=refresh_token,
        expires_in=ACCESS_TOKEN_TTL_S,
        refresh_expires_in=REFRESH_TOKEN_TTL_S,
    )


def _device_mismatch(
    *, user_id: str, expected: str, presented: str, resource: str, source_ip: str, correlation_id: str
) -> DomainEvent:
    # The same data shape as the authorizer's device.mismatch events, so the fraud engine reads one kind.
    return DomainEvent(
        type=DEVICE_MISMATCH,
        source=EVENT_SOURCE,
        subject=user_id,
        actor=None,
        correlation_id=correlation_id,
        data={
            "user_id": user_id,
            "token_device_id": expected,
            "presented_device_id": presented,
            "method": "POST",
            "resource": resource,
            "source_ip": source_ip,
        },
    )


def _email_taken() -> Conflict:
    return Conflict("This email address is already registered.", code="email_taken")


def _user_disabled() -> Forbidden:
    return Forbidden("This account is disabled; contact the bank.", code="user_disabled")


def _invalid_challenge() -> Unauthorized:
    return Unauthorized("The login challenge is not valid; sign in again.", code="invalid_challenge")


def _invalid_code() -> Unauthorized:
    return Unauthorized("The code is not valid.", code="invalid_code")


def _invalid_refresh_token() -> Unauthorized:
    return Unauthorized("The refresh token is not valid; sign in again.", code="invalid_refresh_token")


def _device_mismatch_error() -> Unauthorized:
    return Unauthorized(
        "The X-Device-Id header does not match the device this was issued to.", code="device_mismatch"
    )

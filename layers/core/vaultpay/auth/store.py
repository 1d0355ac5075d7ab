"""The auth table through PynamoDB: users, email claims, challenges, token families, devices, outbox.

PynamoDB fits here (docs/persistence.md): single items read and written whole, one simple query, and
transactions whose conditions read well as model expressions. The retries, the AWS error codes and the
cursor codec are vaultpay.shared.dynamo's, as every other store's.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar, cast

from pynamodb.attributes import Attribute, BooleanAttribute, UnicodeAttribute
from pynamodb.connection import Connection, TableConnection
from pynamodb.constants import NUMBER
from pynamodb.exceptions import DoesNotExist, PynamoDBException, TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

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
    MAX_WRONG_CODES,
    Challenge,
    Device,
    RefreshFamily,
    RefreshToken,
    Role,
    TokenStatus,
    User,
    UserStatus,
    device_key,
)
from vaultpay.auth.ports import DevicePage, LoginCompletion
from vaultpay.shared import dynamo as ddb
from vaultpay.shared.errors import ConcurrentModification, ConfigurationError, VaultPayError
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.kernel import rfc3339
from vaultpay.shared.outbox_model import OutboxItem, outbox_item, outbox_model

# A request waits on these: fail over to the client's retry rather than hold the Lambda for half a minute
# (PynamoDB's defaults are 15 s to connect and 30 s to read).
CONNECT_TIMEOUT_S = 2
READ_TIMEOUT_S = 3
MAX_RETRY_ATTEMPTS = 3
# Transactions that lose to a concurrent transaction on the same items are retried with full jitter.
TRANSACTION_BACKOFF = ddb.Backoff(attempts=4, base_s=0.025)
_DEVICE_SK = re.compile(r"DEVICE#[0-9a-f]{64}")

_M = TypeVar("_M", bound=Model)


class IntegerAttribute(Attribute[int]):
    """A DynamoDB number that is always a Python int (NumberAttribute decodes JSON: floats creep in)."""

    attr_type = NUMBER

    def serialize(self, value: Any) -> str:
        return ddb.number_text(value, self.attr_name)

    def deserialize(self, value: str) -> int:
        return ddb.exact_int(value, self.attr_name)


class _Item(Model):
    class Meta:
        abstract = True

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class UserItem(_Item):
    """`USER#<user_id>` / `PROFILE`."""

    class Meta:
        abstract = True

    role = UnicodeAttribute()
    email_index = UnicodeAttribute()
    email_enc = UnicodeAttribute()
    full_name_enc = UnicodeAttribute()
    phone_index = UnicodeAttribute()
    phone_enc = UnicodeAttribute()
    password_hash = UnicodeAttribute()
    totp_secret_enc = UnicodeAttribute()
    last_totp_step = IntegerAttribute(null=True)
    created_at = UnicodeAttribute()
    status = UnicodeAttribute(null=True)  # absent: ACTIVE (users created before statuses existed)
    sessions_ended_at = IntegerAttribute(null=True)


class EmailItem(_Item):
    """`EMAIL#<blind index>` / `EMAIL`: the claim that makes an email unique."""

    class Meta:
        abstract = True

    user_id = UnicodeAttribute()
    created_at = UnicodeAttribute()


class ChallengeItem(_Item):
    """`CHALLENGE#<id>` / `CHALLENGE`."""

    class Meta:
        abstract = True

    user_id = UnicodeAttribute()
    device_id = UnicodeAttribute()
    attempts = IntegerAttribute(default=0)
    used = BooleanAttribute(default=False)
    used_at = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    expires_at = IntegerAttribute()  # the table's TTL attribute


class FamilyItem(_Item):
    """`FAMILY#<id>` / `FAMILY`."""

    class Meta:
        abstract = True

    user_id = UnicodeAttribute()
    device_id = UnicodeAttribute()
    revoked = BooleanAttribute(default=False)
    revoked_at = UnicodeAttribute(null=True)
    revoked_reason = UnicodeAttribute(null=True)
    rotated_at = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    expires_at = IntegerAttribute()


class TokenItem(_Item):
    """`REFRESH#<sha256 of the token>` / `TOKEN`."""

    class Meta:
        abstract = True

    family_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    device_id = UnicodeAttribute()
    status = UnicodeAttribute()
    retired_at = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    expires_at = IntegerAttribute()


class DeviceItem(_Item):
    """`USER#<user_id>` / `DEVICE#<sha256 of the device id>`."""

    class Meta:
        abstract = True

    device_id = UnicodeAttribute()
    first_seen_at = UnicodeAttribute()
    last_seen_at = UnicodeAttribute()
    trusted = BooleanAttribute(default=False)


@dataclass(frozen=True, slots=True)
class _Models:
    """The item classes bound to one table, sharing one connection."""

    user: type[UserItem]
    email: type[EmailItem]
    challenge: type[ChallengeItem]
    family: type[FamilyItem]
    token: type[TokenItem]
    device: type[DeviceItem]
    outbox: type[OutboxItem]
    connection: Connection


@functools.cache
def _models(table_name: str) -> _Models:
    """The item classes bound to `table_name` (at first use, never at import)."""
    meta = type(
        "Meta",
        (),
        {
            "table_name": table_name,
            "connect_timeout_seconds": CONNECT_TIMEOUT_S,
            "read_timeout_seconds": READ_TIMEOUT_S,
            "max_retry_attempts": MAX_RETRY_ATTEMPTS,
        },
    )

    def bind(base: type[_M]) -> type[_M]:
        return cast(type[_M], type(f"{base.__name__}_{abs(hash(table_name))}", (base,), {"Meta": meta}))

    user = bind(UserItem)
    # PynamoDB gives every model class a connection (a botocore session and client) of its own, ~50 ms
    # each on a cold start. Every class here is the same table with the same keys, so they share one.
    # `_connection` is PynamoDB's own cache slot; the component tests exercise this against pynamodb 6.1.
    shared: TableConnection = user._get_connection()
    models = _Models(
        user=user,
        email=bind(EmailItem),
        challenge=bind(ChallengeItem),
        family=bind(FamilyItem),
        token=bind(TokenItem),
        device=bind(DeviceItem),
        outbox=outbox_model(table_name),
        connection=shared.connection,
    )
    for cls in (models.email, models.challenge, models.family, models.token, models.device, models.outbox):
        cls._connection = shared
    return models


class _ConditionsFailed(Exception):
    """Which named items of a transaction failed their conditions."""

    def __init__(self, names: frozenset[str]) -> None:
        super().__init__("transaction conditions failed: " + ", ".join(sorted(names)))
        self.names = names


class _Transaction:
    """A TransactWrite whose items have names, so that cancellation reasons can be read by name.

    PynamoDB sends condition checks, then deletes, then puts, then updates, whatever the order of the
    calls, and DynamoDB's reasons follow the request's order: the names are kept in that same order.
    """

    def __init__(self, write: TransactWrite) -> None:
        self._write = write
        self._puts: list[str] = []
        self._updates: list[str] = []

    def put(self, name: str, item: Model, condition: Condition | None = None) -> None:
        self._write.save(item, condition=condition)
        self._puts.append(name)

    def update(
        self, name: str, item: Model, actions: Sequence[Action], condition: Condition | None = None
    ) -> None:
        self._write.update(item, actions=list(actions), condition=condition)
        self._updates.append(name)

    @property
    def names(self) -> list[str]:
        return [*self._puts, *self._updates]


class DynamoAuthStore:
    """The AuthStore port on the auth table (docs/identity-contract.md "AuthTable items")."""

    def __init__(self, table_name: str, *, sleep: Callable[[float], None] = time.sleep) -> None:
        if not table_name:
            raise ConfigurationError("the auth table name is not configured")
        self._table_name = table_name
        self._backoff = replace(TRANSACTION_BACKOFF, sleep=sleep)

    @property
    def _m(self) -> _Models:
        return _models(self._table_name)

    def dynamodb_client(self) -> Any:
        """The botocore DynamoDB client the store uses, for other adapters to share (one per process)."""
        return self._m.connection.client

    # ---- users ----------------------------------------------------------------------------------------

    def email_registered(self, email_index: str) -> bool:
        return self._get(self._m.email, f"EMAIL#{email_index}", "EMAIL") is not None

    def create_user(self, user: User, event: DomainEvent) -> None:
        m = self._m
        claim = m.email(
            pk=f"EMAIL#{user.email_index}", sk="EMAIL", user_id=user.user_id, created_at=user.created_at
        )
        profile = m.user(pk=f"USER#{user.user_id}", sk="PROFILE", **_user_attributes(user))

        def build(tx: _Transaction) -> None:
            tx.put("email", claim, m.email.pk.does_not_exist())
            tx.put("profile", profile, m.user.pk.does_not_exist())
            tx.put("event", outbox_item(self._table_name, event), m.outbox.pk.does_not_exist())

        try:
            self._transact(build)
        except _ConditionsFailed as failed:
            if "email" in failed.names:
                raise EmailAlreadyRegistered("the email index is already claimed") from None
            raise ConcurrentModification(str(failed)) from None

    def find_user_by_email(self, email_index: str) -> User | None:
        claim = self._get(self._m.email, f"EMAIL#{email_index}", "EMAIL")
        if claim is None:
            # A read of a key that never exists, so that an unknown email costs the same two reads as a
            # known one: the login path's timing must not say whether an account exists.
            self._get(self._m.user, f"USER#none-{email_index}", "PROFILE")
            return None
        return self.get_user(claim.user_id)

    def get_user(self, user_id: str) -> User | None:
        # Strongly consistent: the TOTP step read here must be the latest (the write is conditional anyway).
        item = self._get(self._m.user, f"USER#{user_id}", "PROFILE", consistent=True)
        return _user(item) if item is not None else None

    def set_user_status(
        self, user_id: str, status: UserStatus, *, sessions_ended_at: int | None, event: DomainEvent
    ) -> None:
        """The user's status (and, when given, the end of their sessions so far) and its event, in one
        transaction; UserNotFound when there is no such user."""
        m = self._m
        profile = m.user(pk=f"USER#{user_id}", sk="PROFILE")
        actions = [m.user.status.set(status.value)]
        if sessions_ended_at is not None:
            actions.append(m.user.sessions_ended_at.set(sessions_ended_at))

        def build(tx: _Transaction) -> None:
            tx.put("event", outbox_item(self._table_name, event), m.outbox.pk.does_not_exist())
            tx.update("profile", profile, actions, m.user.pk.exists())

        try:
            self._transact(build)
        except _ConditionsFailed as failed:
            if "profile" in failed.names:
                raise UserNotFound(f"no user {user_id}") from None
            raise ConcurrentModification(str(failed)) from None

    def update_password_hash(self, user_id: str, password_hash: str) -> None:
        m = self._m
        item = m.user(pk=f"USER#{user_id}", sk="PROFILE")
        with _translated():
            item.update(actions=[m.user.password_hash.set(password_hash)], condition=m.user.pk.exists())

    # ---- login challenges -----------------------------------------------------------------------------

    def add_challenge(self, challenge: Challenge) -> None:
        m = self._m
        item = m.challenge(
            pk=f"CHALLENGE#{challenge.challenge_id}",
            sk="CHALLENGE",
            user_id=challenge.user_id,
            device_id=challenge.device_id,
            attempts=challenge.attempts,
            used=challenge.used,
            created_at=challenge.created_at,
            expires_at=challenge.expires_at,
        )
        with _translated():
            item.save(condition=m.challenge.pk.does_not_exist())

    def get_challenge(self, challenge_id: str) -> Challenge | None:
        item = self._get(self._m.challenge, f"CHALLENGE#{challenge_id}", "CHALLENGE", consistent=True)
        if item is None:
            return None
        return Challenge(
            challenge_id=challenge_id,
            user_id=item.user_id,
            device_id=item.device_id,
            created_at=item.created_at,
            expires_at=item.expires_at,
            attempts=item.attempts,
            used=item.used,
        )

    def record_wrong_code(self, challenge_id: str, event: DomainEvent) -> None:
        m = self._m
        item = m.challenge(pk=f"CHALLENGE#{challenge_id}", sk="CHALLENGE")

        def build(tx: _Transaction) -> None:
            tx.put("event", outbox_item(self._table_name, event), m.outbox.pk.does_not_exist())
            # ADD is atomic: concurrent wrong codes each count, and no read-modify-write can lose one.
            tx.update("challenge", item, [m.challenge.attempts.add(1)], m.challenge.pk.exists())

        try:
            self._transact(build)
        except _ConditionsFailed:
            # The challenge vanished (TTL) after it was read: nothing to count, but the event still stands.
            self.record_event(event)

    # ---- devices --------------------------------------------------------------------------------------

    def get_device(self, user_id: str, device_id: str) -> Device | None:
        item = self._get(
            self._m.device, f"USER#{user_id}", f"DEVICE#{device_key(device_id)}", consistent=True
        )
        return _device(user_id, item) if item is not None else None

    def list_devices(self, user_id: str, *, limit: int, cursor: str | None) -> DevicePage:
        m = self._m
        pk = f"USER#{user_id}"
        start = {"pk": {"S": pk}, "sk": {"S": _cursor_sk(cursor)}} if cursor else None
        with _translated():
            results = m.device.query(
                pk,
                m.device.sk.startswith("DEVICE#"),
                limit=limit,
                page_size=limit,
                last_evaluated_key=start,
            )
            items = [_device(user_id, item) for item in results]
            last = results.last_evaluated_key
        next_cursor = ddb.encode_position("sk", last["sk"]["S"]) if last and len(items) == limit else None
        return DevicePage(items=items, next_cursor=next_cursor)

    # ---- completing a login ---------------------------------------------------------------------------

    def complete_login(self, completion: LoginCompletion) -> None:
        m = self._m
        c = completion
        now_s = math.floor(c.now)
        at = rfc3339(c.now)
        challenge = m.challenge(pk=f"CHALLENGE#{c.challenge.challenge_id}", sk="CHALLENGE")
        profile = m.user(pk=f"USER#{c.user_id}", sk="PROFILE")
        device_sk = f"DEVICE#{device_key(c.device.device_id)}"

        def build(tx: _Transaction) -> None:
            # Each condition re-checks, at commit, what was decided on a read: a challenge consumed, a
            # code accepted or a device recorded by a concurrent request cancels the whole transaction.
            tx.update(
                "challenge",
                challenge,
                [m.challenge.used.set(True), m.challenge.used_at.set(at)],
                (m.challenge.used == False)  # noqa: E712 - a PynamoDB condition, not a Python comparison
                & (m.challenge.attempts < MAX_WRONG_CODES)
                & (m.challenge.expires_at > now_s)
                & (m.challenge.device_id == c.device.device_id)
                & (m.challenge.user_id == c.user_id),
            )
            tx.update(
                "totp",
                profile,
                [m.user.last_totp_step.set(c.totp_step)],
                m.user.pk.exists()
                & (m.user.last_totp_step.does_not_exist() | (m.user.last_totp_step < c.totp_step)),
            )
            device_item = m.device(pk=f"USER#{c.user_id}", sk=device_sk)
            if c.device_is_new:
                device_item.device_id = c.device.device_id
                device_item.first_seen_at = c.device.first_seen_at
                device_item.last_seen_at = c.device.last_seen_at
                device_item.trusted = c.device.trusted
                tx.put("device", device_item, m.device.pk.does_not_exist())
            else:
                tx.update(
                    "device",
                    device_item,
                    [m.device.last_seen_at.set(c.device.last_seen_at)],
                    m.device.pk.exists(),
                )
            tx.put("family", _family_item(m, c.family), m.family.pk.does_not_exist())
            tx.put("token", _token_item(m, c.token), m.token.pk.does_not_exist())
            tx.put("event", outbox_item(self._table_name, c.event), m.outbox.pk.does_not_exist())

        try:
            self._transact(build)
        except _ConditionsFailed as failed:
            if "totp" in failed.names:
                raise TotpStepAlreadyUsed("the TOTP step was accepted by another verification") from None
            if "challenge" in failed.names:
                raise ChallengeNotOpen("the challenge is no longer open") from None
            if "device" in failed.names:
                raise DeviceRecordChanged("the device record changed meanwhile") from None
            raise ConcurrentModification(str(failed)) from None

    # ---- refresh tokens -------------------------------------------------------------------------------

    def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        item = self._get(self._m.token, f"REFRESH#{token_hash}", "TOKEN", consistent=True)
        if item is None:
            return None
        return RefreshToken(
            token_hash=token_hash,
            family_id=item.family_id,
            user_id=item.user_id,
            device_id=item.device_id,
            created_at=item.created_at,
            expires_at=item.expires_at,
            status=TokenStatus(item.status),
        )

    def get_family(self, family_id: str) -> RefreshFamily | None:
        item = self._get(self._m.family, f"FAMILY#{family_id}", "FAMILY", consistent=True)
        if item is None:
            return None
        return RefreshFamily(
            family_id=family_id,
            user_id=item.user_id,
            device_id=item.device_id,
            created_at=item.created_at,
            expires_at=item.expires_at,
            revoked=item.revoked,
        )

    def rotate_refresh_token(self, old: RefreshToken, new: RefreshToken, *, now: float) -> None:
        m = self._m
        at = rfc3339(now)
        old_item = m.token(pk=f"REFRESH#{old.token_hash}", sk="TOKEN")
        family = m.family(pk=f"FAMILY#{old.family_id}", sk="FAMILY")

        def build(tx: _Transaction) -> None:
            tx.put("new", _token_item(m, new), m.token.pk.does_not_exist())
            # Only one rotation of a token can see it active: the loser of a race fails here.
            tx.update(
                "old",
                old_item,
                [m.token.status.set(TokenStatus.RETIRED.value), m.token.retired_at.set(at)],
                (m.token.status == TokenStatus.ACTIVE.value) & (m.token.expires_at > math.floor(now)),
            )
            # The family lives as long as its newest token, so that reuse of any of them is recognised.
            tx.update(
                "family",
                family,
                [m.family.expires_at.set(new.expires_at), m.family.rotated_at.set(at)],
                m.family.pk.exists() & (m.family.revoked == False),  # noqa: E712 - a PynamoDB condition
            )

        try:
            self._transact(build)
        except _ConditionsFailed as failed:
            if "old" in failed.names:
                raise RefreshTokenNotActive("the refresh token is no longer active") from None
            if "family" in failed.names:
                raise FamilyRevoked("the token family is revoked") from None
            raise ConcurrentModification(str(failed)) from None

    def revoke_family(self, family_id: str, *, reason: str, now: float, event: DomainEvent | None) -> None:
        m = self._m
        at = rfc3339(now)
        family = m.family(pk=f"FAMILY#{family_id}", sk="FAMILY")
        # The first revocation's time and reason stay: a later logout does not rewrite why it ended.
        actions = [
            m.family.revoked.set(True),
            m.family.revoked_at.set(m.family.revoked_at | at),
            m.family.revoked_reason.set(m.family.revoked_reason | reason),
        ]

        def build(tx: _Transaction) -> None:
            if event is not None:
                tx.put("event", outbox_item(self._table_name, event), m.outbox.pk.does_not_exist())
            tx.update("family", family, actions, m.family.pk.exists())

        try:
            self._transact(build)
        except _ConditionsFailed:
            # The family is gone (TTL): there is nothing left to revoke, but a theft signal still counts.
            if event is not None:
                self.record_event(event)

    def record_event(self, event: DomainEvent) -> None:
        with _translated():
            outbox_item(self._table_name, event).save(condition=self._m.outbox.pk.does_not_exist())

    # ---- plumbing -------------------------------------------------------------------------------------

    def _get(self, model: type[_M], pk: str, sk: str, *, consistent: bool = False) -> _M | None:
        with _translated():
            try:
                return model.get(pk, sk, consistent_read=consistent)
            except DoesNotExist:
                return None

    def _transact(self, build: Callable[[_Transaction], None]) -> None:
        """Commits the transaction `build` makes; retried with jitter when it loses to a concurrent one.

        A failed condition is never retried: it is an answer, raised as _ConditionsFailed by item name.
        """
        names: list[str] = []

        def attempt_once() -> ddb.Cancellation | None:
            try:
                # PynamoDB commits when the block ends without an exception.
                with TransactWrite(connection=self._m.connection) as write:
                    tx = _Transaction(write)
                    build(tx)
            except TransactWriteError as exc:
                names[:] = tx.names
                reasons = tuple(
                    None if reason is None or reason.code in (None, "None") else reason.code
                    for reason in exc.cancellation_reasons
                )
                return ddb.Cancellation(exc.cause_response_code, reasons, exc)
            return None

        failed = ddb.commit_with_retry(attempt_once, backoff=self._backoff, error=_cancelled)
        if failed:
            raise _ConditionsFailed(frozenset(names[i] for i in failed if i < len(names)))


def _cancelled(cancellation: ddb.Cancellation) -> VaultPayError:
    return ddb.translate(cancellation.code, "TransactWriteItems", "the auth table", cause=cancellation.cause)


@contextmanager
def _translated() -> Iterator[None]:
    """Vendor errors out, VaultPay errors in (the message keeps the AWS code, never item contents)."""
    try:
        yield
    except DoesNotExist:
        raise
    except PynamoDBException as exc:
        raise _error_of(exc) from exc


def _error_of(exc: PynamoDBException) -> VaultPayError:
    return ddb.translate(exc.cause_response_code, "a call", "the auth table", cause=exc)


def _user_attributes(user: User) -> dict[str, Any]:
    return {
        "role": user.role.value,
        "email_index": user.email_index,
        "email_enc": user.email_enc,
        "full_name_enc": user.full_name_enc,
        "phone_index": user.phone_index,
        "phone_enc": user.phone_enc,
        "password_hash": user.password_hash,
        "totp_secret_enc": user.totp_secret_enc,
        "last_totp_step": user.last_totp_step,
        "created_at": user.created_at,
        "status": user.status.value,
        "sessions_ended_at": user.sessions_ended_at,
    }


def _user(item: UserItem) -> User:
    return User(
        user_id=item.pk.removeprefix("USER#"),
        role=Role(item.role),
        email_index=item.email_index,
        email_enc=item.email_enc,
        full_name_enc=item.full_name_enc,
        phone_index=item.phone_index,
        phone_enc=item.phone_enc,
        password_hash=item.password_hash,
        totp_secret_enc=item.totp_secret_enc,
        created_at=item.created_at,
        last_totp_step=item.last_totp_step,
        status=UserStatus(item.status or UserStatus.ACTIVE.value),
        sessions_ended_at=item.sessions_ended_at,
    )


def _device(user_id: str, item: DeviceItem) -> Device:
    return Device(
        user_id=user_id,
        device_id=item.device_id,
        first_seen_at=item.first_seen_at,
        last_seen_at=item.last_seen_at,
        trusted=item.trusted,
    )


def _family_item(m: _Models, family: RefreshFamily) -> FamilyItem:
    return m.family(
        pk=f"FAMILY#{family.family_id}",
        sk="FAMILY",
        user_id=family.user_id,
        device_id=family.device_id,
        revoked=family.revoked,
        created_at=family.created_at,
        expires_at=family.expires_at,
    )


def _token_item(m: _Models, token: RefreshToken) -> TokenItem:
    return m.token(
        pk=f"REFRESH#{token.token_hash}",
        sk="TOKEN",
        family_id=token.family_id,
        user_id=token.user_id,
        device_id=token.device_id,
        status=token.status.value,
        created_at=token.created_at,
        expires_at=token.expires_at,
    )


def _cursor_sk(cursor: str) -> str:
    """The sort key a cursor resumes after; only ever a device key under the caller's own partition."""
    sk = ddb.decode_position(cursor, "sk")
    if not _DEVICE_SK.fullmatch(sk):
        raise ddb.InvalidCursor()
    return sk

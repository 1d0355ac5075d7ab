"""The auth table's store against moto's DynamoDB: items, conditions, transactions, pagination, numbers."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from vaultpay.auth.errors import (
    ChallengeNotOpen,
    DeviceRecordChanged,
    EmailAlreadyRegistered,
    FamilyRevoked,
    RefreshTokenNotActive,
    TotpStepAlreadyUsed,
)
from vaultpay.auth.model import (
    LOGIN_SUCCEEDED,
    Challenge,
    Device,
    RefreshFamily,
    RefreshToken,
    Role,
    TokenStatus,
    User,
)
from vaultpay.auth.ports import LoginCompletion
from vaultpay.auth.store import DynamoAuthStore, IntegerAttribute
from vaultpay.shared.errors import ConcurrentModification, ValidationFailed
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.kernel import rfc3339

pytestmark = pytest.mark.component

NOW = 1_795_860_900.0
DEVICE = "device-4f1c2a"
TABLE = "vaultpay-test-auth"


def _user(user_id: str = "usr_1", email_index: str = "e" * 64, step: int | None = None) -> User:
    return User(
        user_id=user_id,
        role=Role.CUSTOMER,
        email_index=email_index,
        email_enc="blob-email",
        full_name_enc="blob-name",
        phone_index="p" * 64,
        phone_enc="blob-phone",
        password_hash="$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGg",
        totp_secret_enc="blob-totp",
        created_at=rfc3339(NOW),
        last_totp_step=step,
    )


def _event(type_: str = "vaultpay.auth.user.created", subject: str = "usr_1") -> DomainEvent:
    return DomainEvent(
        type=type_, source="/vaultpay/auth", subject=subject, data={"user_id": subject}, correlation_id="c-1"
    )


def _items(cloud: Any, prefix: str = "") -> list[dict[str, Any]]:
    items = cloud.dynamodb.scan(TableName=TABLE, ConsistentRead=True)["Items"]
    return [item for item in items if item["pk"]["S"].startswith(prefix)]


def _completion(
    user_id: str, challenge: Challenge, *, step: int, device_is_new: bool = True
) -> LoginCompletion:
    family = RefreshFamily.open(user_id=user_id, device_id=DEVICE, now=NOW)
    return LoginCompletion(
        challenge=challenge,
        user_id=user_id,
        totp_step=step,
        device=Device.first_seen(user_id=user_id, device_id=DEVICE, now=NOW),
        device_is_new=device_is_new,
        family=family,
        token=RefreshToken.issue(token_hash="a" * 64, family=family, now=NOW),
        event=_event(LOGIN_SUCCEEDED, user_id),
        now=NOW,
    )


@pytest.fixture
def store(cloud: Any) -> DynamoAuthStore:
    return DynamoAuthStore(TABLE)


def test_a_created_user_is_found_by_email_index_with_integer_numbers(
    store: DynamoAuthStore, cloud: Any
) -> None:
    # Given a user created with its email claim and event
    store.create_user(_user(step=58_000_000), _event())
    # When it is looked up by its email's blind index
    found = store.find_user_by_email("e" * 64)
    # Then the profile comes back whole, numbers as ints (never floats)
    assert found == _user(step=58_000_000)
    assert found is not None and type(found.last_totp_step) is int
    assert store.email_registered("e" * 64) and not store.email_registered("f" * 64)
    assert store.find_user_by_email("f" * 64) is None
    # And the three items are exactly: the profile, the claim, and an outbox event for the relay
    assert sorted(item["pk"]["S"].split("#")[0] for item in _items(cloud)) == ["EMAIL", "OUTBOX", "USER"]
    [outbox] = _items(cloud, "OUTBOX#")
    assert outbox["kind"]["S"] == "outbox" and json.loads(outbox["data"]["S"]) == {"user_id": "usr_1"}


def test_a_claimed_email_refuses_a_second_user_and_writes_nothing(store: DynamoAuthStore, cloud: Any) -> None:
    store.create_user(_user(), _event())
    with pytest.raises(EmailAlreadyRegistered):
        store.create_user(_user(user_id="usr_2"), _event(subject="usr_2"))
    assert store.get_user("usr_2") is None
    assert len(_items(cloud, "OUTBOX#")) == 1


def test_wrong_codes_are_counted_atomically_with_their_event(store: DynamoAuthStore, cloud: Any) -> None:
    challenge = Challenge.open(user_id="usr_1", device_id=DEVICE, now=NOW)
    store.add_challenge(challenge)
    for _ in range(3):
        store.record_wrong_code(challenge.challenge_id, _event("vaultpay.auth.login.failed"))
    stored = store.get_challenge(challenge.challenge_id)
    assert stored is not None and stored.attempts == 3 and type(stored.attempts) is int
    assert stored == replace(challenge, attempts=3)
    assert len(_items(cloud, "OUTBOX#")) == 3


def test_a_wrong_code_on_a_vanished_challenge_still_records_its_event(
    store: DynamoAuthStore, cloud: Any
) -> None:
    store.record_wrong_code("chl_gone", _event("vaultpay.auth.login.failed"))
    assert _items(cloud, "CHALLENGE#") == []
    assert len(_items(cloud, "OUTBOX#")) == 1


def test_completing_a_login_writes_everything_in_one_transaction(store: DynamoAuthStore, cloud: Any) -> None:
    # Given a user and an open challenge
    store.create_user(_user(), _event())
    challenge = Challenge.open(user_id="usr_1", device_id=DEVICE, now=NOW)
    store.add_challenge(challenge)
    # When the login completes at TOTP step 100
    store.complete_login(_completion("usr_1", challenge, step=100))
    # Then the challenge is used, the step recorded, and device, family, token and event exist
    assert store.get_challenge(challenge.challenge_id).used  # type: ignore[union-attr]
    assert store.get_user("usr_1").last_totp_step == 100  # type: ignore[union-attr]
    assert store.get_device("usr_1", DEVICE) == Device.first_seen(user_id="usr_1", device_id=DEVICE, now=NOW)
    token = store.get_refresh_token("a" * 64)
    assert token is not None and token.status is TokenStatus.ACTIVE and type(token.expires_at) is int
    assert store.get_family(token.family_id) is not None
    assert len(_items(cloud, "OUTBOX#")) == 2


def test_a_used_totp_step_cancels_the_whole_login(store: DynamoAuthStore, cloud: Any) -> None:
    # Given step 100 was already accepted for the user
    store.create_user(_user(step=100), _event())
    challenge = Challenge.open(user_id="usr_1", device_id=DEVICE, now=NOW)
    store.add_challenge(challenge)
    # When a login tries to complete with step 100 again
    with pytest.raises(TotpStepAlreadyUsed):
        store.complete_login(_completion("usr_1", challenge, step=100))
    # Then nothing of it was written: the challenge is still open, no family, no token, no event
    assert not store.get_challenge(challenge.challenge_id).used  # type: ignore[union-attr]
    assert _items(cloud, "FAMILY#") == [] and _items(cloud, "REFRESH#") == []
    assert len(_items(cloud, "OUTBOX#")) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"used": True},
        {"attempts": 5},
        {"device_id": "another-device"},
        {"expires_at": int(NOW)},
    ],
)
def test_a_challenge_that_is_not_open_at_commit_cancels_the_login(
    store: DynamoAuthStore, cloud: Any, change: dict[str, Any]
) -> None:
    store.create_user(_user(), _event())
    challenge = Challenge.open(user_id="usr_1", device_id=DEVICE, now=NOW)
    store.add_challenge(replace(challenge, **change))
    with pytest.raises(ChallengeNotOpen):
        store.complete_login(_completion("usr_1", challenge, step=100))
    assert _items(cloud, "REFRESH#") == []
    assert store.get_user("usr_1").last_totp_step is None  # type: ignore[union-attr]


def test_a_device_recorded_meanwhile_cancels_the_login_for_a_retry(store: DynamoAuthStore) -> None:
    store.create_user(_user(), _event())
    challenge = Challenge.open(user_id="usr_1", device_id=DEVICE, now=NOW)
    store.add_challenge(challenge)
    first = Challenge.open(user_id="usr_1", device_id=DEVICE, now=NOW)
    store.add_challenge(first)
    store.complete_login(
        replace(
            _completion("usr_1", first, step=99),
            token=RefreshToken.issue(
                token_hash="b" * 64,
                family=RefreshFamily.open(user_id="usr_1", device_id=DEVICE, now=NOW),
                now=NOW,
            ),
        )
    )
    with pytest.raises(DeviceRecordChanged):
        store.complete_login(_completion("usr_1", challenge, step=100, device_is_new=True))
    # Read again, the device is known: the same login now completes
    store.complete_login(_completion("usr_1", challenge, step=100, device_is_new=False))
    assert store.get_user("usr_1").last_totp_step == 100  # type: ignore[union-attr]


def _signed_in(store: DynamoAuthStore) -> RefreshToken:
    store.create_user(_user(), _event())
    challenge = Challenge.open(user_id="usr_1", device_id=DEVICE, now=NOW)
    store.add_challenge(challenge)
    store.complete_login(_completion("usr_1", challenge, step=100))
    token = store.get_refresh_token("a" * 64)
    assert token is not None
    return token


def test_a_token_rotates_once_and_the_family_follows_the_newest_token(store: DynamoAuthStore) -> None:
    old = _signed_in(store)
    family = store.get_family(old.family_id)
    assert family is not None
    new = RefreshToken.issue(token_hash="c" * 64, family=family, now=NOW + 3600)
    store.rotate_refresh_token(old, new, now=NOW + 3600)
    assert store.get_refresh_token("a" * 64).status is TokenStatus.RETIRED  # type: ignore[union-attr]
    assert store.get_refresh_token("c" * 64) == new
    assert store.get_family(old.family_id).expires_at == new.expires_at  # type: ignore[union-attr]
    # The same old token cannot rotate a second time: that is how a racing refresh is caught
    with pytest.raises(RefreshTokenNotActive):
        store.rotate_refresh_token(old, replace(new, token_hash="d" * 64), now=NOW + 3601)
    assert store.get_refresh_token("d" * 64) is None


def test_a_revoked_family_refuses_rotation(store: DynamoAuthStore) -> None:
    old = _signed_in(store)
    store.revoke_family(old.family_id, reason="logout", now=NOW, event=None)
    family = store.get_family(old.family_id)
    assert family is not None and family.revoked
    with pytest.raises(FamilyRevoked):
        store.rotate_refresh_token(
            old, RefreshToken.issue(token_hash="c" * 64, family=family, now=NOW), now=NOW
        )
    assert store.get_refresh_token("c" * 64) is None


def test_revocation_is_idempotent_and_keeps_the_first_reason(store: DynamoAuthStore, cloud: Any) -> None:
    old = _signed_in(store)
    store.revoke_family(
        old.family_id, reason="reuse", now=NOW, event=_event("vaultpay.auth.token.reuse_detected")
    )
    store.revoke_family(old.family_id, reason="logout", now=NOW + 60, event=None)
    [item] = _items(cloud, "FAMILY#")
    assert item["revoked"]["BOOL"] is True
    assert (item["revoked_reason"]["S"], item["revoked_at"]["S"]) == ("reuse", rfc3339(NOW))
    assert any(
        json.loads(i["data"]["S"]) and i["type"]["S"].endswith("reuse_detected")
        for i in _items(cloud, "OUTBOX#")
    )
    # A family that is gone has nothing to revoke; the theft event is still recorded
    store.revoke_family(
        "fam_gone", reason="reuse", now=NOW, event=_event("vaultpay.auth.token.reuse_detected")
    )
    assert _items(cloud, "FAMILY#fam_gone") == []
    assert sum(i["type"]["S"].endswith("reuse_detected") for i in _items(cloud, "OUTBOX#")) == 2


def test_devices_come_in_pages_that_never_leave_the_users_partition(store: DynamoAuthStore) -> None:
    store.create_user(_user(), _event())
    for n in range(5):
        challenge = Challenge.open(user_id="usr_1", device_id=f"device-{n}", now=NOW)
        store.add_challenge(challenge)
        family = RefreshFamily.open(user_id="usr_1", device_id=f"device-{n}", now=NOW)
        store.complete_login(
            LoginCompletion(
                challenge=challenge,
                user_id="usr_1",
                totp_step=100 + n,
                device=Device.first_seen(user_id="usr_1", device_id=f"device-{n}", now=NOW),
                device_is_new=True,
                family=family,
                token=RefreshToken.issue(token_hash=f"{n}" * 64, family=family, now=NOW),
                event=_event(LOGIN_SUCCEEDED),
                now=NOW,
            )
        )
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = store.list_devices("usr_1", limit=2, cursor=cursor)
        seen += [d.device_id for d in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == [f"device-{n}" for n in range(5)]
    assert store.list_devices("usr_2", limit=20, cursor=None).items == []


@pytest.mark.parametrize("cursor", ["!!", "eyJzayI6ICJQUk9GSUxFIn0", "eyJmb28iOiAxfQ"])
def test_a_forged_or_broken_cursor_is_refused(store: DynamoAuthStore, cursor: str) -> None:
    # The second is {"sk": "PROFILE"}: a cursor can only ever point at a device key.
    with pytest.raises(ValidationFailed) as caught:
        store.list_devices("usr_1", limit=2, cursor=cursor)
    assert caught.value.code == "invalid_cursor"


def test_a_transaction_that_loses_to_another_is_retried_then_reported(
    store: DynamoAuthStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pynamodb.exceptions import CancellationReason, TransactWriteError, VerboseClientError
    from pynamodb.transactions import TransactWrite

    conflicts = {"left": 2}
    real_commit = TransactWrite._commit

    def conflicting_commit(self: Any) -> Any:
        if conflicts["left"] > 0:
            conflicts["left"] -= 1
            error = {"Error": {"Code": "TransactionCanceledException", "Message": "conflict"}}
            cause = VerboseClientError(
                error,
                "TransactWriteItems",
                {},
                cancellation_reasons=[CancellationReason(code="TransactionConflict"), None, None],
            )
            raise TransactWriteError("Failed to write transaction items", cause)
        return real_commit(self)

    monkeypatch.setattr(TransactWrite, "_commit", conflicting_commit)
    sleeps: list[float] = []
    retrying = DynamoAuthStore(TABLE, sleep=sleeps.append)
    # Two conflicts, then success: the user exists, after two jittered, growing pauses
    retrying.create_user(_user(), _event())
    assert retrying.get_user("usr_1") is not None
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.025 and 0 <= sleeps[1] <= 0.05
    # Conflicting every time: reported as a concurrent modification, not retried forever
    conflicts["left"] = 100
    with pytest.raises(ConcurrentModification):
        retrying.create_user(_user(user_id="usr_2", email_index="f" * 64), _event())
    assert conflicts["left"] == 100 - 4


def test_every_bound_item_class_shares_one_connection(store: DynamoAuthStore) -> None:
    from vaultpay.auth.store import _models

    store.create_user(_user(), _event())
    models = _models(TABLE)
    connections = {
        id(cls._get_connection())
        for cls in (
            models.user,
            models.email,
            models.challenge,
            models.family,
            models.token,
            models.device,
            models.outbox,
        )
    }
    assert len(connections) == 1


@pytest.mark.parametrize(("raw", "value"), [("5", 5), ("5.0", 5), ("-3", -3), ("1795861200", 1795861200)])
def test_integer_attributes_read_back_as_ints(raw: str, value: int) -> None:
    read = IntegerAttribute().deserialize(raw)
    assert read == value and type(read) is int


@pytest.mark.parametrize("bad", ["5.5", "1e-3", "abc"])
def test_integer_attributes_refuse_fractions(bad: str) -> None:
    with pytest.raises(ValueError, match="not"):
        IntegerAttribute().deserialize(bad)


@pytest.mark.parametrize("bad", [5.0, True, "5"])
def test_integer_attributes_refuse_to_write_anything_but_an_int(bad: object) -> None:
    with pytest.raises(TypeError):
        IntegerAttribute().serialize(bad)

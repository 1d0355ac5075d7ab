"""The authorizer's view of ended sessions: one consistent read per check interval, ended ones remembered."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from vaultpay.auth.adapters import DynamoDBSessionRevocations
from vaultpay.shared.errors import ConfigurationError, TransientError

pytestmark = pytest.mark.unit
USER = "usr_" + "a" * 32


class FakeDynamoDB:
    """BatchGetItem over profile and family items, as DynamoDB answers it (missing items are left out)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {f"USER#{USER}": {"pk": {"S": f"USER#{USER}"}}}
        self.reads: list[dict[str, Any]] = []
        self.error: Exception | None = None

    def family(self, family_id: str, *, revoked: bool) -> None:
        self.items[f"FAMILY#{family_id}"] = {"pk": {"S": f"FAMILY#{family_id}"}, "revoked": {"BOOL": revoked}}

    def batch_get_item(self, *, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.reads.append(RequestItems)
        if self.error:
            raise self.error
        [(table, request)] = RequestItems.items()
        found = [self.items[k["pk"]["S"]] for k in request["Keys"] if k["pk"]["S"] in self.items]
        return {"Responses": {table: found}, "UnprocessedKeys": {}}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    now = {"t": 1000.0}
    monkeypatch.setattr("vaultpay.auth.adapters.time.monotonic", lambda: now["t"])
    return now


def test_a_live_session_is_read_once_per_interval_and_an_end_is_seen_after_it(
    clock: dict[str, float],
) -> None:
    db = FakeDynamoDB()
    db.family("fam_1", revoked=False)
    sessions = DynamoDBSessionRevocations(db, "auth", ttl_s=30)

    def check() -> bool:
        return sessions.revoked(user_id=USER, session_id="fam_1", issued_at=900)

    assert [check() for _ in range(5)] == [False] * 5
    assert len(db.reads) == 1
    # The read names both items and only the attributes it needs, strongly consistent
    [request] = db.reads[0].values()
    assert [k["pk"]["S"] for k in request["Keys"]] == [f"USER#{USER}", "FAMILY#fam_1"]
    assert request["ConsistentRead"] is True
    assert set(request["ExpressionAttributeNames"].values()) == {"revoked", "status", "sessions_ended_at"}
    # When the session ends (logout), the authorizer sees it once its answer is older than the interval
    db.family("fam_1", revoked=True)
    clock["t"] += 29
    assert check() is False
    clock["t"] += 2
    assert check() is True
    # And an ended session is remembered: no more reads
    clock["t"] += 3600
    reads = len(db.reads)
    assert check() is True and len(db.reads) == reads


def test_a_disabled_user_ends_every_token_issued_until_then(clock: dict[str, float]) -> None:
    db = FakeDynamoDB()
    db.family("fam_1", revoked=False)
    db.items[f"USER#{USER}"].update({"status": {"S": "DISABLED"}, "sessions_ended_at": {"N": "950"}})
    assert DynamoDBSessionRevocations(db, "auth").revoked(user_id=USER, session_id="fam_1", issued_at=900)
    # Enabled again: tokens issued until the disable stay ended, later ones pass
    db.items[f"USER#{USER}"]["status"] = {"S": "ACTIVE"}
    sessions = DynamoDBSessionRevocations(db, "auth")
    assert sessions.revoked(user_id=USER, session_id="fam_1", issued_at=950) is True
    assert sessions.revoked(user_id=USER, session_id="fam_1", issued_at=951) is False


def test_a_session_or_user_that_is_not_there_has_ended(clock: dict[str, float]) -> None:
    db = FakeDynamoDB()
    assert DynamoDBSessionRevocations(db, "auth").revoked(user_id=USER, session_id="fam_gone", issued_at=1)
    db.family("fam_1", revoked=False)
    assert DynamoDBSessionRevocations(db, "auth").revoked(user_id="usr_gone", session_id="fam_1", issued_at=1)


def test_a_store_that_cannot_answer_fails_closed_as_an_error_never_as_live(clock: dict[str, float]) -> None:
    db = FakeDynamoDB()
    db.error = ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": ""}}, "Get"
    )
    with pytest.raises(TransientError):
        DynamoDBSessionRevocations(db, "auth").revoked(user_id=USER, session_id="fam_1", issued_at=1)
    db.error = ClientError({"Error": {"Code": "AccessDeniedException", "Message": ""}}, "Get")
    with pytest.raises(ConfigurationError):
        DynamoDBSessionRevocations(db, "auth").revoked(user_id=USER, session_id="fam_1", issued_at=1)

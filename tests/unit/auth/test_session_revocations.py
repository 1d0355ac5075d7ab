"""The authorizer's view of ended sessions: one consistent read per session per TTL, ended ones remembered."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from vaultpay.auth.authorizer_wiring import DynamoDBSessionRevocations
from vaultpay.shared.errors import ConfigurationError, TransientError

pytestmark = pytest.mark.unit


class FakeDynamoDB:
    def __init__(self) -> None:
        self.families: dict[str, bool] = {}
        self.reads: list[dict[str, Any]] = []
        self.error: Exception | None = None

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        self.reads.append(kwargs)
        if self.error:
            raise self.error
        family_id = kwargs["Key"]["pk"]["S"].removeprefix("FAMILY#")
        if family_id not in self.families:
            return {}
        return {"Item": {"revoked": {"BOOL": self.families[family_id]}}}


def test_a_live_session_is_read_once_per_ttl_and_an_end_is_seen_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = {"now": 1000.0}
    monkeypatch.setattr("vaultpay.auth.authorizer_wiring.time.monotonic", lambda: clock["now"])
    db = FakeDynamoDB()
    db.families["fam_1"] = False
    sessions = DynamoDBSessionRevocations(db, "auth", ttl_s=30)
    assert [sessions.revoked("fam_1") for _ in range(5)] == [False] * 5
    assert len(db.reads) == 1
    # The read asks for the one attribute, strongly consistent (the family was written with the login)
    read = db.reads[0]
    assert read["Key"] == {"pk": {"S": "FAMILY#fam_1"}, "sk": {"S": "FAMILY"}}
    assert read["ConsistentRead"] is True and read["ProjectionExpression"] == "#revoked"
    # When the session ends (logout), the authorizer sees it once its answer is older than the TTL
    db.families["fam_1"] = True
    clock["now"] += 29
    assert sessions.revoked("fam_1") is False
    clock["now"] += 2
    assert sessions.revoked("fam_1") is True
    # And an ended session is remembered: no more reads
    clock["now"] += 3600
    reads = len(db.reads)
    assert sessions.revoked("fam_1") is True and len(db.reads) == reads


def test_a_session_that_is_not_there_has_ended() -> None:
    assert DynamoDBSessionRevocations(FakeDynamoDB(), "auth").revoked("fam_gone") is True


def test_a_store_that_cannot_answer_fails_closed_as_an_error_never_as_live() -> None:
    db = FakeDynamoDB()
    db.error = ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": ""}}, "GetItem"
    )
    with pytest.raises(TransientError):
        DynamoDBSessionRevocations(db, "auth").revoked("fam_1")
    db.error = ClientError({"Error": {"Code": "AccessDeniedException", "Message": ""}}, "GetItem")
    with pytest.raises(ConfigurationError):
        DynamoDBSessionRevocations(db, "auth").revoked("fam_1")

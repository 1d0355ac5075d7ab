"""FraudTable: decisions, profiles (amount history, devices, payees), reviews, processed-event markers and
outbox items, on the low-level DynamoDB client (docs/transfers-contract.md).

Layout (every item has string keys `pk`, `sk` and a `kind`):

    DECISION#<transfer_id> / DECISION     the decision, its rule contributions; `alert_decision`/`alert_sk`
                                           (sparse, not on APPROVE) key the `Alerts` index, newest first
    PROFILE#<user_id> / PROFILE           amount history: history_count, history_total, history_total_squares
    PROFILE#<user_id> / DEVICE#<device>   a login device: first_seen_at, last_seen_at, trusted
    PROFILE#<user_id> / PAYEE#<account>   a destination the user has completed a transfer to
    REVIEW#<transfer_id> / REVIEW         WAITING (with the task token) -> DECIDED -> resumed, or CLOSED
    EVENT#<event_id> / EVENT              a consumed event (TTL): the consumer applies each event once
    OUTBOX#<event_id> / OUTBOX            vaultpay.shared.outbox

Amounts and history sums are DynamoDB numbers read back as exact integers (38 digits: the sum of squares of
a million transfers of 10^12 paise fits), never floats. The calls, retries and error translation are
vaultpay.shared.dynamo's `Table` (docs/persistence.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vaultpay.fraud.model import AmountHistory, Decision, FraudDecision, KnownDevice
from vaultpay.fraud.ports import DecisionExists, DecisionPage, ReviewChanged
from vaultpay.fraud.records import (
    DecisionRecord,
    DeviceSeen,
    Profile,
    ProfileEvent,
    Review,
    ReviewStatus,
    SecuritySignal,
    TransferCompleted,
    TransferEnded,
)
from vaultpay.shared import dynamo as ddb
from vaultpay.shared import kernel
from vaultpay.shared.errors import ConcurrentModification, ConfigurationError
from vaultpay.shared.events import DomainEvent

ALERTS_INDEX = "Alerts"
# A replayed stream (30 days of retention) must not apply an event twice: the markers outlive it.
PROCESSED_MARKER_TTL_S = 35 * 24 * 3600
# Devices per user read for one evaluation; a user with more is an anomaly the rules see as "not known".
MAX_DEVICES = 200
# What the alerts route may read of a review: everything but the task token.
_REVIEW_VIEW = ("transfer_id", "user_id", "status", "created_at", "correlation_id", "decision", "reviewer",
                "note", "decided_at", "resumed")  # fmt: skip


# ---- attribute values --------------------------------------------------------------------------------------


def _decision_item(record: DecisionRecord) -> dict[str, Any]:
    verdict = record.verdict
    item: dict[str, Any] = {
        "pk": ddb.s(f"DECISION#{record.transfer_id}"),
        "sk": ddb.s("DECISION"),
        "kind": ddb.s("decision"),
        "transfer_id": ddb.s(record.transfer_id),
        "user_id": ddb.s(record.user_id),
        "amount": ddb.n(record.amount),
        "currency": ddb.s(record.currency),
        "correlation_id": ddb.s(record.correlation_id),
        "decision": ddb.s(verdict.decision.value),
        "score": ddb.n(verdict.score),
        # The whole verdict as JSON text: the contributions (with their floors) read back exactly.
        "verdict": ddb.s(json.dumps(verdict.to_json(), separators=(",", ":"), sort_keys=True)),
        "decided_at": ddb.s(record.decided_at),
    }
    if verdict.decision is not Decision.APPROVE:
        item["alert_decision"] = ddb.s(verdict.decision.value)
        item["alert_sk"] = ddb.s(_alert_sk(record.decided_at, record.transfer_id))
    return item


def _alert_sk(decided_at: str, transfer_id: str) -> str:
    return f"{decided_at}#{transfer_id}"


def _decision(item: Mapping[str, Any]) -> DecisionRecord:
    return DecisionRecord(
        transfer_id=item["transfer_id"]["S"],
        user_id=item["user_id"]["S"],
        amount=ddb.int_attr(item, "amount"),
        currency=item["currency"]["S"],
        correlation_id=item["correlation_id"]["S"],
        verdict=FraudDecision.from_json(json.loads(item["verdict"]["S"])),
        decided_at=item["decided_at"]["S"],
    )


def _review(item: Mapping[str, Any]) -> Review:
    resumed = item.get("resumed", {}).get("BOOL", False)
    return Review(
        transfer_id=item["transfer_id"]["S"],
        user_id=item["user_id"]["S"],
        status=ReviewStatus(item["status"]["S"]),
        created_at=item["created_at"]["S"],
        correlation_id=item["correlation_id"]["S"],
        decision=ddb.str_attr(item, "decision"),
        reviewer=ddb.str_attr(item, "reviewer"),
        note=ddb.str_attr(item, "note"),
        decided_at=ddb.str_attr(item, "decided_at"),
        resumed=bool(resumed),
        task_token=ddb.str_attr(item, "task_token"),
        destination_account_id=ddb.str_attr(item, "destination_account_id"),
    )


# ---- the store ---------------------------------------------------------------------------------------------


class DynamoFraudStore:
    """The FraudStore port on FraudTable."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        clock: Callable[[], float] = kernel.now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not table_name:
            raise ConfigurationError("the fraud table name is not configured")
        self._db = ddb.Table(client, table_name, sleep=sleep)
        self._table = table_name
        self._clock = clock

    # ---- decisions ------------------------------------------------------------------------------------

    def get_decision(self, transfer_id: str) -> DecisionRecord | None:
        item = self._get(f"DECISION#{transfer_id}", "DECISION")
        return _decision(item) if item is not None else None

    def save_decision(self, record: DecisionRecord) -> None:
        items = [self._db.put_new(_decision_item(record))]
        items.extend(self._db.put_new(ddb.outbox_item(event)) for event in record.events())
        if self._transact(items):
            raise DecisionExists(record.transfer_id)

    # ---- the profile ----------------------------------------------------------------------------------

    def get_profile(self, user_id: str, destination_account_id: str) -> Profile:
        pk = ddb.s(f"PROFILE#{user_id}")
        keys = [
            {"pk": pk, "sk": ddb.s("PROFILE")},
            {"pk": pk, "sk": ddb.s(f"PAYEE#{destination_account_id}")},
        ]
        found = {(item["sk"]["S"], item["pk"]["S"]): item for item in self._db.batch_get(keys)}
        profile = found.get(("PROFILE", f"PROFILE#{user_id}"))
        history = AmountHistory()
        if profile is not None:
            history = AmountHistory(
                count=ddb.int_attr(profile, "history_count", 0),
                total=ddb.int_attr(profile, "history_total", 0),
                total_squares=ddb.int_attr(profile, "history_total_squares", 0),
            )
        payee_known = ("PAYEE#" + destination_account_id, f"PROFILE#{user_id}") in found
        signal_at = ddb.int_attr(profile, "security_signal_at", -1) if profile is not None else -1
        return Profile(
            history=history,
            devices=self._devices(user_id),
            payee_known=payee_known,
            security_signal_at=signal_at if signal_at >= 0 else None,
        )

    def _devices(self, user_id: str) -> frozenset[KnownDevice]:
        devices: list[KnownDevice] = []
        params: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :device)",
            "ExpressionAttributeValues": {":pk": ddb.s(f"PROFILE#{user_id}"), ":device": ddb.s("DEVICE#")},
            "ProjectionExpression": "sk, first_seen_at, trusted",
            "ConsistentRead": True,
        }
        while len(devices) < MAX_DEVICES:
            response = self._db.query(**params)
            for item in response.get("Items", []):
                devices.append(
                    KnownDevice(
                        device_id=item["sk"]["S"].removeprefix("DEVICE#"),
                        first_seen_at=ddb.int_attr(item, "first_seen_at"),
                        trusted=bool(item.get("trusted", {}).get("BOOL", False)),
                    )
                )
            last = response.get("LastEvaluatedKey")
            if not last:
                break
            params["ExclusiveStartKey"] = last
        return frozenset(devices[:MAX_DEVICES])

    def apply_profile_event(self, event: ProfileEvent) -> bool:
        if isinstance(event, TransferEnded):
            return self._close(event.transfer_id, ReviewStatus.WAITING)
        marker = self._db.put_new(
            {
                "pk": ddb.s(f"EVENT#{event.event_id}"),
                "sk": ddb.s("EVENT"),
                "kind": ddb.s("processed"),
                "expires_at": ddb.n(int(self._clock()) + PROCESSED_MARKER_TTL_S),
            }
        )
        if isinstance(event, DeviceSeen):
            change = {
                "Update": {
                    "TableName": self._table,
                    "Key": {
                        "pk": ddb.s(f"PROFILE#{event.user_id}"),
                        "sk": ddb.s(f"DEVICE#{event.device_id}"),
                    },
                    # Events may arrive out of order: the earliest login is the first sighting.
                    "UpdateExpression": (
                        "SET kind = :kind, trusted = if_not_exists(trusted, :false), "
                        "first_seen_at = if_not_exists(first_seen_at, :at), last_seen_at = :at"
                    ),
                    "ExpressionAttributeValues": {
                        ":kind": ddb.s("device"),
                        ":false": {"BOOL": False},
                        ":at": ddb.n(event.seen_at),
                    },
                }
            }
            items = [marker, change]
        elif isinstance(event, TransferCompleted):
            pk = ddb.s(f"PROFILE#{event.user_id}")
            items = [
                marker,
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": {"pk": pk, "sk": ddb.s("PROFILE")},
                        # ADD is atomic: concurrent consumers never lose an amount, and no read is needed.
                        "UpdateExpression": (
                            "SET kind = :kind ADD history_count :one, history_total :amount, "
                            "history_total_squares :square"
                        ),
                        "ExpressionAttributeValues": {
                            ":kind": ddb.s("profile"),
                            ":one": ddb.n(1),
                            ":amount": ddb.n(event.amount),
                            ":square": ddb.n(event.amount * event.amount),
                        },
                    }
                },
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {
                            "pk": pk,
                            "sk": ddb.s(f"PAYEE#{event.destination_account_id}"),
                            "kind": ddb.s("payee"),
                        },
                    }
                },
            ]
        elif isinstance(event, SecuritySignal):
            items = [
                marker,
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": {"pk": ddb.s(f"PROFILE#{event.user_id}"), "sk": ddb.s("PROFILE")},
                        # The newest signal wins, whatever order the events arrive in.
                        "UpdateExpression": "SET kind = :kind, security_signal_at = :at",
                        "ConditionExpression": (
                            "attribute_not_exists(security_signal_at) OR security_signal_at < :at"
                        ),
                        "ExpressionAttributeValues": {":kind": ddb.s("profile"), ":at": ddb.n(event.at)},
                    }
                },
            ]
        else:
            raise TypeError(f"not a profile event: {type(event).__name__}")
        failed = self._transact(items)
        if failed == {0} or failed == {0, 1}:
            return False  # the marker exists: applied before
        if failed == {1} and isinstance(event, SecuritySignal):
            # An older signal than the one the profile holds: nothing to learn, but it was seen.
            return not self._transact([marker])
        if failed:
            raise ConcurrentModification("the profile update's condition failed unexpectedly")
        return True

    # ---- reviews --------------------------------------------------------------------------------------

    def await_review(self, review: Review) -> Review:
        if review.task_token is None:
            raise ValueError("a waiting review needs its task token")
        update = (
            "SET task_token = :token, kind = :kind, transfer_id = :tid, updated_at = :now, "
            "user_id = if_not_exists(user_id, :uid), #status = if_not_exists(#status, :waiting), "
            "created_at = if_not_exists(created_at, :now), "
            "correlation_id = if_not_exists(correlation_id, :cid)"
        )
        values = {
            ":token": ddb.s(review.task_token),
            ":kind": ddb.s("review"),
            ":tid": ddb.s(review.transfer_id),
            ":now": ddb.s(review.created_at),
            ":uid": ddb.s(review.user_id),
            ":waiting": ddb.s(ReviewStatus.WAITING.value),
            ":cid": ddb.s(review.correlation_id),
        }
        if review.destination_account_id is not None:
            update += ", destination_account_id = if_not_exists(destination_account_id, :dst)"
            values[":dst"] = ddb.s(review.destination_account_id)
        try:
            response = self._db.update(
                {"pk": ddb.s(f"REVIEW#{review.transfer_id}"), "sk": ddb.s("REVIEW")},
                UpdateExpression=update,
                ConditionExpression="attribute_not_exists(pk) OR #status = :waiting",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ddb.ConditionFailed:
            current = self.get_review(review.transfer_id)
            if current is None:
                raise ConcurrentModification("the review changed while it was being stored") from None
            return current
        return _review(response["Attributes"])

    def get_review(self, transfer_id: str) -> Review | None:
        item = self._get(f"REVIEW#{transfer_id}", "REVIEW")
        return _review(item) if item is not None else None

    def record_event(self, event: DomainEvent) -> None:
        """An event that changes no record (a refused decision), through the outbox like every other."""
        self._db.transact([self._db.put_new(ddb.outbox_item(event))])

    def claim_review(
        self, transfer_id: str, *, decision: str, reviewer: str, note: str, decided_at: str
    ) -> Review:
        try:
            response = self._db.update(
                {"pk": ddb.s(f"REVIEW#{transfer_id}"), "sk": ddb.s("REVIEW")},
                UpdateExpression=(
                    "SET #status = :decided, decision = :decision, reviewer = :reviewer, #note = :note, "
                    "decided_at = :at, updated_at = :at"
                ),
                ConditionExpression="#status = :waiting",
                ExpressionAttributeNames={"#status": "status", "#note": "note"},
                ExpressionAttributeValues={
                    ":decided": ddb.s(ReviewStatus.DECIDED.value),
                    ":waiting": ddb.s(ReviewStatus.WAITING.value),
                    ":decision": ddb.s(decision),
                    ":reviewer": ddb.s(reviewer),
                    ":note": ddb.s(note),
                    ":at": ddb.s(decided_at),
                },
                ReturnValues="ALL_NEW",
            )
        except ddb.ConditionFailed:
            raise ReviewChanged(transfer_id) from None
        return _review(response["Attributes"])

    def confirm_review(self, review: Review) -> None:
        update = {
            "Update": {
                "TableName": self._table,
                "Key": {"pk": ddb.s(f"REVIEW#{review.transfer_id}"), "sk": ddb.s("REVIEW")},
                # The token has done its work: it is not kept a moment longer than needed.
                "UpdateExpression": "SET resumed = :true, updated_at = :now REMOVE task_token",
                "ConditionExpression": (
                    "#status = :decided AND (attribute_not_exists(resumed) OR resumed = :false)"
                ),
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {
                    ":true": {"BOOL": True},
                    ":false": {"BOOL": False},
                    ":decided": ddb.s(ReviewStatus.DECIDED.value),
                    ":now": ddb.s(review.decided_at or review.created_at),
                },
            }
        }
        # Confirmed already (a concurrent repeat of the same decision): nothing more to write.
        self._transact([update, self._db.put_new(ddb.outbox_item(review.decided_event()))])

    def close_review(self, transfer_id: str, *, expected: ReviewStatus) -> None:
        self._close(transfer_id, expected)

    def _close(self, transfer_id: str, expected: ReviewStatus) -> bool:
        try:
            self._db.update(
                {"pk": ddb.s(f"REVIEW#{transfer_id}"), "sk": ddb.s("REVIEW")},
                UpdateExpression="SET #status = :closed REMOVE task_token",
                ConditionExpression="#status = :expected",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":closed": ddb.s(ReviewStatus.CLOSED.value),
                    ":expected": ddb.s(expected.value),
                },
            )
        except ddb.ConditionFailed:
            return False
        return True

    def get_reviews(self, transfer_ids: Sequence[str]) -> dict[str, Review]:
        if not transfer_ids:
            return {}
        keys = [{"pk": ddb.s(f"REVIEW#{tid}"), "sk": ddb.s("REVIEW")} for tid in dict.fromkeys(transfer_ids)]
        found = self._db.batch_get(keys, projection=_REVIEW_VIEW)
        return {item["transfer_id"]["S"]: _review(item) for item in found}

    # ---- alerts ---------------------------------------------------------------------------------------

    def list_alerts(self, decision: str | None, *, limit: int, cursor: str | None) -> DecisionPage:
        """Newest first. Without a decision filter both index partitions are read and merged; the cursor
        holds where each one stopped (a partition it leaves out is exhausted)."""
        scope = decision or "ALL"
        partitions = [decision] if decision else [Decision.REVIEW.value, Decision.DECLINE.value]
        if cursor:
            positions = _decode_alerts_cursor(cursor, scope, partitions)
        else:
            positions = {partition: None for partition in partitions}
        fetched: dict[str, tuple[list[Mapping[str, Any]], bool]] = {}
        for partition, start in positions.items():
            params: dict[str, Any] = {
                "IndexName": ALERTS_INDEX,
                "KeyConditionExpression": "alert_decision = :d",
                "ExpressionAttributeValues": {":d": ddb.s(partition)},
                "ScanIndexForward": False,
                "Limit": limit,
            }
            if start is not None:
                transfer_id = start.rpartition("#")[2]
                params["ExclusiveStartKey"] = {
                    "pk": ddb.s(f"DECISION#{transfer_id}"),
                    "sk": ddb.s("DECISION"),
                    "alert_decision": ddb.s(partition),
                    "alert_sk": ddb.s(start),
                }
            response = self._db.query(**params)
            fetched[partition] = (response.get("Items", []), bool(response.get("LastEvaluatedKey")))
        merged = sorted(
            (
                (item["alert_sk"]["S"], partition, item)
                for partition, (items, _) in fetched.items()
                for item in items
            ),
            key=lambda entry: entry[0],
            reverse=True,
        )[:limit]
        following: dict[str, str | None] = {}
        for partition, (items, more) in fetched.items():
            taken = [sk for sk, p, _ in merged if p == partition]
            if len(taken) < len(items) or more:
                following[partition] = taken[-1] if taken else positions[partition]
        return DecisionPage(
            items=[_decision(item) for _, _, item in merged],
            next_cursor=ddb.encode_cursor({"q": scope, "p": following}) if following else None,
        )

    def _get(self, pk: str, sk: str) -> Mapping[str, Any] | None:
        return self._db.get({"pk": ddb.s(pk), "sk": ddb.s(sk)})

    def _transact(self, items: list[dict[str, Any]]) -> frozenset[int]:
        return self._db.transact(items)


# A cursor names the query it continues ("REVIEW", "DECLINE" or "ALL") and where each partition stopped.


def _decode_alerts_cursor(cursor: str, scope: str, partitions: Sequence[str]) -> dict[str, str | None]:
    document = ddb.decode_cursor(cursor)
    positions = document.get("p")
    if document.get("q") != scope or not isinstance(positions, dict):
        raise ddb.InvalidCursor()
    out: dict[str, str | None] = {}
    for partition, start in positions.items():
        if partition not in partitions:
            raise ddb.InvalidCursor()
        if start is not None and "#tr_" not in ddb.position(start):
            raise ddb.InvalidCursor()
        out[partition] = start
    if not out:
        raise ddb.InvalidCursor()
    return out

"""In-memory fakes of the fraud ports, with the DynamoDB store's conditions, for unit tests (no I/O)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from vaultpay.fraud.model import AmountHistory, Decision, KnownDevice
from vaultpay.fraud.ports import DecisionExists, DecisionPage, ReviewChanged, TaskClosed
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
from vaultpay.shared.errors import TransientError
from vaultpay.shared.events import DomainEvent


@dataclass
class MemoryFraudStore:
    """Every write is all-or-nothing under one lock, with the same conditions as the real transactions."""

    decisions: dict[str, DecisionRecord] = field(default_factory=dict)
    histories: dict[str, AmountHistory] = field(default_factory=dict)
    devices: dict[str, dict[str, KnownDevice]] = field(default_factory=dict)
    signals: dict[str, int] = field(default_factory=dict)
    payees: dict[str, set[str]] = field(default_factory=dict)
    reviews: dict[str, Review] = field(default_factory=dict)
    processed: set[str] = field(default_factory=set)
    events: list[DomainEvent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def get_decision(self, transfer_id: str) -> DecisionRecord | None:
        return self.decisions.get(transfer_id)

    def get_profile(self, user_id: str, destination_account_id: str) -> Profile:
        with self._lock:
            return Profile(
                history=self.histories.get(user_id, AmountHistory()),
                devices=frozenset(self.devices.get(user_id, {}).values()),
                payee_known=destination_account_id in self.payees.get(user_id, set()),
                security_signal_at=self.signals.get(user_id),
            )

    def save_decision(self, record: DecisionRecord) -> None:
        with self._lock:
            if record.transfer_id in self.decisions:
                raise DecisionExists(record.transfer_id)
            self.decisions[record.transfer_id] = record
            self.events.extend(record.events())

    def await_review(self, review: Review) -> Review:
        with self._lock:
            current = self.reviews.get(review.transfer_id)
            if current is None:
                self.reviews[review.transfer_id] = review
                return review
            if current.status is ReviewStatus.WAITING:
                current = replace(current, task_token=review.task_token)
                self.reviews[review.transfer_id] = current
            return current

    def get_review(self, transfer_id: str) -> Review | None:
        return self.reviews.get(transfer_id)

    def record_event(self, event: DomainEvent) -> None:
        with self._lock:
            self.events.append(event)

    def claim_review(
        self, transfer_id: str, *, decision: str, reviewer: str, note: str, decided_at: str
    ) -> Review:
        with self._lock:
            current = self.reviews.get(transfer_id)
            if current is None or current.status is not ReviewStatus.WAITING:
                raise ReviewChanged(transfer_id)
            claimed = replace(
                current,
                status=ReviewStatus.DECIDED,
                decision=decision,
                reviewer=reviewer,
                note=note,
                decided_at=decided_at,
            )
            self.reviews[transfer_id] = claimed
            return claimed

    def confirm_review(self, review: Review) -> None:
        with self._lock:
            current = self.reviews.get(review.transfer_id)
            if current is None or current.status is not ReviewStatus.DECIDED or current.resumed:
                return
            confirmed = replace(current, resumed=True, task_token=None)
            self.reviews[review.transfer_id] = confirmed
            self.events.append(confirmed.decided_event())

    def close_review(self, transfer_id: str, *, expected: ReviewStatus) -> None:
        with self._lock:
            current = self.reviews.get(transfer_id)
            if current is not None and current.status is expected:
                self.reviews[transfer_id] = replace(current, status=ReviewStatus.CLOSED, task_token=None)

    def list_alerts(self, decision: str | None, *, limit: int, cursor: str | None) -> DecisionPage:
        alerts = sorted(
            (
                record
                for record in self.decisions.values()
                if record.verdict.decision is not Decision.APPROVE
                and (decision is None or record.verdict.decision.value == decision)
            ),
            key=lambda record: (record.decided_at, record.transfer_id),
            reverse=True,
        )
        start = int(cursor) if cursor else 0
        items = alerts[start : start + limit]
        more = start + limit < len(alerts)
        return DecisionPage(items=items, next_cursor=str(start + limit) if more else None)

    def get_reviews(self, transfer_ids: Sequence[str]) -> dict[str, Review]:
        return {
            tid: replace(self.reviews[tid], task_token=None) for tid in transfer_ids if tid in self.reviews
        }

    def apply_profile_event(self, event: ProfileEvent) -> bool:
        with self._lock:
            if isinstance(event, TransferEnded):
                current = self.reviews.get(event.transfer_id)
                if current is None or current.status is not ReviewStatus.WAITING:
                    return False
                self.reviews[event.transfer_id] = replace(
                    current, status=ReviewStatus.CLOSED, task_token=None
                )
                return True
            if event.event_id in self.processed:
                return False
            self.processed.add(event.event_id)
            if isinstance(event, DeviceSeen):
                known = self.devices.setdefault(event.user_id, {})
                if event.device_id not in known:
                    known[event.device_id] = KnownDevice(event.device_id, event.seen_at)
            elif isinstance(event, SecuritySignal):
                newest = self.signals.get(event.user_id)
                self.signals[event.user_id] = event.at if newest is None else max(newest, event.at)
            elif isinstance(event, TransferCompleted):
                history = self.histories.get(event.user_id, AmountHistory())
                self.histories[event.user_id] = history.with_amount(event.amount)
                self.payees.setdefault(event.user_id, set()).add(event.destination_account_id)
            return True


@dataclass
class FakeTasks:
    """Step Functions' task tokens: `open` ones may be resumed once; anything else is closed."""

    open: set[str] = field(default_factory=set)
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def send_task_success(self, task_token: str, output: Mapping[str, Any]) -> None:
        if task_token not in self.open:
            raise TaskClosed("the task is no longer waiting")
        self.open.discard(task_token)
        self.sent.append((task_token, dict(output)))


@dataclass
class FakeTransferViews:
    """TransferStatusFunction's `view`, answering a fixed shape."""

    asked: list[str] = field(default_factory=list)
    failures: int = 0  # the first this many reads fail as a failed invoke does (TransientError)

    def view(self, transfer_id: str) -> dict[str, Any]:
        self.asked.append(transfer_id)
        if len(self.asked) <= self.failures:
            raise TransientError("the transfer view function failed: TransientError")
        return {"transfer_id": transfer_id, "status": "IN_REVIEW"}

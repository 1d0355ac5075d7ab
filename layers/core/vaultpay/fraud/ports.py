"""What the fraud use cases need from the outside world: the decision store, the saga's task resumer, the
account owners and transfer views (other domains' answers), the pages they return, and the signals the store
raises to the service.

Implementations: vaultpay.fraud.store, vaultpay.fraud.adapters, vaultpay.fraud.memory; wired in
vaultpay.bootstrap.fraud.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from vaultpay.fraud.records import (
    DecisionRecord,
    Profile,
    ProfileEvent,
    Review,
    ReviewStatus,
)
from vaultpay.shared.events import DomainEvent


class DecisionExists(Exception):
    """The transfer's decision was written by another evaluation first."""


class ReviewChanged(Exception):
    """A review's conditional write failed: it is not in the state the change expected."""


class TaskClosed(Exception):
    """Step Functions no longer waits on the token (timed out, ended, or an unknown token)."""


@dataclass(frozen=True, slots=True)
class DecisionPage:
    """A page of stored decisions, as the store answers an alerts query."""

    items: list[DecisionRecord]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class AlertPage:
    items: list[tuple[DecisionRecord, Review | None]]
    next_cursor: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "items": [record.alert(review) for record, review in self.items],
            "next_cursor": self.next_cursor,
        }


class FraudStore(Protocol):
    """FraudTable (vaultpay.fraud.store.DynamoFraudStore; vaultpay.fraud.memory.MemoryFraudStore)."""

    def get_decision(self, transfer_id: str) -> DecisionRecord | None: ...

    def get_profile(self, user_id: str, destination_account_id: str) -> Profile: ...

    def save_decision(self, record: DecisionRecord) -> None:
        """The decision and its two events in one transaction; DecisionExists if it is already there."""
        ...

    def await_review(self, review: Review) -> Review:
        """Stores a WAITING review with its token, or replaces the token of one still WAITING; answers the
        review as stored (a DECIDED or CLOSED one is left as it is)."""
        ...

    def get_review(self, transfer_id: str) -> Review | None: ...

    def record_event(self, event: DomainEvent) -> None:
        """An event that changes no record (a refused decision), written through the outbox."""
        ...

    def claim_review(
        self, transfer_id: str, *, decision: str, reviewer: str, note: str, decided_at: str
    ) -> Review:
        """WAITING -> DECIDED with the decision, conditionally; answers the stored review with its token.
        ReviewChanged when it was not WAITING."""
        ...

    def confirm_review(self, review: Review) -> None:
        """Marks a DECIDED review resumed, removes its token and writes `review.decided`, in one
        transaction; nothing when it was confirmed already."""
        ...

    def close_review(self, transfer_id: str, *, expected: ReviewStatus) -> None:
        """Marks the review CLOSED and removes its token when it is still `expected` (else nothing)."""
        ...

    def list_alerts(self, decision: str | None, *, limit: int, cursor: str | None) -> DecisionPage:
        """Decisions other than APPROVE (or only `decision`), newest first."""
        ...

    def get_reviews(self, transfer_ids: Sequence[str]) -> dict[str, Review]:
        """The reviews of these transfers, without their tokens."""
        ...

    def apply_profile_event(self, event: ProfileEvent) -> bool:
        """Applies the event once (with its processed marker, in one transaction); False for a repeat."""
        ...


class TaskResumer(Protocol):
    def send_task_success(self, task_token: str, output: Mapping[str, Any]) -> None:
        """Resumes the waiting saga; TaskClosed when it no longer waits."""
        ...


class AccountOwners(Protocol):
    def owner_of(self, account_id: str) -> str | None:
        """The user id that owns the account; None when there is no such account."""
        ...


class TransferViews(Protocol):
    def view(self, transfer_id: str) -> dict[str, Any]:
        """The transfer in docs/api.md's shape (TransferStatusFunction `view`)."""
        ...

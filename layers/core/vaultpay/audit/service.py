"""Audit use cases: record each event once in the chain, verify the chain, and query the log."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vaultpay.audit.checkpoints import CheckedCheckpoint, Checkpoint, checkpoint_of_heads
from vaultpay.audit.errors import AuditWriteRejected
from vaultpay.audit.model import (
    GENESIS_HASH,
    MAX_CHAINS,
    REASON_CHECKPOINT_INVALID,
    AppendOutcome,
    AuditEntry,
    AuditFilter,
    AuditRecord,
    BadRecord,
    ChainAnchor,
    ChainHead,
    InvalidEvent,
    QueryPosition,
    VerifyResult,
    canonical_json,
    combine_verdicts,
    entry_from_cloudevent,
    loads_strict,
    normalize_timestamp,
    verify_chain,
)
from vaultpay.audit.ports import AuditStore, CheckpointSigner, CheckpointWriter
from vaultpay.shared.errors import FieldError, Forbidden, ValidationFailed
from vaultpay.shared.kernel import rfc3339

ADMIN_ROLE = "admin"
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_FILTER_LENGTH = 128
_CURSOR_VERSION = 1
MAX_CURSOR_LENGTH = 512


class InvalidAuditEvent(ValidationFailed):
    """An event that cannot be recorded as it is (not a CloudEvent, or data that is not canonical)."""

    code = "invalid_event"


def require_admin(role: str) -> None:
    """The audit routes are for admins only. The authorizer refuses other roles already; this is the
    handler's own check, so a mis-wired route still cannot leak the log."""
    if role != ADMIN_ROLE:
        raise Forbidden("This route needs the admin role.")


@dataclass(frozen=True, slots=True)
class AuditQueryRequest:
    """The admin query as given (query-string values, unvalidated)."""

    correlation_id: str | None = None
    actor: str | None = None
    type: str | None = None
    occurred_from: str | None = None
    occurred_to: str | None = None
    limit: int | str | None = None  # None: DEFAULT_LIMIT; a string as the query string carries it
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of the log, newest first, in docs/api.md's list shape."""

    items: list[AuditRecord]
    next_cursor: str | None

    def to_body(self) -> dict[str, Any]:
        return {"items": [record.to_dict() for record in self.items], "next_cursor": self.next_cursor}


class AuditService:
    """Appends events to the chain (idempotent on the event id), verifies it, and answers queries."""

    def __init__(self, store: AuditStore) -> None:
        self._store = store

    def head(self) -> ChainHead:
        """Chain 0's newest record's seq and hash: also a cheap check that the table answers."""
        return self._store.head()

    def append(self, envelope: Mapping[str, Any]) -> AppendOutcome:
        """Records one CloudEvent; a second call with the same event id records nothing (DUPLICATE)."""
        try:
            entry = entry_from_cloudevent(envelope)
        except InvalidEvent as exc:
            raise InvalidAuditEvent(f"The event cannot be audited: {exc}") from None
        return self.append_entries([entry])[0]

    def append_entries(self, entries: Sequence[AuditEntry]) -> list[AppendOutcome]:
        """Appends in order, in as few transactions as the store allows. When DynamoDB refuses a batch as
        invalid, the entries are tried one by one, so that one bad entry is REJECTED alone instead of
        holding back the events around it."""
        if not entries:
            return []
        try:
            return self._store.append(entries)
        except AuditWriteRejected:
            if len(entries) == 1:
                return [AppendOutcome.rejected(entries[0].audit_id)]
        outcomes: list[AppendOutcome] = []
        for entry in entries:
            try:
                outcomes.extend(self._store.append([entry]))
            except AuditWriteRejected:
                outcomes.append(AppendOutcome.rejected(entry.audit_id))
        return outcomes

    def verify(
        self, anchor: ChainAnchor | None = None, *, checkpoints: Sequence[CheckedCheckpoint] = ()
    ) -> VerifyResult:
        """Recomputes every chain from its genesis (see vaultpay.audit.model.verify_chain), each through
        its heads in every signed checkpoint: a checkpoint that does not verify makes the verdict not ok.
        The chains walked are every chain the store has had (chains_written) and every chain a checkpoint
        names, so a chain cannot drop out of the verdict by lowering N or by deleting it whole."""
        anchors: dict[int, list[ChainAnchor]] = {}
        invalid: BadRecord | None = None
        for checked in checkpoints:
            point = checked.checkpoint
            if not checked.signature_ok or point is None:
                invalid = invalid or BadRecord(
                    seq=point.seq if point is not None else None,
                    audit_id=None,
                    reason=REASON_CHECKPOINT_INVALID,
                    detail=f"{checked.object_key}: {checked.problem}",
                )
                continue
            label = f"the checkpoint of seq {point.seq} signed at {point.at}"
            for chain, seq, head_hash in point.chain_heads():
                anchors.setdefault(chain, []).append(ChainAnchor(seq, head_hash, label, chain))
        if anchor is not None:
            anchors.setdefault(anchor.chain, []).append(anchor)
        valid = sum(1 for checked in checkpoints if checked.signature_ok and checked.checkpoint is not None)
        if invalid is not None:
            # A forged or unreadable checkpoint is the verdict: the chains are not worth reading against it.
            return VerifyResult(False, 0, GENESIS_HASH, invalid, 0, valid)
        chains = range(max(self._store.chains_written(), max(anchors, default=0) + 1))
        verdicts = [
            verify_chain(self._store.records(chain), anchors=anchors.get(chain, ()), chain=chain)
            for chain in chains
        ]
        return combine_verdicts(verdicts, checkpoints_checked=valid)

    def checkpoint(
        self, signer: CheckpointSigner, store: CheckpointWriter, verified: VerifyResult, *, now: float
    ) -> Checkpoint | None:
        """Signs and stores the heads `verified` reached, every chain's in one checkpoint. Never the head of
        a log that did not verify (that would sign a forgery); None for an empty log, or when those heads
        have a checkpoint already."""
        if not verified.ok or verified.head_seq == 0:
            return None
        point = checkpoint_of_heads(signer, verified.heads(), rfc3339(now))
        return point if store.put(point) else None

    def query(self, request: AuditQueryRequest) -> AuditPage:
        """The records matching the filters, newest first; ValidationFailed (422) names bad parameters."""
        query, limit, after = _validated(request)
        page = self._store.query(query, limit=limit, after=after)
        cursor = None if page.next_position is None else encode_cursor(page.next_position, query)
        return AuditPage(page.records, cursor)


def _validated(request: AuditQueryRequest) -> tuple[AuditFilter, int, QueryPosition | None]:
    errors: list[FieldError] = []
    texts: dict[str, str | None] = {}
    for name, value in (
        ("correlation_id", request.correlation_id),
        ("actor", request.actor),
        ("type", request.type),
    ):
        if value is not None and not 1 <= len(value) <= MAX_FILTER_LENGTH:
            errors.append(FieldError(name, f"must be 1 to {MAX_FILTER_LENGTH} characters"))
        texts[name] = value
    bounds: dict[str, str | None] = {"from": None, "to": None}
    for name, value in (("from", request.occurred_from), ("to", request.occurred_to)):
        if value is None:
            continue
        try:
            bounds[name] = normalize_timestamp(value)
        except ValueError as exc:
            errors.append(FieldError(name, str(exc)))
    occurred_from, occurred_to = bounds["from"], bounds["to"]
    if occurred_from is not None and occurred_to is not None and occurred_from > occurred_to:
        errors.append(FieldError("from", "must not be later than to"))
    limit = _limit(request.limit)
    if limit is None:
        errors.append(FieldError("limit", f"must be an integer between 1 and {MAX_LIMIT}"))
    query = AuditFilter(
        correlation_id=texts["correlation_id"],
        actor=texts["actor"],
        type=texts["type"],
        occurred_from=occurred_from,
        occurred_to=occurred_to,
    )
    after = None
    if request.cursor is not None and not errors:
        try:
            after = decode_cursor(request.cursor, query)
        except ValueError:
            errors.append(FieldError("cursor", "is not a cursor of this query"))
    if errors or limit is None:
        raise ValidationFailed("The query parameters are not valid.", errors=errors)
    return query, limit, after


def _limit(given: int | str | None) -> int | None:
    if given is None:
        return DEFAULT_LIMIT
    if isinstance(given, str):
        if not given.isascii() or not given.isdigit() or len(given) > 3:
            return None
        given = int(given)
    return given if 1 <= given <= MAX_LIMIT else None


def encode_cursor(position: QueryPosition, query: AuditFilter) -> str:
    """An opaque base64url token: where the page ended, bound to the filters it was made under."""
    payload: dict[str, Any] = {
        "v": _CURSOR_VERSION,
        "at": position.occurred_at,
        "seq": position.seq,
        "f": query.fingerprint(),
    }
    # Only beyond chain 0, so that a cursor of a one-chain log reads as it did before the log had chains.
    if position.chain:
        payload["c"] = position.chain
    return base64.urlsafe_b64encode(canonical_json(payload)).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, query: AuditFilter) -> QueryPosition:
    """The position in a cursor; ValueError when it is not one of ours or was made for other filters."""
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise ValueError("cursor too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = loads_strict(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("cursor is not base64url JSON") from None
    if not isinstance(payload, dict) or payload.get("v") != _CURSOR_VERSION:
        raise ValueError("unknown cursor version")
    if payload.get("f") != query.fingerprint():
        raise ValueError("cursor belongs to other filters")
    at, seq, chain = payload.get("at"), payload.get("seq"), payload.get("c", 0)
    if not isinstance(at, str) or not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ValueError("cursor position is malformed")
    if type(chain) is not int or not 0 <= chain < MAX_CHAINS:
        raise ValueError("cursor chain is malformed")
    if normalize_timestamp(at) != at:
        raise ValueError("cursor time is not normalized")
    return QueryPosition(at, seq, chain)

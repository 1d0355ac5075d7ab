"""The audit log's pure core: records, canonical JSON, the SHA-256 hash chain and its verification.

Canonical JSON (the exact bytes a record's hash covers) is defined for values built only from JSON objects
with string keys, arrays, strings, integers, `true`, `false` and `null`:

- Objects: members sorted by key, keys compared as sequences of Unicode code points (not UTF-16 code
  units as RFC 8785 does; the two orders differ only between keys holding characters above U+FFFF and
  characters U+E000..U+FFFF). A key appears at most once.
- No insignificant whitespace anywhere: `{"a":[1,true,null],"b":"x"}`.
- Strings: encoded as UTF-8. Only what JSON requires is escaped: `\\"`, `\\\\`, and the control characters
  U+0000..U+001F as `\\b \\f \\n \\r \\t` or else `\\u00xx` (lower-case hex). Every other character,
  U+007F and all non-ASCII included, is written as itself. A lone surrogate cannot be UTF-8 and is refused.
- Numbers: integers only, in decimal, `-` for negatives, no leading zeros, no fraction, no exponent, and
  within ±(2^53 - 1) so that every JSON implementation (JavaScript's included) reads them exactly. Floats,
  NaN and infinities are refused: money and counts are integers.
- `true`, `false`, `null` as themselves.

A record's hash is `SHA-256(prev_hash + canonical_json(record without "hash"))` in lower-case hex, where
`prev_hash` is ASCII hex and is also a member of the hashed object. The first record (seq 1) of every chain
links to `GENESIS_HASH`, 64 zeros. This is the same output as Python's
`json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()` on such values.

The log is N chains (N = AUDIT_CHAINS, 1 to MAX_CHAINS): an event's record goes to chain
`chain_of(event id, N)`, and each chain has its own seq 1, 2, 3... and its own links. A record of chain 0
has no `chain` member, so the chain written before the log was sharded is chain 0 unchanged; a record of
chain k > 0 carries `"chain": k`, inside what its hash covers, so it cannot pass for another chain's.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# parse_rfc3339 is re-exported: the operator CLI reads its time filters with it.
from vaultpay.shared.kernel import format_timestamp, parse_rfc3339
from vaultpay.shared.strict_json import strict_loads

GENESIS_HASH = "0" * 64
MAX_SAFE_INTEGER = 2**53 - 1
# The canonical size of one event's data. DynamoDB items stop at 400 KB, and one transaction of appends
# (vaultpay.audit.store) must stay under 4 MB; audit events are a few hundred bytes.
MAX_DATA_BYTES = 64 * 1024
# Every verify reads each chain in full, and a checkpoint signs one line per chain: a bound keeps both small.
MAX_CHAINS = 64
DEFAULT_ACTOR = "system"
EVENT_TYPE_PREFIX = "vaultpay."

# Ids and correlation ids are DynamoDB keys and log values: short, printable ASCII only.
_PRINTABLE_ID = re.compile(r"[\x21-\x7e]{1,128}")
_EVENT_TYPE = re.compile(r"vaultpay(?:\.[a-z0-9_]+)+")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_TEXT = 256
_MAX_ID = 128


class InvalidEvent(ValueError):
    """An event that cannot become an audit record; the message names the field, never its value."""


# ---- canonical JSON ----------------------------------------------------------------------------------


def canonical_json(value: Any) -> bytes:
    """The canonical JSON bytes of `value` (module docstring); ValueError for anything outside it."""
    _check_canonical(value, "$")
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a string holds a lone surrogate, which UTF-8 cannot encode") from None


def _check_canonical(value: Any, path: str) -> None:
    # bool before int: True is an int in Python, and is written as `true`, which is what we want.
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"{path} is an integer outside ±(2^53 - 1)")
        return
    if isinstance(value, float):
        raise ValueError(f"{path} is a float: only integers are canonical")
    if isinstance(value, Mapping):
        for key, member in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path} has a key that is not a string")
            _check_canonical(member, f"{path}.{key}")
        return
    if isinstance(value, list | tuple):
        for index, member in enumerate(value):
            _check_canonical(member, f"{path}[{index}]")
        return
    raise ValueError(f"{path} is a {type(value).__name__}, which JSON cannot hold")


def loads_strict(payload: bytes | str) -> Any:
    """JSON that can be canonical: duplicate keys, NaN and infinities are refused instead of guessed at."""
    return strict_loads(payload)


# ---- time --------------------------------------------------------------------------------------------


def normalize_timestamp(text: str) -> str:
    """Any RFC 3339 date-time as the log's form (UTC, truncated to milliseconds)."""
    return format_timestamp(parse_rfc3339(text))


# ---- chains ------------------------------------------------------------------------------------------


def chain_of(audit_id: str, chains: int) -> int:
    """The chain an event's record belongs to: a stable hash of the event id, mod the number of chains.

    SHA-256 rather than hash(): the choice must be the same in every process and every Python version, so
    that a redelivered event is looked for (and refused by its marker) wherever it was first written."""
    if chains == 1:
        return 0
    digest = hashlib.sha256(audit_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % chains


# ---- records -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What an event contributes to the log, before it has a place (seq) and a link (prev_hash) in it."""

    audit_id: str  # the event id: one event, one record
    occurred_at: str  # the event's time, normalized (format_timestamp)
    type: str
    actor: str
    correlation_id: str
    subject: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def chain(self, seq: int, prev_hash: str, in_chain: int = 0) -> AuditRecord:
        """This entry as record `seq` of chain `in_chain`, linked to the record before it."""
        body = self._body(seq, prev_hash, in_chain)
        return AuditRecord(
            audit_id=self.audit_id,
            seq=seq,
            occurred_at=self.occurred_at,
            type=self.type,
            actor=self.actor,
            correlation_id=self.correlation_id,
            subject=self.subject,
            data=self.data,
            prev_hash=prev_hash,
            hash=record_hash(prev_hash, body),
            chain=in_chain,
        )

    def _body(self, seq: int, prev_hash: str, in_chain: int) -> dict[str, Any]:
        body = {
            "audit_id": self.audit_id,
            "seq": seq,
            "occurred_at": self.occurred_at,
            "type": self.type,
            "actor": self.actor,
            "correlation_id": self.correlation_id,
            "subject": self.subject,
            "data": self.data,
            "prev_hash": prev_hash,
        }
        if in_chain:
            body["chain"] = in_chain
        return body


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One link of a chain, exactly as docs/api.md shows it (`chain` only when it is not chain 0)."""

    audit_id: str
    seq: int
    occurred_at: str
    type: str
    actor: str
    correlation_id: str
    subject: str
    data: Mapping[str, Any]
    prev_hash: str
    hash: str
    chain: int = 0

    def body(self) -> dict[str, Any]:
        """The record without `hash`: what the hash covers."""
        body = {
            "audit_id": self.audit_id,
            "seq": self.seq,
            "occurred_at": self.occurred_at,
            "type": self.type,
            "actor": self.actor,
            "correlation_id": self.correlation_id,
            "subject": self.subject,
            "data": self.data,
            "prev_hash": self.prev_hash,
        }
        # `!= 0`, not truthiness: any other value, even one that is falsy, must change the hash.
        if self.chain != 0:
            body["chain"] = self.chain
        return body

    def to_dict(self) -> dict[str, Any]:
        return {**self.body(), "data": dict(self.data), "hash": self.hash}

    def computed_hash(self) -> str:
        """The hash this record's content and link call for (ValueError when it is not canonical)."""
        return record_hash(self.prev_hash, self.body())

    def entry(self) -> AuditEntry:
        return AuditEntry(
            audit_id=self.audit_id,
            occurred_at=self.occurred_at,
            type=self.type,
            actor=self.actor,
            correlation_id=self.correlation_id,
            subject=self.subject,
            data=self.data,
        )


@dataclass(frozen=True, slots=True)
class MalformedRecord:
    """A stored item of the chain that cannot be read as a record: itself evidence of tampering."""

    seq: int | None
    audit_id: str | None
    problem: str


def record_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
    """SHA-256 (hex) over the previous hash and the canonical JSON of the record without its hash."""
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(canonical_json(body))
    return digest.hexdigest()


def build_chain(
    entries: Iterable[AuditEntry], *, start_seq: int = 1, prev_hash: str = GENESIS_HASH, in_chain: int = 0
) -> list[AuditRecord]:
    """Entries chained one after another from a given head (by default, the genesis)."""
    records: list[AuditRecord] = []
    for offset, entry in enumerate(entries):
        record = entry.chain(start_seq + offset, prev_hash, in_chain)
        records.append(record)
        prev_hash = record.hash
    return records


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The newest record's seq and hash (seq 0 and the genesis hash for an empty chain)."""

    seq: int
    hash: str


def log_head(heads: Mapping[int, ChainHead]) -> ChainHead:
    """The whole log's head: its record count (the chains' seqs added up) and one hash over every chain's
    head. While only chain 0 has records, that is chain 0's own head, as it was before the log had chains;
    the checkpoint of a log is stored under this seq (vaultpay.audit.checkpoints)."""
    written = {chain: head for chain, head in sorted(heads.items()) if head.seq > 0}
    if set(written) <= {0}:
        return written.get(0, ChainHead(0, GENESIS_HASH))
    lines = [[chain, head.seq, head.hash] for chain, head in written.items()]
    digest = hashlib.sha256(canonical_json(lines)).hexdigest()
    return ChainHead(sum(head.seq for head in written.values()), digest)


APPENDED = "appended"
DUPLICATE = "duplicate"  # the event already has its record
REJECTED = "rejected"  # the store refused the entry itself; retrying cannot help


@dataclass(frozen=True, slots=True)
class AppendOutcome:
    """What became of one entry: `status` is APPENDED (with its new record), DUPLICATE or REJECTED."""

    audit_id: str
    status: str
    record: AuditRecord | None = None

    @classmethod
    def appended(cls, record: AuditRecord) -> AppendOutcome:
        return cls(record.audit_id, APPENDED, record)

    @classmethod
    def duplicate_of(cls, audit_id: str) -> AppendOutcome:
        return cls(audit_id, DUPLICATE)

    @classmethod
    def rejected(cls, audit_id: str) -> AppendOutcome:
        return cls(audit_id, REJECTED)


# ---- events → entries --------------------------------------------------------------------------------


def entry_from_cloudevent(envelope: Any) -> AuditEntry:
    """The audit entry of a CloudEvents envelope (docs/api.md "Events"); InvalidEvent says what is wrong."""
    if not isinstance(envelope, Mapping):
        raise InvalidEvent("the event is not a JSON object")
    if envelope.get("specversion") != "1.0":
        raise InvalidEvent("specversion must be 1.0")
    event_id = _text(envelope, "id", pattern=_PRINTABLE_ID)
    event_type = _text(envelope, "type", pattern=_EVENT_TYPE)
    correlation_id = _text(envelope, "correlationid", pattern=_PRINTABLE_ID)
    subject = envelope.get("subject", "")
    if not isinstance(subject, str) or len(subject) > _MAX_TEXT:
        raise InvalidEvent(f"subject must be a string of at most {_MAX_TEXT} characters")
    # Events raised by the system itself (a sweeper, a saga step) may name no actor.
    actor = _text(envelope, "actor", pattern=_PRINTABLE_ID) if envelope.get("actor") else DEFAULT_ACTOR
    time_text = envelope.get("time")
    if not isinstance(time_text, str):
        raise InvalidEvent("time is required")
    try:
        occurred_at = normalize_timestamp(time_text)
    except ValueError as exc:
        raise InvalidEvent(f"time {exc}") from None
    data = envelope.get("data", {})
    if not isinstance(data, Mapping):
        raise InvalidEvent("data must be a JSON object")
    try:
        size = len(canonical_json(data))
    except ValueError as exc:
        raise InvalidEvent(f"data is not canonical JSON: {exc}") from None
    if size > MAX_DATA_BYTES:
        raise InvalidEvent(f"data is larger than {MAX_DATA_BYTES} bytes")
    return AuditEntry(
        audit_id=event_id,
        occurred_at=occurred_at,
        type=event_type,
        actor=actor,
        correlation_id=correlation_id,
        subject=subject,
        data=dict(data),
    )


def entry_from_json(payload: bytes) -> AuditEntry:
    """The audit entry of a CloudEvent as published to JetStream (UTF-8 JSON)."""
    try:
        envelope = loads_strict(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        # ValueError covers JSONDecodeError; its message quotes no input beyond a position.
        raise InvalidEvent(f"the message is not valid JSON: {type(exc).__name__}") from None
    return entry_from_cloudevent(envelope)


def _text(envelope: Mapping[str, Any], name: str, *, pattern: re.Pattern[str]) -> str:
    value = envelope.get(name)
    if not isinstance(value, str) or len(value) > _MAX_ID or pattern.fullmatch(value) is None:
        raise InvalidEvent(f"{name} is missing or malformed")
    return value


# ---- verification ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainAnchor:
    """A (seq, hash) pair kept outside the table: proves the chain still reaches it, unchanged.

    Without one, verify cannot tell a chain whose newest records were deleted, or one rewritten and
    re-hashed from some record on, from a genuine shorter chain: the chain only proves its own prefix.
    """

    seq: int
    hash: str
    label: str = "the anchor"  # how a report names it: "the checkpoint of seq 42 signed at ..."
    chain: int = 0

    @classmethod
    def parse(cls, text: str) -> ChainAnchor:
        """`[<chain>/]<seq>:<hash>`, as verify prints it (no chain: chain 0)."""
        chain_text, _, rest = text.rpartition("/")
        seq_text, _, hash_text = rest.partition(":")
        good_chain = not chain_text or (chain_text.isdigit() and int(chain_text) < MAX_CHAINS)
        good_seq = seq_text.isdigit() and int(seq_text) >= 1
        if not good_chain or not good_seq or _HEX64.fullmatch(hash_text) is None:
            raise ValueError("an anchor is [<chain>/]<seq>:<64 lower-case hex digits>")
        return cls(int(seq_text), hash_text, chain=int(chain_text or 0))


@dataclass(frozen=True, slots=True)
class BadRecord:
    """Where the chain first breaks, and why (reason is one of the REASON_* codes)."""

    seq: int | None
    audit_id: str | None
    reason: str
    detail: str
    chain: int = 0

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "seq": self.seq,
            "audit_id": self.audit_id,
            "reason": self.reason,
            "detail": self.detail,
        }
        # Named only beyond chain 0, so a log of one chain reports exactly as it did before it had chains.
        if self.chain:
            body["chain"] = self.chain
        return body


REASON_UNEXPECTED_SEQ = "unexpected_seq"  # a gap, a repeat or a re-ordering
REASON_BROKEN_LINK = "broken_link"  # prev_hash is not the previous record's hash
REASON_HASH_MISMATCH = "hash_mismatch"  # the content is not what the hash was computed over
REASON_MALFORMED = "malformed"  # not readable as a record at all
REASON_ANCHOR_MISMATCH = "anchor_mismatch"  # the anchored record has another hash: a rewritten chain
REASON_TRUNCATED = "truncated"  # the chain ends before the anchored record
REASON_CHECKPOINT_INVALID = "checkpoint_invalid"  # a stored checkpoint is unreadable or its signature fails


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The verdict on a chain, or on the whole log. `records_checked` counts records read, the bad one
    included; `head_hash` is the hash of the last record that verified (the genesis hash when none did).

    The log's verdict (combine_verdicts) holds one verdict per chain in `chains`; its head is the log's
    (log_head), which is chain 0's own while chain 0 is the only chain with records."""

    ok: bool
    records_checked: int
    head_hash: str
    first_bad_record: BadRecord | None = None
    head_seq: int = 0
    checkpoints_checked: int = 0
    chain: int = 0
    chains: tuple[VerifyResult, ...] = ()

    def heads(self) -> dict[int, ChainHead]:
        """Each chain's verified head (one chain: this verdict's own)."""
        verdicts = self.chains or (self,)
        return {v.chain: ChainHead(v.head_seq, v.head_hash) for v in verdicts}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": self.ok,
            "records_checked": self.records_checked,
            "head_hash": self.head_hash,
            "head_seq": self.head_seq,
            "checkpoints_checked": self.checkpoints_checked,
        }
        if self.first_bad_record is not None:
            body["first_bad_record"] = self.first_bad_record.to_dict()
        if self.chains:
            body["chains"] = [verdict.chain_dict() for verdict in self.chains]
        return body

    def chain_dict(self) -> dict[str, Any]:
        """One chain's figures, as the verify response lists them under `chains`."""
        body: dict[str, Any] = {
            "chain": self.chain,
            "ok": self.ok,
            "records_checked": self.records_checked,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
        }
        if self.first_bad_record is not None:
            body["first_bad_record"] = self.first_bad_record.to_dict()
        return body


def combine_verdicts(verdicts: Sequence[VerifyResult], *, checkpoints_checked: int) -> VerifyResult:
    """The log's verdict from its chains' (in chain order): ok when every chain is, the first broken
    chain's bad record, the records of all chains counted, and the log's head (log_head)."""
    head = log_head({v.chain: ChainHead(v.head_seq, v.head_hash) for v in verdicts})
    first_bad = next((v.first_bad_record for v in verdicts if v.first_bad_record is not None), None)
    return VerifyResult(
        ok=all(v.ok for v in verdicts),
        records_checked=sum(v.records_checked for v in verdicts),
        head_hash=head.hash,
        first_bad_record=first_bad,
        head_seq=head.seq,
        checkpoints_checked=checkpoints_checked,
        chains=tuple(verdicts),
    )


def verify_chain(
    records: Iterable[AuditRecord | MalformedRecord],
    *,
    anchor: ChainAnchor | None = None,
    anchors: Sequence[ChainAnchor] = (),
    invalid_checkpoint: BadRecord | None = None,
    chain: int = 0,
) -> VerifyResult:
    """Checks records in seq order: seq 1, 2, 3... with no gap, each linked to the hash before it, each
    hash recomputed from its content. Stops at the first bad record. Any edit, deletion (except of the
    newest records: see ChainAnchor), insertion or re-ordering breaks one of the three checks at the
    first record it touches. Consumes `records` lazily, so a long chain is never held in memory.

    `anchors` (the signed checkpoints, and `anchor`, one given by hand) are heads known from outside the
    table: the chain must pass through each unchanged and reach the newest, so a rewrite-and-rehash or a
    truncation behind one is reported with the first anchor it breaks. `invalid_checkpoint` is a stored
    checkpoint that did not verify: the verdict is then not ok whatever the chain holds. `chain` names the
    chain in the verdict and its bad record, and is what each record must say it belongs to."""
    pinned: dict[int, list[ChainAnchor]] = {}
    for known in [*anchors, *([anchor] if anchor is not None else [])]:
        pinned.setdefault(known.seq, []).append(known)
    newest = max(pinned, default=0)
    checked = 0
    prev_hash = GENESIS_HASH
    prev_seq = 0
    count = len(anchors)

    def broken(seq: int | None, audit_id: str | None, reason: str, detail: str) -> VerifyResult:
        bad = BadRecord(seq=seq, audit_id=audit_id, reason=reason, detail=detail, chain=chain)
        return VerifyResult(False, checked, prev_hash, bad, prev_seq, count, chain)

    if invalid_checkpoint is not None:
        return VerifyResult(False, 0, prev_hash, invalid_checkpoint, 0, count, chain)
    for record in records:
        checked += 1
        if isinstance(record, MalformedRecord):
            return broken(record.seq, record.audit_id, REASON_MALFORMED, record.problem)
        expected = prev_seq + 1
        if record.seq != expected:
            detail = f"expected seq {expected}, found {record.seq}"
            return broken(record.seq, record.audit_id, REASON_UNEXPECTED_SEQ, detail)
        if record.prev_hash != prev_hash:
            return broken(
                record.seq,
                record.audit_id,
                REASON_BROKEN_LINK,
                "prev_hash is not the genesis hash"
                if expected == 1
                else f"prev_hash is not the hash of seq {prev_seq}",
            )
        try:
            computed = record.computed_hash()
        except ValueError as exc:
            return broken(record.seq, record.audit_id, REASON_MALFORMED, f"content is not canonical: {exc}")
        if computed != record.hash:
            detail = "hash does not match the content"
            return broken(record.seq, record.audit_id, REASON_HASH_MISMATCH, detail)
        if record.chain != chain:
            detail = f"the record says it belongs to chain {record.chain}"
            return broken(record.seq, record.audit_id, REASON_MALFORMED, detail)
        for known in pinned.get(record.seq, ()):
            if record.hash != known.hash:
                detail = f"hash differs from {known.label}"
                return broken(record.seq, record.audit_id, REASON_ANCHOR_MISMATCH, detail)
        prev_seq, prev_hash = record.seq, record.hash
    if prev_seq < newest:
        (known, *_) = pinned[newest]
        detail = f"the chain ends at seq {prev_seq}, before {known.label}"
        return broken(newest, None, REASON_TRUNCATED, detail)
    return VerifyResult(True, checked, prev_hash, None, prev_seq, count, chain)


# ---- queries -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What a query keeps: equality on correlation id, actor and type, and `occurred_from <= occurred_at <
    occurred_to` (both normalized timestamps; either may be open)."""

    correlation_id: str | None = None
    actor: str | None = None
    type: str | None = None
    occurred_from: str | None = None
    occurred_to: str | None = None

    def fingerprint(self) -> str:
        """A short digest of the filter, so that a cursor cannot be replayed under other filters."""
        fields = [self.correlation_id, self.actor, self.type, self.occurred_from, self.occurred_to]
        return hashlib.sha256(canonical_json(fields)).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class QueryPosition:
    """Where a page of a query ended: the sort position of its last record (time, then seq, then chain)."""

    occurred_at: str
    seq: int
    chain: int = 0


@dataclass(frozen=True, slots=True)
class RecordPage:
    """Records newest first, and where to continue (None: there is nothing more)."""

    records: list[AuditRecord]
    next_position: QueryPosition | None

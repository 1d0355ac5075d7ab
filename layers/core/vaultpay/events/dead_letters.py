"""Dead letters: list the VAULTPAY_DLQ advisories with the events they name, and replay one to its consumer.

A dead letter is the server's advisory that a consumer gave up on a message (MAX_DELIVERIES) or a worker
terminated it as poison (MSG_TERMINATED). The advisory holds the stream sequence; the message itself stays
in VAULTPAY under its limits. A durable consumer never redelivers a message it gave up on, so replay
publishes a copy: same subject, same payload (the CloudEvent keeps its original `id`, on which every
consumer de-duplicates), and a Nats-Msg-Id of `<event id>:replay:<dead-letter seq>` that JetStream has not
seen, so the copy is stored instead of being dropped as a duplicate of the original, while replaying the
same dead letter twice within the duplicate window still stores it once. Every consumer whose filter
matches sees the copy; those that already handled the event skip it by its id. Only after the copy's
PubAck is the dead letter deleted, so a crash in between leaves it listed and a second replay is harmless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vaultpay.events.jetstream_config import DEAD_LETTER_STREAM, EVENTS_STREAM
from vaultpay.events.relay import MSG_ID_HEADER
from vaultpay.shared.errors import Conflict, NotFound

REPLAY_OF_HEADER = "VaultPay-Replay-Of"  # the original's stream sequence
REPLAY_FOR_HEADER = "VaultPay-Replay-Consumer"  # the consumer that gave up on it
_REASONS = {
    "io.nats.jetstream.advisory.v1.max_deliver": "max_deliveries",
    "io.nats.jetstream.advisory.v1.terminated": "terminated",
}


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One advisory in the dead-letter stream, with what it points at."""

    dlq_seq: int  # the id an operator replays
    reason: str  # "max_deliveries" or "terminated"
    stream: str
    consumer: str
    stream_seq: int
    deliveries: int
    at: str  # when the consumer gave up (the advisory's time stamp)
    event_type: str | None  # the original's subject; None when it has aged out of the stream
    event_id: str | None


@dataclass(frozen=True, slots=True)
class Replayed:
    """A replayed dead letter: the copy's place in the stream."""

    dead_letter: DeadLetter
    event_id: str
    new_stream_seq: int
    msg_id: str


async def list_dead_letters(js: Any, *, limit: int = 1000) -> list[DeadLetter]:
    """The dead letters, oldest first (at most `limit`)."""
    from nats.js.errors import NotFoundError

    info = await js.stream_info(DEAD_LETTER_STREAM)
    letters: list[DeadLetter] = []
    seq = int(info.state.first_seq or 0)
    last = int(info.state.last_seq or 0)
    while seq and seq <= last and len(letters) < limit:
        try:
            raw = await js.get_msg(DEAD_LETTER_STREAM, seq)
        except NotFoundError:
            seq += 1  # replayed and deleted
            continue
        letters.append(await _dead_letter(js, seq, raw.data or b""))
        seq += 1
    return letters


async def get_dead_letter(js: Any, dlq_seq: int) -> DeadLetter:
    from nats.js.errors import NotFoundError

    try:
        raw = await js.get_msg(DEAD_LETTER_STREAM, dlq_seq)
    except NotFoundError as exc:
        raise NotFound(f"no dead letter {dlq_seq} in {DEAD_LETTER_STREAM}") from exc
    return await _dead_letter(js, dlq_seq, raw.data or b"")


async def replay_dead_letter(js: Any, dlq_seq: int) -> Replayed:
    """Publishes a copy of the dead letter's message for its consumers to see again, then deletes the dead
    letter. NotFound when there is no such dead letter; Conflict when its message has aged out."""
    from nats.js.errors import NotFoundError

    letter = await get_dead_letter(js, dlq_seq)
    try:
        original = await js.get_msg(letter.stream, letter.stream_seq)
    except NotFoundError as exc:
        raise Conflict(
            f"dead letter {dlq_seq}: message {letter.stream_seq} is no longer in {letter.stream} "
            "(aged out under the stream's limits); nothing to replay"
        ) from exc
    event_id = letter.event_id or f"{letter.stream}:{letter.stream_seq}"
    msg_id = f"{event_id}:replay:{dlq_seq}"
    headers = {k: v for k, v in (original.headers or {}).items() if not k.startswith("Nats-")}
    headers.update(
        {
            MSG_ID_HEADER: msg_id,
            REPLAY_OF_HEADER: str(letter.stream_seq),
            REPLAY_FOR_HEADER: letter.consumer,
        }
    )
    ack = await js.publish(original.subject, original.data or b"", headers=headers)
    await js.delete_msg(DEAD_LETTER_STREAM, dlq_seq)
    return Replayed(dead_letter=letter, event_id=event_id, new_stream_seq=int(ack.seq), msg_id=msg_id)


async def _dead_letter(js: Any, dlq_seq: int, payload: bytes) -> DeadLetter:
    from nats.js.errors import NotFoundError

    try:
        advisory = json.loads(payload)
    except ValueError:
        advisory = {}
    if not isinstance(advisory, dict):
        advisory = {}
    stream = str(advisory.get("stream") or EVENTS_STREAM)
    stream_seq = int(advisory.get("stream_seq") or 0)
    event_type: str | None = None
    event_id: str | None = None
    if stream_seq:
        try:
            original = await js.get_msg(stream, stream_seq)
        except NotFoundError:
            original = None
        if original is not None:
            event_type = original.subject
            event_id = _event_id(original.data, original.headers)
    return DeadLetter(
        dlq_seq=dlq_seq,
        reason=_REASONS.get(str(advisory.get("type")), str(advisory.get("type") or "unknown")),
        stream=stream,
        consumer=str(advisory.get("consumer") or ""),
        stream_seq=stream_seq,
        deliveries=int(advisory.get("deliveries") or 0),
        at=_short_time(str(advisory.get("timestamp") or "")),
        event_type=event_type,
        event_id=event_id,
    )


def _event_id(data: bytes | None, headers: dict[str, str] | None) -> str | None:
    """The CloudEvent's id (what consumers de-duplicate on), else the message's Nats-Msg-Id."""
    try:
        envelope = json.loads(data or b"")
    except ValueError:
        envelope = None
    if isinstance(envelope, dict) and isinstance(envelope.get("id"), str):
        return str(envelope["id"])
    msg_id = (headers or {}).get(MSG_ID_HEADER)
    return str(msg_id) if msg_id else None


def _short_time(stamp: str) -> str:
    """The server writes nanoseconds; operators read milliseconds (RFC 3339, UTC)."""
    try:
        head, _, rest = stamp.rstrip("Z").partition(".")
        moment = datetime.fromisoformat(head)
    except ValueError:
        return stamp
    millis = (rest + "000")[:3]
    return f"{moment.isoformat()}.{millis}Z"

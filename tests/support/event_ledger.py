"""The event path's ledger: after a run, every outbox item is in the stream once and in the audit log once.

The bank test (tests/support/bank_run.py) proves the money; this proves the events written beside it. An
event is an outbox item in its domain table, written in its change's transaction (vaultpay.shared.outbox);
the relay publishes it to the VAULTPAY stream with `Nats-Msg-Id` = the event id (vaultpay.events.relay);
the audit consumer appends it to the hash chain, whose records carry the event id as `audit_id`
(vaultpay.audit.store). The three sides compare by event id:

- lost: an outbox item whose id is not in the stream, or not in the audit log, unless the audit consumer
  gave up on it and its dead letter is in VAULTPAY_DLQ (then it is accounted for, and counted apart);
- duplicated: an id stored twice in the stream (JetStream drops a repeated Nats-Msg-Id only within its
  duplicate window) or appended twice to the chain (the event's marker should make that impossible). A
  replayed dead letter's copy has a Nats-Msg-Id of its own (vaultpay.events.dead_letters): not a repeat.

The cloud is shared with the other e2e tests, and gateway request logs reach the stream without an outbox,
so the stream and the chain hold more than the outbox tables: the proof is relative to the outbox items
that exist once the run has settled, and duplicates are looked for among every id.

How long an outbox item lives: no code deletes one (only the rescue of a given-up relay batch and the sweeper
change one, setting and clearing `pending`); DynamoDB TTL removes it OUTBOX_RETENTION_S (7 days) after it was
written, published or not, since `expires_at` is set when it is written. The test cloud is in memory and new
for each session, so no item can expire during a run. On a long-lived cloud an expired item drops out of the
comparison: it is never counted lost, and one that expired unpublished (an outage of over a week) is beyond
what this proof can see. The stream keeps messages for 30 days, longer than the outbox keeps items, so the
message of an item still there is still there too, unless `max_bytes` discarded it, which the ledger reports
as lost: it could no longer be replayed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.errors as nats_errors

from vaultpay.audit.consumer import DURABLE as AUDIT_DURABLE
from vaultpay.events.jetstream import ConsumerLag
from vaultpay.events.jetstream_config import EVENTS_STREAM, load_jetstream_config
from vaultpay.events.relay import MSG_ID_HEADER
from vaultpay.shared.outbox import OUTBOX_KIND

ROOT = Path(__file__).resolve().parents[2]
JETSTREAM_CONFIG = ROOT / "infra" / "nats" / "jetstream.json"
FETCH_BATCH = 1000
POLL_S = 1.0
SHOWN = 5  # ids quoted in a problem


# ---- the comparison ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """Outbox ids against the stream's Nats-Msg-Ids and the chain's event ids."""

    outbox: int
    stream_messages: int
    audit_records: int
    in_stream: int  # outbox ids with a message in the stream
    in_audit: int  # outbox ids with a record in the chain
    missing_from_stream: tuple[str, ...]
    missing_from_audit: tuple[str, ...]  # in the stream, not in the chain, and not dead-lettered
    dead_lettered: tuple[str, ...]  # not in the chain, but the audit consumer's dead letter says why
    twice_in_stream: Mapping[str, int]  # id -> messages, for every id stored more than once
    twice_in_audit: Mapping[str, int]  # id -> records

    @property
    def lost(self) -> tuple[str, ...]:
        return tuple(sorted({*self.missing_from_stream, *self.missing_from_audit}))

    @property
    def duplicated(self) -> tuple[str, ...]:
        return tuple(sorted({*self.twice_in_stream, *self.twice_in_audit}))


def compare(
    outbox_ids: Iterable[str],
    stream_ids: Iterable[str],
    audit_ids: Iterable[str],
    dead_lettered: Iterable[str] = (),
) -> Comparison:
    """`stream_ids` and `audit_ids` have one entry per message and per record, so a repeat is a duplicate;
    `dead_lettered` are the ids the audit consumer gave up on (VAULTPAY_DLQ)."""
    outbox = set(outbox_ids)
    in_stream = Counter(stream_ids)
    in_audit = Counter(audit_ids)
    gave_up = set(dead_lettered)
    missing_stream = sorted(i for i in outbox if i not in in_stream)
    not_appended = sorted(i for i in outbox if i in in_stream and i not in in_audit)
    return Comparison(
        outbox=len(outbox),
        stream_messages=in_stream.total(),
        audit_records=in_audit.total(),
        in_stream=len(outbox) - len(missing_stream),
        in_audit=sum(1 for i in outbox if i in in_audit),
        missing_from_stream=tuple(missing_stream),
        missing_from_audit=tuple(i for i in not_appended if i not in gave_up),
        dead_lettered=tuple(i for i in not_appended if i in gave_up),
        twice_in_stream={i: n for i, n in in_stream.items() if n > 1},
        twice_in_audit={i: n for i, n in in_audit.items() if n > 1},
    )


# ---- what the event path looked like once it settled ------------------------------------------------


@dataclass
class EventPath:
    """One reading of the event path: the comparison, the durable consumers' backlog, the dead letters."""

    comparison: Comparison
    consumers: dict[str, ConsumerLag]
    dead_letters: list[str]  # "<consumer> gave up on <event id> (<reason>)"
    unmarked: int  # outbox items still pending: left by the rescue for the sweeper to re-publish
    without_msg_id: int  # stream messages with no Nats-Msg-Id header at all
    waited_s: float = 0.0  # from the first read to this one's end
    drained: bool = False

    def figures(self) -> dict[str, Any]:
        c = self.comparison
        return {
            "outbox items": c.outbox,
            "outbox items still pending (the sweeper's work)": self.unmarked,
            "stream messages": c.stream_messages + self.without_msg_id,
            "stream messages of outbox items": c.in_stream,
            "audit records": c.audit_records,
            "audit records of outbox items": c.in_audit,
            "events lost": len(c.lost),
            "events duplicated": len(c.duplicated),
            "outbox events dead-lettered (accounted for)": len(c.dead_lettered),
            "dead letters in VAULTPAY_DLQ": len(self.dead_letters),
            "consumers at the end": {name: lag.as_dict() for name, lag in self.consumers.items()},
            "event path drained": self.drained,
            "waited for the event path s": round(self.waited_s, 1),
        }

    def problems(self) -> list[str]:
        c = self.comparison
        problems = []
        if c.lost:
            problems.append(
                f"{len(c.lost)} outbox events lost ({len(c.missing_from_stream)} not in {EVENTS_STREAM},"
                f" {len(c.missing_from_audit)} not in the audit log): {list(c.lost[:SHOWN])}"
            )
        if c.duplicated:
            stream = dict(list(c.twice_in_stream.items())[:SHOWN])
            audit = dict(list(c.twice_in_audit.items())[:SHOWN])
            problems.append(
                f"{len(c.duplicated)} event ids stored more than once: in {EVENTS_STREAM} {stream},"
                f" in the audit log {audit}"
            )
        if self.without_msg_id:
            problems.append(f"{self.without_msg_id} messages in {EVENTS_STREAM} have no {MSG_ID_HEADER}")
        for name, lag in self.consumers.items():
            if lag.pending or lag.ack_pending:
                problems.append(
                    f"consumer {name} did not resume: {lag.pending} pending, {lag.ack_pending} unacknowledged"
                    f" after {self.waited_s:.0f} s"
                )
        if self.dead_letters:
            problems.append(f"{len(self.dead_letters)} dead letters: {self.dead_letters[:SHOWN]}")
        return problems


# ---- reading the three sides from a local cloud -----------------------------------------------------


class EventLedger:
    """Reads the outbox tables, the VAULTPAY stream and the audit chain of a running local cloud.

    Reads after the first are cheap, so a wait can poll: the stream is read headers only, through one
    ephemeral consumer that goes on where the last read stopped, and the chain from the last seq read (it
    only grows). Only the outbox tables are scanned whole each time: their items have no order to resume
    from."""

    def __init__(self, cloud: Any) -> None:
        self._cloud = cloud
        self._dynamodb = cloud.client("dynamodb")
        self._tables = _outbox_tables(cloud)
        self._audit_table = _stack_output(cloud, "AuditTableName")
        self._durables = [c.name for c in load_jetstream_config(JETSTREAM_CONFIG).consumers]
        self._loop = asyncio.new_event_loop()
        self._nc: Any = None
        self._subscription: Any = None
        self._consumer = ""
        self._stream_seq = 0  # the last stream sequence read
        self._stream_ids: list[str] = []
        self._without_msg_id = 0
        self._audit_ids: list[str] = []
        self._audit_after: dict[str, dict[str, Any]] = {}  # per chain, the key of the last record read

    def settle(self, timeout_s: float) -> EventPath:
        """Waits, at most `timeout_s`, until every outbox item is in the stream and in the chain (or
        dead-lettered) and every durable consumer has nothing pending nor unacknowledged; then returns the
        last reading, drained or not, and closes the ledger.

        A read that fails (NATS restarting, a node of a cluster gone) is tried again until the deadline:
        what was read before it is kept, so the next read goes on from there."""
        began = time.monotonic()
        deadline = began + timeout_s
        try:
            while True:
                try:
                    path = self.read()
                except (OSError, nats_errors.Error) as exc:  # nats-py's timeouts are OSErrors too
                    if time.monotonic() >= deadline:
                        raise AssertionError(f"the event path could not be read: {exc!r}") from exc
                else:
                    path.waited_s = time.monotonic() - began  # the reads' own time included
                    c = path.comparison
                    resumed = all(not (lag.pending or lag.ack_pending) for lag in path.consumers.values())
                    path.drained = not c.missing_from_stream and not c.missing_from_audit and resumed
                    if path.drained or time.monotonic() >= deadline:
                        return path
                time.sleep(POLL_S)
        finally:
            self.close()

    def read(self) -> EventPath:
        # Outbox first: any item read is then either in what the stream and chain reads see, or late.
        outbox, unmarked = self._outbox()
        consumers, dead_letters = self._loop.run_until_complete(self._read_nats())
        self._read_audit()
        gave_up = [event_id for consumer, event_id, _ in dead_letters if consumer == AUDIT_DURABLE]
        return EventPath(
            comparison=compare(outbox, self._stream_ids, self._audit_ids, gave_up),
            consumers=consumers,
            dead_letters=[
                f"{consumer} gave up on {event_id} ({why})" for consumer, event_id, why in dead_letters
            ],
            unmarked=unmarked,
            without_msg_id=self._without_msg_id,
        )

    def close(self) -> None:
        if self._nc is not None:
            self._loop.run_until_complete(self._disconnect())
        self._loop.close()

    # ---- DynamoDB -----------------------------------------------------------------------------------

    def _outbox(self) -> tuple[list[str], int]:
        """Every outbox item's event id, all tables scanned at once; and how many are still pending."""
        with ThreadPoolExecutor(len(self._tables)) as pool:
            scans = list(pool.map(self._scan_outbox, self._tables))
        ids = [event_id for scan in scans for event_id, _ in scan]
        return ids, sum(1 for scan in scans for _, pending in scan if pending)

    def _scan_outbox(self, table: str) -> list[tuple[str, bool]]:
        request: dict[str, Any] = {
            "TableName": table,
            "FilterExpression": "#kind = :outbox",
            "ProjectionExpression": "event_id, #pending",
            "ExpressionAttributeNames": {"#kind": "kind", "#pending": "pending"},
            "ExpressionAttributeValues": {":outbox": {"S": OUTBOX_KIND}},
            "ConsistentRead": True,
        }
        items = []
        while True:
            page = self._dynamodb.scan(**request)
            items += [(item["event_id"]["S"], "pending" in item) for item in page.get("Items", [])]
            if not page.get("LastEvaluatedKey"):
                return items
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _read_audit(self) -> None:
        """Every chain's records after the last one read (vaultpay.audit.store: pk CHAIN or CHAIN#<k>, sk
        SEQ#<seq>; the chains the table has had: chains_written)."""
        from vaultpay.audit.store import DynamoDBAuditStore, chain_pk

        for chain in range(DynamoDBAuditStore(self._dynamodb, self._audit_table).chains_written()):
            self._read_chain(chain_pk(chain))

    def _read_chain(self, pk: str) -> None:
        request: dict[str, Any] = {
            "TableName": self._audit_table,
            "KeyConditionExpression": "pk = :chain",
            "ExpressionAttributeValues": {":chain": {"S": pk}},
            "ProjectionExpression": "pk, sk, audit_id",
            "ConsistentRead": True,
        }
        while True:
            if pk in self._audit_after:
                request["ExclusiveStartKey"] = self._audit_after[pk]
            page = self._dynamodb.query(**request)
            items = page.get("Items", [])
            self._audit_ids += [item["audit_id"]["S"] for item in items]
            if items:
                self._audit_after[pk] = {"pk": items[-1]["pk"], "sk": items[-1]["sk"]}
            if not page.get("LastEvaluatedKey"):
                return

    # ---- NATS ---------------------------------------------------------------------------------------

    async def _read_nats(self) -> tuple[dict[str, ConsumerLag], list[tuple[str, str, str]]]:
        from vaultpay.events.dead_letters import list_dead_letters

        js = (await self._connected()).jetstream(timeout=5)
        await self._read_stream(js)
        consumers = {}
        for durable in self._durables:
            info = await js.consumer_info(EVENTS_STREAM, durable)
            consumers[durable] = ConsumerLag(
                pending=int(info.num_pending or 0),
                ack_pending=int(info.num_ack_pending or 0),
                redelivered=int(info.num_redelivered or 0),
            )
        letters = [
            (letter.consumer, letter.event_id or f"{letter.stream}:{letter.stream_seq}", letter.reason)
            for letter in await list_dead_letters(js)
        ]
        return consumers, letters

    async def _read_stream(self, js: Any) -> None:
        """Reads the stream's new messages, headers only, up to its last sequence when the read began."""
        last = int((await js.stream_info(EVENTS_STREAM)).state.last_seq or 0)
        while self._stream_seq < last:
            if self._subscription is None:
                await self._subscribe(js)
            try:
                messages = await self._subscription.fetch(FETCH_BATCH, timeout=2)
            except TimeoutError:  # nats-py's own TimeoutError is one too
                return  # the rest of the range was deleted or aged out: nothing more to read now
            except nats_errors.Error:
                # The ephemeral consumer may be gone (its server restarted): the next read makes a new one
                # that starts after the last message read.
                self._subscription = None
                raise
            for message in messages:
                msg_id = (message.headers or {}).get(MSG_ID_HEADER)
                if msg_id:
                    self._stream_ids.append(msg_id)
                else:
                    self._without_msg_id += 1
                self._stream_seq = max(self._stream_seq, int(message.metadata.sequence.stream))

    async def _subscribe(self, js: Any) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            headers_only=True,  # Nats-Msg-Id is all the ledger needs; payloads would be most of the bytes
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self._stream_seq + 1,
            inactive_threshold=60.0,  # a ledger that dies leaves nothing behind for long
            mem_storage=True,
        )
        info = await js.add_consumer(EVENTS_STREAM, config)
        self._consumer = info.name
        self._subscription = await js.pull_subscribe_bind(consumer=info.name, stream=EVENTS_STREAM)

    async def _connected(self) -> Any:
        if self._nc is None or self._nc.is_closed:
            self._nc = await nats.connect(
                self._cloud.nats, name="bank-test-ledger", **self._cloud.nats_login()
            )
            self._subscription = None
        return self._nc

    async def _disconnect(self) -> None:
        with contextlib.suppress(Exception):
            if self._consumer:
                await self._nc.jetstream(timeout=5).delete_consumer(EVENTS_STREAM, self._consumer)
        with contextlib.suppress(Exception):
            await self._nc.close()


def _outbox_tables(cloud: Any) -> list[str]:
    """The domain tables with an outbox: the sweeper's OUTBOX_TABLES, the project's own list of them."""
    variables = cloud.client("lambda").get_function_configuration(
        FunctionName=cloud.function_name("OutboxSweeperFunction")
    )["Environment"]["Variables"]
    return [name.strip() for name in variables["OUTBOX_TABLES"].split(",") if name.strip()]


def _stack_output(cloud: Any, name: str) -> str:
    status = json.loads(urllib.request.urlopen(cloud.edge + "/_localcloud/status", timeout=10).read())
    return str(next(s["outputs"][name] for s in status["stacks"] if name in s["outputs"]))

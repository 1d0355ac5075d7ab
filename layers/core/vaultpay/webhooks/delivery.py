"""Delivery's use cases: turn an event into the deliveries and feed entries of the customers it concerns, and
send what is due, each endpoint on its own worker so that a slow or dead one never holds up another.

At least once. A delivery is written (one per event and webhook: a redelivered event finds it there) before
the event is acked; it is claimed with a short lease before each attempt, so two runs never send it at the
same moment, and its outcome is written after the attempt: a crash in between sends it again later, and
receivers de-duplicate by `VaultPay-Event-Id`. One endpoint's due deliveries are sent in event order.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from typing import Any

from vaultpay.shared import kernel
from vaultpay.shared.errors import VaultPayError
from vaultpay.webhooks.errors import WebhookUrlNotAllowed
from vaultpay.webhooks.model import (
    DELIVERY_ID_HEADER,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    AttemptResult,
    Delivery,
    DeliveryStatus,
    Resolver,
    RetryPolicy,
    SigningSecrets,
    UrlPolicy,
    Webhook,
    WebhookStatus,
    account_owner_claim,
    accounts_named,
    after_attempt,
    customer_view,
    is_event_id,
    parse_url,
    recipients,
    resolve_checked,
    signature_header,
)
from vaultpay.webhooks.ports import AlreadyExists, SecretCipher, Sender, WebhookStore
from vaultpay.webhooks.service import secret_context

# A claimed delivery is someone else's for this long: more than one attempt's timeout and its write.
LEASE_S = 60.0
DUE_BATCH = 200
# At most this many of one endpoint's due deliveries in one pass: one endpoint's backlog never fills a pass.
PER_ENDPOINT = 20
# An endpoint's worker starts no attempt after this long in one pass: a slow endpoint ends the pass no later
# than this plus one attempt's timeout, so the next pass (the others' next deliveries) is not held up.
ENDPOINT_BUDGET_S = 10.0
MAX_WORKERS = 16
# No new attempt when less than this is left of the invocation: an attempt takes at most its 10 s timeout.
RESERVE_MS = 15_000


@dataclass
class DeliveryReport:
    """What one sending pass did: attempts made, those that succeeded, failed (to be retried), deliveries
    given up (FAILED), endpoints disabled, and the age in seconds of the oldest due delivery it saw."""

    attempted: int = 0
    succeeded: int = 0
    failed_attempts: int = 0
    failed: int = 0
    disabled: int = 0
    oldest_pending_s: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_FAILED = frozenset({"retry", "failed", "disabled"})


def _count(outcomes: list[str], report: DeliveryReport) -> None:
    for outcome in outcomes:
        report.attempted += outcome != "skipped"
        report.succeeded += outcome == "succeeded"
        report.failed_attempts += outcome in _FAILED
        report.failed += outcome in ("failed", "disabled")
        report.disabled += outcome == "disabled"


class InvalidEvent(ValueError):
    """A message that is not a CloudEvent this consumer can read."""


class DeliveryService:
    def __init__(
        self,
        store: WebhookStore,
        cipher: SecretCipher,
        sender: Sender,
        *,
        resolve: Resolver,
        policy: UrlPolicy,
        retry: RetryPolicy,
        clock: Callable[[], float] = kernel.now,
        jitter: Callable[[], float] = random.random,
        log: Any = None,
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._sender = sender
        self._resolve = resolve
        self._policy = policy
        self._retry = retry
        self._clock = clock
        self._jitter = jitter
        self._log = log

    # ---- events in -------------------------------------------------------------------------------------

    def record(self, envelope: Mapping[str, Any]) -> int:
        """Learns what the event says of account owners, then writes its customer view to the feed of every
        customer it concerns and a PENDING delivery for each of their webhooks that wants its type. Safe to
        repeat (the writes are keyed by the event id). Returns how many deliveries it wrote."""
        event_id, event_type = envelope.get("id"), envelope.get("type")
        if not is_event_id(event_id) or not isinstance(event_type, str):
            raise InvalidEvent("not a CloudEvent with a VaultPay event id and a type")
        claim = account_owner_claim(envelope)
        if claim is not None:
            self._store.set_owner(*claim)
        named = accounts_named(envelope)
        owners = self._store.owners(sorted(named)) if named else {}
        written = 0
        now = self._clock()
        for user_id in sorted(recipients(envelope, owners)):
            body = json.dumps(customer_view(envelope, user_id, owners), separators=(",", ":"), sort_keys=True)
            self._store.add_feed_event(user_id, str(event_id), event_type, body)
            for webhook in self._store.list_webhooks(user_id):
                if not webhook.wants(event_type):
                    continue
                delivery = Delivery(
                    webhook_id=webhook.webhook_id,
                    user_id=user_id,
                    event_id=str(event_id),
                    type=event_type,
                    body=body,
                    status=DeliveryStatus.PENDING,
                    attempts=0,
                    created_at=kernel.rfc3339(now),
                    next_attempt_at=now,
                )
                try:
                    self._store.add_delivery(delivery)
                except AlreadyExists:
                    continue
                written += 1
        return written

    # ---- deliveries out --------------------------------------------------------------------------------

    def deliver_due(self, *, remaining_ms: Callable[[], int], workers: int = MAX_WORKERS) -> DeliveryReport:
        """Sends what is due until nothing is, or the invocation's end is near: one worker per endpoint at a
        time, each endpoint's deliveries in order (PER_ENDPOINT at a go). The due index is read again whenever
        a worker is free, so a slow endpoint holds up its own deliveries only. An endpoint rests for the rest
        of the run after a failed attempt (the rest of its backlog would most likely fail too: a dead endpoint
        costs a run one timeout, not one per delivery), or when all it was handed was claimed elsewhere."""
        report = DeliveryReport()
        busy: dict[str, Future[list[str]]] = {}
        resting: set[str] = set()
        first = True
        with ThreadPoolExecutor(max_workers=workers) as pool:
            while True:
                for webhook_id in [w for w, future in busy.items() if future.done()]:
                    outcomes = busy.pop(webhook_id).result()
                    _count(outcomes, report)
                    if not outcomes or outcomes[-1] in _FAILED or set(outcomes) == {"skipped"}:
                        resting.add(webhook_id)
                if remaining_ms() >= RESERVE_MS and len(busy) < workers:
                    now = self._clock()
                    due = self._store.due_deliveries(now, limit=DUE_BATCH, per_endpoint=PER_ENDPOINT)
                    if first and due:
                        oldest = min(kernel.epoch_seconds(d.created_at) for d in due)
                        report.oldest_pending_s = int(max(0.0, now - oldest))
                    first = False
                    queues: dict[str, list[Delivery]] = {}
                    for delivery in due:
                        if delivery.webhook_id not in busy and delivery.webhook_id not in resting:
                            queues.setdefault(delivery.webhook_id, []).append(delivery)
                    for webhook_id, queue in list(queues.items())[: workers - len(busy)]:
                        busy[webhook_id] = pool.submit(self._run, queue, remaining_ms)
                if not busy:
                    return report
                wait(busy.values(), timeout=1.0, return_when=FIRST_COMPLETED)

    def _run(self, queue: list[Delivery], remaining_ms: Callable[[], int]) -> list[str]:
        """One endpoint's worker: its due deliveries in order, until one fails, time runs low, or it has
        spent ENDPOINT_BUDGET_S (a slow endpoint yields its worker slot)."""
        outcomes: list[str] = []
        started = time.monotonic()
        for delivery in queue:
            if remaining_ms() < RESERVE_MS or time.monotonic() - started > ENDPOINT_BUDGET_S:
                break
            outcome = self._attempt(delivery)
            outcomes.append(outcome)
            if outcome in _FAILED:
                break
        return outcomes

    def _attempt(self, delivery: Delivery) -> str:
        now = self._clock()
        if not self._store.claim_delivery(delivery, now=now, lease_s=LEASE_S):
            return "skipped"
        webhook = self._store.get_webhook(delivery.user_id, delivery.webhook_id)
        if webhook is None or webhook.status is WebhookStatus.DISABLED:
            gone = "the webhook was deleted" if webhook is None else "the webhook is disabled"
            self._store.put_delivery(
                replace(delivery, status=DeliveryStatus.FAILED, next_attempt_at=None, last_error=gone)
            )
            return "failed"
        result = self._send(webhook, delivery, now)
        after = after_attempt(delivery, result, self._retry, now=self._clock(), jitter=self._jitter())
        self._store.put_delivery(after)
        if result.succeeded:
            if webhook.failing_since is not None:
                self._store.set_health(webhook, failing_since=None, disabled_at=None)
            return "succeeded"
        failing_since = webhook.failing_since if webhook.failing_since is not None else now
        if self._retry.disables(failing_since, self._clock()):
            self._store.set_health(webhook, failing_since=failing_since, disabled_at=kernel.rfc3339(now))
            if self._log is not None:
                self._log.warning("webhook disabled", extra={"webhook_id": webhook.webhook_id})
            return "disabled"
        if webhook.failing_since is None:
            self._store.set_health(webhook, failing_since=failing_since, disabled_at=None)
        return "retry" if after.status is DeliveryStatus.PENDING else "failed"

    def _send(self, webhook: Webhook, delivery: Delivery, now: float) -> AttemptResult:
        try:
            target = parse_url(webhook.url, self._policy)
            # Resolved and checked at every attempt: a name may point somewhere else since registration.
            addresses = resolve_checked(target, self._policy, self._resolve)
        except WebhookUrlNotAllowed as exc:
            return AttemptResult(None, str(exc.errors[0].message) if exc.errors else "URL not allowed")
        except OSError:
            return AttemptResult(None, "the host name did not resolve")
        try:
            secrets = SigningSecrets(
                current=self._cipher.decrypt(webhook.secret_enc, context=secret_context(webhook, "current")),
                previous=(
                    self._cipher.decrypt(
                        webhook.previous_secret_enc, context=secret_context(webhook, "previous")
                    )
                    if webhook.previous_secret_enc
                    else None
                ),
                previous_until=webhook.previous_until,
            )
        except VaultPayError:
            # KMS unreachable or refusing: nothing was sent, the delivery is simply tried again later.
            return AttemptResult(None, "VaultPay could not sign the delivery")
        body = delivery.body.encode("utf-8")
        timestamp = int(now)
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: delivery.event_id,
            DELIVERY_ID_HEADER: delivery.delivery_id,
            SIGNATURE_HEADER: signature_header(secrets.active(now), timestamp, body),
            "User-Agent": "VaultPay-Webhooks/1",
        }
        return self._sender.send(target, addresses, body, headers)

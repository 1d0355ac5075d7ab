"""Fixed-window rate limiting over an atomic counter store (DynamoDB in production, in memory in tests)."""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from typing import Protocol

from vaultpay.shared.errors import RateLimited

KEY_PREFIX = "RL"
_SCOPE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")


@dataclass(frozen=True, slots=True)
class Window:
    """At most `limit` events per `period_s` seconds (windows aligned on multiples of `period_s`)."""

    limit: int
    period_s: int

    def __post_init__(self) -> None:
        if self.limit < 1 or self.period_s < 1:
            raise ValueError("a rate-limit window needs a positive limit and period")


class CounterStore(Protocol):
    """Per-key counters that the store itself increments atomically.

    On DynamoDB each method is one request on an item keyed by `key`:
    `increment` is `UpdateItem` with `ADD #count :one SET #expires_at = :expires_at` and
    `ReturnValues=UPDATED_NEW` (ADD creates the item at 0 first, so no read-modify-write race);
    `get` is a strongly consistent `GetItem` (0 when there is no item).
    `expires_at` is Unix seconds for the table's TTL attribute: it only reclaims space, since a
    window's key is never read again once the window has passed, however late TTL deletes it.
    """

    def increment(self, key: str, expires_at: int) -> int:
        """Add one to the counter at `key` and return the new count."""
        ...

    def get(self, key: str) -> int:
        """The current count at `key` (0 if none)."""
        ...

    def increment_below(self, key: str, limit: int, expires_at: int) -> int | None:
        """Add one only while the count is below `limit` (one conditional write); the new count, or None
        when the count had already reached it. On DynamoDB: the same UpdateItem as `increment` with
        `ConditionExpression: attribute_not_exists(#count) OR #count < :limit`."""
        ...

    def decrement(self, key: str) -> None:
        """Take one back from an existing counter (ADD -1, only if the item exists)."""
        ...


def window_key(scope: str, identity: str, now: float, period_s: int) -> tuple[str, int, int]:
    """The counter key of the window holding `now`, the window's start and when its counter may go.

    `identity` names who is counted: a user id, a blind index, a challenge id, a source IP. Never a raw
    email or phone number: keys are stored and logged in clear.
    """
    if not _SCOPE.fullmatch(scope):
        raise ValueError("a rate-limit scope is a short lower-case name")
    if not identity:
        raise ValueError("a rate-limit identity cannot be empty")
    if period_s < 1:
        raise ValueError("a rate-limit period must be positive")
    window_start = int(now) // period_s * period_s
    expires_at = window_start + period_s
    # The scope cannot hold '#' and the identity comes last: no two (scope, identity) pairs share a key.
    return f"{KEY_PREFIX}#{scope}#{window_start}#{identity}", window_start, expires_at


@dataclass(frozen=True, slots=True)
class Reservation:
    """An attempt counted in a window before it was evaluated (see `RateLimiter.reserve`)."""

    key: str


class RateLimiter:
    """Counts events per (scope, identity) in fixed windows and refuses those beyond a window's limit.

    Fixed windows allow up to twice the limit across one window boundary; for abuse control (password
    guessing, MFA, refresh, transfers) that is an accepted trade for one atomic write per check.
    """

    def __init__(self, store: CounterStore) -> None:
        self._store = store

    def hit(self, scope: str, identity: str, window: Window, *, now: float) -> int:
        """Count one event; RateLimited if it is beyond the limit. Returns the count in this window.

        Refused events are counted too: hammering during a blocked window does not get a client anywhere,
        and the block still ends with the window.
        """
        key, window_start, expires_at = window_key(scope, identity, now, window.period_s)
        count = self._store.increment(key, expires_at)
        if count > window.limit:
            raise self._refusal(window_start + window.period_s, now)
        return count

    def check(self, scope: str, identity: str, window: Window, *, now: float) -> int:
        """RateLimited if the limit is already reached, without counting; returns the current count.

        For limits on failures (wrong passwords): `check` before the attempt, `hit` only when it fails.
        """
        key, window_start, _ = window_key(scope, identity, now, window.period_s)
        count = self._store.get(key)
        if count >= window.limit:
            raise self._refusal(window_start + window.period_s, now)
        return count

    def reserve(self, scope: str, identity: str, window: Window, *, now: float) -> Reservation:
        """Count an attempt *before* evaluating it; RateLimited when the window's budget is spent.

        For limits on failures (wrong passwords, wrong codes): the budget counts the attempts being
        evaluated and those that failed, and `release` gives back one that succeeded. The count and the
        decision are one conditional write, so however many requests arrive at once, at most `limit` of
        them are ever evaluated in a window (`check` then `hit` let every concurrent request through).
        A refused attempt is not counted: the block still ends with the window.
        """
        key, window_start, expires_at = window_key(scope, identity, now, window.period_s)
        if self._store.increment_below(key, window.limit, expires_at) is None:
            raise self._refusal(window_start + window.period_s, now)
        return Reservation(key)

    def release(self, reservation: Reservation) -> None:
        """Give back a reserved attempt that succeeded (a successful login costs no failure budget)."""
        self._store.decrement(reservation.key)

    @staticmethod
    def _refusal(window_end: int, now: float) -> RateLimited:
        # The message names neither the scope nor the identity: it reaches the client as the detail.
        return RateLimited("too many requests; retry later", retry_after=math.ceil(window_end - now))


class FakeCounterStore:
    """An in-memory CounterStore for unit tests, with the same atomic semantics."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.expiries: dict[str, int] = {}
        self._lock = threading.Lock()

    def increment(self, key: str, expires_at: int) -> int:
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            self.expiries[key] = expires_at
            return self.counts[key]

    def get(self, key: str) -> int:
        with self._lock:
            return self.counts.get(key, 0)

    def increment_below(self, key: str, limit: int, expires_at: int) -> int | None:
        with self._lock:
            if self.counts.get(key, 0) >= limit:
                return None
            self.counts[key] = self.counts.get(key, 0) + 1
            self.expiries[key] = expires_at
            return self.counts[key]

    def decrement(self, key: str) -> None:
        with self._lock:
            if key in self.counts:
                self.counts[key] -= 1

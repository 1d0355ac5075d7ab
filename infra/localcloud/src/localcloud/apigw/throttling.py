"""Stage throttling: a token bucket per stage, as API Gateway's rate and burst limits."""

from __future__ import annotations

import math
from collections.abc import Callable

Clock = Callable[[], float]


class TokenBucket:
    """Stage throttling: `burst` tokens, refilled at `rate` per second."""

    def __init__(self, rate: float, burst: int | None, clock: Clock) -> None:
        self._rate = max(rate, 0.0)
        self._capacity = float(burst if burst is not None else max(1, math.ceil(rate)))
        self._tokens = self._capacity
        self._clock = clock
        self._last = clock()

    def try_acquire(self) -> bool:
        now = self._clock()
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
            self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

"""Clocks to inject where the code takes `clock: Callable[[], float]`: one a test sets, one that ticks."""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass
class ManualClock:
    """Stands at `now` until the test moves it (`clock.now += 301`)."""

    now: float

    def __call__(self) -> float:
        return self.now


class TickingClock:
    """A millisecond later at every call, from `start`: each write gets its own, ordered time."""

    def __init__(self, start: float = 1_795_000_000.0) -> None:
        self._ticks = itertools.count()
        self._start = start

    def __call__(self) -> float:
        return self._start + next(self._ticks) * 0.001

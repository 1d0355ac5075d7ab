"""Built-once values: the process-wide caches of settings, clients and services, and one way to clear them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")

_CLEARS: list[Callable[[], None]] = []


def cached(make: Callable[..., _T]) -> functools._lru_cache_wrapper[_T]:
    """`functools.cache`, registered so that `clear_cached` (vaultpay.bootstrap.reset) forgets it: a warm
    Lambda reuses what it built, and a test starts from nothing without naming each cache."""
    wrapper = functools.cache(make)
    _CLEARS.append(wrapper.cache_clear)
    return wrapper


def clear_cached() -> None:
    """Forgets every value a `cached` function has built in this process."""
    for clear in _CLEARS:
        clear()


class LazyProxy:
    """An object asked of `make` at each attribute access (so `make` is a cached builder): a function that
    never calls a client never pays for it (an AWS client costs 50-100 ms of a cold start, most of it
    loading botocore's service model), and a function is told only of the resources it uses (a resource
    name is read when its adapter is first used)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make

    def __getattr__(self, name: str) -> Any:
        return getattr(self._make(), name)

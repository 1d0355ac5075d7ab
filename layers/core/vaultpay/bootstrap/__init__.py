"""The composition root: the only place that reads settings and builds adapters and services, lazily.

One module per domain (`vaultpay.bootstrap.auth`, `.accounts`, ...); handlers import their builders from it.
Every builder is cached for the process (a warm Lambda reuses it) and imports what it needs at first use,
so importing a handler builds nothing.
"""

from __future__ import annotations


def reset() -> None:
    """Forgets every cached setting, client and service (tests: the next use reads the environment again)."""
    from vaultpay.shared.lazy import clear_cached

    clear_cached()

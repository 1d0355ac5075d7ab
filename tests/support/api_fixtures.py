"""The HTTP tests' fixtures (`api`, `admin_credentials`, `admin`), shared by tests/e2e and tests/security.

Each conftest imports them, so both folders draw source addresses from this one generator: no two clients of
one test session share a per-IP rate-limit budget, whichever folder they are in.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from support.http import ApiClient

# Rate limits are per source IP: every client gets its own 127.0.x.y so tests do not share a budget.
_addresses = (f"127.0.{a}.{b}" for a, b in itertools.product(range(1, 250), range(2, 250)))


@pytest.fixture
def api(local_cloud: Any) -> Callable[..., ApiClient]:
    """`api()` is a client on the project's API from a fresh source address; `api(device_id=...)` too."""

    def make(device_id: str = "device-e2e-1") -> ApiClient:
        return ApiClient(local_cloud.api, next(_addresses), device_id)

    return make


@pytest.fixture(scope="module")
def admin_credentials(local_cloud: Any) -> tuple[str, str]:
    from support.bank import create_admin

    return create_admin(local_cloud)


_signed_in_admins: dict[tuple[str, str], ApiClient] = {}


@pytest.fixture
def admin(api: Callable[..., ApiClient], admin_credentials: tuple[str, str]) -> ApiClient:
    """The module's admin, signed in once (a TOTP code is accepted only once per 30-second step)."""
    from support.bank import signed_in_admin

    if admin_credentials not in _signed_in_admins:
        _signed_in_admins[admin_credentials] = signed_in_admin(api, admin_credentials)
    return _signed_in_admins[admin_credentials]

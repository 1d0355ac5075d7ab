"""The end-to-end tests' HTTP clients (tests/support/http.py): each test speaks from its own address.

The fixtures live in tests/support/api_fixtures.py, shared with tests/security.
"""

from __future__ import annotations

from support.api_fixtures import admin, admin_credentials, api
from support.http import ApiClient, Reply

__all__ = ["ApiClient", "Reply", "admin", "admin_credentials", "api"]

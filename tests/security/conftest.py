"""The attack tests' HTTP clients: the same `api`, `admin_credentials` and `admin` fixtures as tests/e2e."""

from __future__ import annotations

from support.api_fixtures import admin, admin_credentials, api

__all__ = ["admin", "admin_credentials", "api"]

"""OWASP API9:2023 Improper Inventory Management: every route the API answers is documented, and nothing
else answers: no old version, no internal or debug route, no route the document forgot.

The inventory is one chain: template.yaml wires the routes, infra/openapi/build.py builds the document from
the handlers and the template (tests/component/test_openapi_document.py keeps them equal), and the running
API serves that document at /openapi.json. Here the running API is probed from outside.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.routes import template_routes

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# API Gateway's answer when no route matches (MISSING_AUTHENTICATION_TOKEN, rendered as a 404 problem).
NO_ROUTE = "MissingAuthenticationTokenException"
# Where an attacker looks for what the inventory forgot: other versions, internal and operator functions,
# framework and debug defaults, the local cloud's own endpoints.
SHADOW_ROUTES = [
    ("GET", "/v0/accounts"),
    ("GET", "/v2/accounts"),
    ("GET", "/accounts"),
    ("GET", "/v1/internal/accounts/resolve"),
    ("POST", "/v1/accounts/resolve"),
    ("POST", "/v1/admin/users"),
    ("POST", "/v1/admin/create-user"),
    ("GET", "/v1/admin/users"),
    ("POST", "/v1/transfers/tr_0/approve"),
    ("POST", "/v1/ops/reconcile"),
    ("GET", "/v1/debug"),
    ("GET", "/swagger.json"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/.env"),
    ("GET", "/_ops/"),
    ("GET", "/_localcloud/status"),
    ("GET", "/_localstack/health"),
    ("POST", "/2015-03-31/functions/CreateAdminFunction/invocations"),
]


@pytest.fixture(scope="module")
def served(local_cloud: Any) -> dict[str, Any]:
    from support.http import ApiClient

    reply = ApiClient(local_cloud.api, "127.0.0.1").get("/openapi.json", device=None, token=None)
    assert reply.status == 200, reply.body
    return dict(reply.body)


def _operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}


def test_the_served_document_lists_exactly_the_routes_the_template_wires(served: dict[str, Any]) -> None:
    committed = json.loads((ROOT / "infra" / "openapi" / "openapi.json").read_text())
    assert served == committed, "the API serves another document than infra/openapi/openapi.json"
    assert _operations(served) == {(r.method, r.path) for r in template_routes()}
    assert served["info"]["version"], "the document names no version"


def test_every_documented_route_is_live_and_nothing_else_answers(
    api: Callable[..., Any], served: dict[str, Any]
) -> None:
    client = api()
    for method, path in sorted(_operations(served)):
        concrete = path.replace("{account_id}", "acc_" + uuid.uuid4().hex)
        concrete = concrete.replace("{transfer_id}", "tr_" + uuid.uuid4().hex)
        concrete = concrete.replace("{user_id}", "usr_" + uuid.uuid4().hex)
        reply = client.request(method, concrete, {} if method == "POST" else None, token=None)
        assert reply.header("x-amzn-ErrorType") != NO_ROUTE, (method, path, reply.status)
    for method, path in SHADOW_ROUTES:
        reply = client.request(method, path, {} if method == "POST" else None, token=None)
        assert reply.status == 404, (method, path, reply.status, reply.body)
        assert reply.header("x-amzn-ErrorType") == NO_ROUTE, (method, path, reply.headers)

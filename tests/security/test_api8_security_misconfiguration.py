"""OWASP API8:2023 Security Misconfiguration: what the deployment (and the local cloud) answers to a browser
on another site, to a rebound host name, to unexpected methods, and what its errors give away.

The API grants no cross-origin access (the template configures no CORS, so a preflight finds no route and
no response carries `Access-Control-Allow-*`), answers only the methods the template routes, never caches a
signed-in response (`Cache-Control: no-store`), and its errors are problem documents that name no internals.
The local cloud's own guard (localcloud.localguard) refuses a Host that is not loopback and a
cross-site request that would change state.
"""

from __future__ import annotations

import http.client
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
from support.bank import SAVINGS, assert_problem, idempotency_key, open_account, signed_in_customer

pytestmark = pytest.mark.e2e

EVIL_ORIGIN = "https://evil.example"
# What an error must never show a client: a stack, a module or library name, a file path, a table name.
INTERNALS = (
    "Traceback",
    'File "',
    "pydantic",
    "powertools",
    "botocore",
    "pynamodb",
    "vaultpay.shared",
    "vaultpay.accounts",
    "/work/",
    "site-packages",
    "Table",
    "Exception",
)


def test_a_page_on_another_site_is_granted_no_cross_origin_access(api: Callable[..., Any]) -> None:
    client = signed_in_customer(api, device_id="browser")
    # The preflight a browser sends before a call with Authorization and X-Device-Id finds nothing
    preflight = client.request(
        "OPTIONS",
        "/v1/me",
        headers={
            "Origin": EVIL_ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization,x-device-id",
        },
        token=None,
        device=None,
    )
    assert preflight.status in (403, 404), preflight.status
    # and no response, even to a request that carries the foreign Origin, lets the page read it
    answers = [
        preflight,
        client.get("/v1/me", headers={"Origin": EVIL_ORIGIN}),
        client.get("/v1/health", headers={"Origin": EVIL_ORIGIN}, token=None),
        client.get("/v1/accounts", headers={"Origin": "null"}),
    ]
    for reply in answers:
        granted = {k: v for k, v in reply.headers.items() if k.lower().startswith("access-control-")}
        assert granted == {}, (reply.status, granted)


def test_the_local_api_answers_no_rebound_host_and_no_cross_site_write(
    api: Callable[..., Any], local_cloud: Any
) -> None:
    client = signed_in_customer(api, device_id="browser")
    # DNS rebinding: evil.example resolved to 127.0.0.1, so the browser sends Host: evil.example
    rebound = client.get("/v1/me", headers={"Host": "evil.example:3000"})
    assert rebound.status == 403 and "user_id" not in str(rebound.body), rebound.body
    # A form on another site posting to the API (a "simple" request needs no preflight)
    for headers in ({"Origin": EVIL_ORIGIN}, {"Sec-Fetch-Site": "cross-site"}):
        forged = client.post("/v1/accounts", SAVINGS, headers={**headers, **idempotency_key()})
        assert forged.status == 403, forged.body
    assert client.get("/v1/accounts").body["items"] == []
    # The edge (the AWS endpoint: DynamoDB, KMS, the fault API) refuses a rebound host too
    edge = urllib.parse.urlsplit(local_cloud.edge)
    connection = http.client.HTTPConnection(edge.hostname or "127.0.0.1", edge.port, timeout=10)
    try:
        connection.request("GET", "/_localcloud/status", headers={"Host": "evil.example"})
        assert connection.getresponse().status == 403
    finally:
        connection.close()


def test_only_the_routed_methods_are_answered(api: Callable[..., Any]) -> None:
    client = signed_in_customer(api, device_id="method-prober")
    account_id = open_account(client)["account_id"]
    for method, path in (
        ("TRACE", "/v1/me"),
        ("PUT", f"/v1/accounts/{account_id}"),
        ("PATCH", f"/v1/accounts/{account_id}"),
        ("DELETE", f"/v1/accounts/{account_id}"),
        ("DELETE", "/v1/accounts"),
        ("PUT", "/v1/transfers"),
        ("GET", "/v1/auth/login"),
    ):
        reply = client.request(method, path, {"status": "CLOSED"} if method in ("PUT", "PATCH") else None)
        assert reply.status in (403, 404, 405), (method, path, reply.status)
    assert client.get(f"/v1/accounts/{account_id}").body["status"] == "ACTIVE"


def test_signed_in_answers_are_never_cached_and_errors_name_no_internals(api: Callable[..., Any]) -> None:
    client = signed_in_customer(api, device_id="shared-proxy")
    account_id = open_account(client)["account_id"]
    for path in ("/v1/me", "/v1/auth/devices", "/v1/accounts", f"/v1/accounts/{account_id}"):
        reply = client.get(path)
        assert reply.status == 200, (path, reply.body)
        assert reply.header("Cache-Control") == "no-store", (path, reply.headers)
    # Errors from every layer: the gateway, the strict body reader, validation, the handler
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    errors = [
        client.get("/v1/no-such-route"),
        client.post("/v1/accounts", b'{"type": "SAVINGS", "currency": ', headers=idempotency_key()),
        client.post("/v1/accounts", b"type=SAVINGS", headers=form),
        client.post("/v1/accounts", {"type": "GOLD", "extra": [1]}, headers=idempotency_key()),
        client.post("/v1/accounts", b'{"type": "SAVINGS", "type": "CURRENT"}', headers=idempotency_key()),
        client.get(f"/v1/accounts/{account_id}/statement?cursor=%00%ff"),
        client.get("/v1/accounts/acc_" + "f" * 32),
        client.get("/v1/transfers"),
        client.get("/v1/me", token="x.y.z"),
    ]
    for reply in errors:
        assert 400 <= reply.status < 500, (reply.status, reply.body)
        assert_problem(reply, reply.status)
        text = str({k: v for k, v in reply.body.items() if k != "type"})  # type: the problem's public URI
        leaked = [word for word in INTERNALS if word in text]
        assert leaked == [], (reply.status, leaked, reply.body)

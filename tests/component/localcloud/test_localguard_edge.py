"""A web page cannot drive the running local cloud: rebound hosts and cross-site writes get 403."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from typing import Any

import pytest

pytestmark = pytest.mark.component


def _send(url: str, method: str, path: str, body: bytes | None = None, **headers: str) -> tuple[int, bytes]:
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True)
        for name, value in {"Host": parsed.netloc, **headers}.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_a_rebound_host_gets_nothing_from_the_edge_or_the_api(local_cloud: Any) -> None:
    status, body = _send(local_cloud.edge, "GET", "/_localcloud/status", Host="evil.example:4566")
    assert status == 403 and b"Host header" in body
    target = {"X-Amz-Target": "DynamoDB_20120810.ListTables", "Content-Type": "application/x-amz-json-1.0"}
    status, _ = _send(local_cloud.edge, "POST", "/", b"{}", Host="evil.example", **target)
    assert status == 403
    status, _ = _send(local_cloud.api, "GET", "/v1/health", Host="evil.example:3000")
    assert status == 403


def test_a_cross_site_page_cannot_set_faults_or_call_the_api(local_cloud: Any) -> None:
    before = json.loads(_send(local_cloud.edge, "GET", "/_localcloud/faults")[1])
    plan = json.dumps({"nats_down_for_s": 30}).encode()
    status, _ = _send(local_cloud.edge, "PUT", "/_localcloud/faults", plan, Origin="https://evil.example")
    assert status == 403
    status, body = _send(local_cloud.edge, "GET", "/_localcloud/faults")
    assert status == 200 and json.loads(body)["plan"] == before["plan"]  # nothing was injected
    registration = json.dumps(
        {"email": "x@example.com", "password": "p" * 12, "full_name": "X", "phone": "+919876543210"}
    )
    status, _ = _send(
        local_cloud.api,
        "POST",
        "/v1/auth/register",
        registration.encode(),
        **{"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
    )
    assert status == 403
    # And the same machine's own tools still pass
    status, _ = _send(local_cloud.edge, "GET", "/_localcloud/status")
    assert status == 200

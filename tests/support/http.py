"""An HTTP client for the project's API that speaks from a chosen loopback address (source IP).

Used by the end-to-end tests (tests/e2e/conftest.py) and by the benchmarks that go through the API.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any
    elapsed_ms: float

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


class ApiClient:
    def __init__(self, base_url: str, source_ip: str, device_id: str = "device-e2e-1") -> None:
        parsed = urllib.parse.urlsplit(base_url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.source_ip = source_ip
        self.device_id = device_id
        self.token: str | None = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        device: str | None = "default",
        token: str | None = "default",
    ) -> Reply:
        sent = {"Content-Type": "application/json"} if body is not None else {}
        if device is not None:
            sent["X-Device-Id"] = self.device_id if device == "default" else device
        bearer = self.token if token == "default" else token
        if bearer:
            sent["Authorization"] = f"Bearer {bearer}"
        sent.update(headers or {})
        payload = (
            body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
        )
        conn = http.client.HTTPConnection(
            self.host, self.port, timeout=30, source_address=(self.source_ip, 0)
        )
        began = time.perf_counter()
        try:
            conn.request(method, path, body=payload, headers=sent)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        elapsed = (time.perf_counter() - began) * 1000
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Reply(resp.status, dict(resp.getheaders()), parsed, elapsed)

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request("POST", path, body, **kw)

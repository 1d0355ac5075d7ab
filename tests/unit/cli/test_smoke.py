"""`vaultpay smoke`: each step printed as it ends, and a failure names its step (a fake API on loopback; the
whole check against the running stack is in tests/component/test_cli.py)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typer.testing import CliRunner

from vaultpay_cli.main import app

pytestmark = pytest.mark.unit


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _HealthyButBroken(BaseHTTPRequestHandler):
    """Health answers ok; registration fails as a stage with a broken table would."""

    def do_GET(self) -> None:
        self._answer(200, {"status": "ok", "checks": {"dynamodb": "ok"}})

    def do_POST(self) -> None:
        self._answer(500, {"code": "internal_error", "detail": "Something went wrong."})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *_: Any) -> None:
        return None  # the test reads the CLI's output, not the server's


@pytest.fixture
def broken_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HealthyButBroken)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_smoke_against_an_api_that_does_not_answer_fails_at_health() -> None:
    api = f"http://127.0.0.1:{_closed_port()}"

    done = CliRunner().invoke(app, ["smoke", "--api", api, "--timeout", "2"])

    assert done.exit_code == 1
    assert done.stdout.startswith("FAIL health")
    assert f"{api} does not answer" in done.stdout
    assert f"Smoke check of {api} failed at step 'health'." in done.stderr


def test_smoke_names_the_step_that_failed_after_the_ones_that_passed(broken_api: str) -> None:
    done = CliRunner().invoke(app, ["smoke", "--api", broken_api, "--json"])

    assert done.exit_code == 1
    report = json.loads(done.stdout)
    assert (report["ok"], report["failed_step"]) == (False, "register")
    assert [(s["step"], s["ok"]) for s in report["steps"]] == [("health", True), ("register", False)]
    assert "POST /v1/auth/register answered 500 internal_error" in report["steps"][1]["detail"]


def test_smoke_refuses_what_is_not_an_http_url() -> None:
    done = CliRunner().invoke(app, ["smoke", "--api", "ftp://example.com"])

    assert done.exit_code == 1
    assert "is not an http(s) URL" in done.stdout

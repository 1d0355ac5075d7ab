"""Webhook test helpers: a receiver on 127.0.0.1 (never anywhere else) and a customer-visible CloudEvent."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from vaultpay.shared.kernel import new_event_id


class Receiver:
    """A webhook endpoint on 127.0.0.1: answers 500 to the first `fail_first` POSTs, then `status` (after
    `delay_s`), and records each as (arrival time, headers, body, status answered)."""

    def __init__(self, *, status: int = 204, fail_first: int = 0, delay_s: float = 0.0) -> None:
        self.status = status
        self.fail_first = fail_first
        self.received: list[tuple[float, dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer = 500 if len(receiver.received) < receiver.fail_first else receiver.status
                receiver.received.append((time.time(), dict(self.headers.items()), body, answer))
                if delay_s:
                    time.sleep(delay_s)
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(
        self, predicate: Any, timeout_s: float = 60
    ) -> list[tuple[float, dict[str, str], bytes, int]]:
        """What it received, once `predicate(received)` holds (AssertionError after `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        while not predicate(self.received):
            assert time.monotonic() < deadline, self.received
            time.sleep(0.2)
        return self.received

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def completed_event(**data: Any) -> dict[str, Any]:
    """A `vaultpay.transaction.completed` CloudEvent, usr_alice's acc_alice to acc_bob; `data` overrides."""
    return {
        "specversion": "1.0",
        "id": new_event_id(),
        "source": "/vaultpay/transfers",
        "type": "vaultpay.transaction.completed",
        "time": "2026-11-28T10:15:30.123Z",
        "subject": "tr_1",
        "datacontenttype": "application/json",
        "correlationid": "c-1",
        "actor": "system",
        "data": {
            "transfer_id": "tr_1",
            "user_id": "usr_alice",
            "source_account_id": "acc_alice",
            "destination_account_id": "acc_bob",
            "amount": 125050,
            "currency": "INR",
            **data,
        },
    }

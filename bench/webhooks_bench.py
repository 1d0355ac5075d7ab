"""Webhooks: commit-to-delivery latency on the local cloud, and the sender's deliveries/s beside a slow one.

1. Latency. A local cloud (in memory, time scale 60, loopback webhooks allowed, as the e2e tests run it); a
   payee registers a webhook at a receiver on 127.0.0.1; a funded sender makes TRANSFERS transfers, a few at
   a time. Latency = the receiver's clock at arrival minus the `vaultpay.transaction.completed` event's
   `time` (its commit in the transfers table), p50 / p99 / max.
2. Throughput. The delivery service in process (vaultpay.webhooks.delivery, the in-memory store, the real
   HTTP sender), FAST endpoints answering at once and one SLOW endpoint answering after SLOW_S, each on
   127.0.0.1, with DELIVERIES due for each, sent by one sweeper run. Deliveries/s per endpoint and in total,
   with and without the slow endpoint present.

    .venv/bin/python bench/webhooks_bench.py --out bench/webhooks-results.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its siblings are modules
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' helpers
from runinfo import heading, publish
from support.bank import create_admin, deposit, idempotency_key, open_account, signed_in_admin
from support.cloud import CloudProcess, RunningCloud
from support.http import ApiClient

TRANSFERS = 60
CONCURRENCY = 4
FAST = 8
SLOW_S = 1.0
DELIVERIES = 100


class Receiver:
    """A webhook endpoint on 127.0.0.1 that answers 204 after `delay_s`, noting each arrival's time."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.arrivals: list[tuple[float, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.arrivals.append((time.time(), body))
                if delay_s:
                    time.sleep(delay_s)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ---- 1. latency on the local cloud -------------------------------------------------------------------


@contextmanager
def _cloud() -> Iterator[RunningCloud]:
    with tempfile.TemporaryDirectory() as tmp:
        process = CloudProcess(Path(tmp) / "state", "--in-memory")
        state = process.start(timeout_s=600)
        try:
            yield RunningCloud(state, process.state_dir)
        finally:
            process.stop()


def latency() -> dict[str, Any]:
    from vaultpay.shared.kernel import parse_timestamp

    addresses = iter(f"127.3.{a}.{b}" for a in range(1, 250) for b in range(2, 250))
    receiver = Receiver()
    try:
        with _cloud() as cloud:

            def client(device: str = "bench-device") -> ApiClient:
                return ApiClient(cloud.api, next(addresses), device)

            from support.bank import signed_in_customer

            admin = signed_in_admin(client, create_admin(cloud))
            sender = signed_in_customer(client, device_id="bench-sender")
            source = open_account(sender)
            assert deposit(admin, source["account_id"], 10_000_000).status == 201
            payee = signed_in_customer(client, device_id="bench-payee")
            destination = open_account(payee)
            reply = payee.post(
                "/v1/webhooks", {"url": receiver.url, "events": ["vaultpay.transaction.completed"]}
            )
            assert reply.status == 201, reply.body
            body = {
                "source_account_id": source["account_id"],
                "destination_account_number": destination["account_number"],
                "amount": 100,
                "currency": "INR",
            }

            def send(_: int) -> None:
                answer = sender.post("/v1/transfers", body, headers=idempotency_key())
                assert answer.status == 202, answer.body

            began = time.monotonic()
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                list(pool.map(send, range(TRANSFERS)))
            while len(receiver.arrivals) < TRANSFERS and time.monotonic() - began < 300:
                time.sleep(0.2)
    finally:
        receiver.close()
    samples = []
    for arrived, raw in receiver.arrivals:
        event = json.loads(raw)
        committed = parse_timestamp(event["time"]).timestamp()
        samples.append(arrived - committed)
    return {
        "transfers": TRANSFERS,
        "delivered": len(samples),
        "p50_s": round(statistics.median(samples), 3),
        "p99_s": round(_percentile(samples, 0.99), 3),
        "max_s": round(max(samples), 3),
    }


# ---- 2. the sender's throughput with a slow endpoint ---------------------------------------------------


def throughput(with_slow: bool) -> dict[str, Any]:
    from vaultpay.shared.kernel import new_event_id
    from vaultpay.webhooks.adapters import HttpSender
    from vaultpay.webhooks.delivery import DeliveryService
    from vaultpay.webhooks.memory import MemoryWebhookStore, ReversibleCipher
    from vaultpay.webhooks.model import RetryPolicy, UrlPolicy
    from vaultpay.webhooks.service import WebhooksService

    store, cipher, policy = MemoryWebhookStore(), ReversibleCipher(), UrlPolicy(allow_http_loopback=True)
    api = WebhooksService(store, cipher, resolve=lambda host, port: ["127.0.0.1"], policy=policy)
    sending = DeliveryService(
        store,
        cipher,
        HttpSender(),
        resolve=lambda host, port: ["127.0.0.1"],
        policy=policy,
        retry=RetryPolicy(),
    )
    receivers = {f"usr_fast{n}": Receiver() for n in range(FAST)}
    if with_slow:
        receivers["usr_slow"] = Receiver(SLOW_S)
    try:
        for user, receiver in receivers.items():
            api.create(user, receiver.url, ["*"])
        for _ in range(DELIVERIES):
            for user in receivers:
                store.set_owner(f"acc_{user}", user)
                sending.record(
                    {
                        "specversion": "1.0",
                        "id": new_event_id(),
                        "source": "/vaultpay/bench",
                        "type": "vaultpay.account.deposited",
                        "time": "2026-11-28T10:15:30.123Z",
                        "subject": f"acc_{user}",
                        "datacontenttype": "application/json",
                        "correlationid": "bench",
                        "data": {"account_id": f"acc_{user}", "amount": 100, "currency": "INR"},
                    }
                )
        began = time.monotonic()
        # A Lambda's 55 s, less the reserve the run keeps.
        sending.deliver_due(remaining_ms=lambda: int((began + 55 - time.monotonic()) * 1000))
        elapsed = time.monotonic() - began
        fast_arrivals = sorted(t for u, r in receivers.items() if u != "usr_slow" for t, _ in r.arrivals)
        fast_done = fast_arrivals[-1] - (time.time() - (time.monotonic() - began)) if fast_arrivals else None
    finally:
        for receiver in receivers.values():
            receiver.close()
    fast_s = fast_done or elapsed
    result = {
        "endpoints": len(receivers),
        "fast_delivered": len(fast_arrivals),
        "fast_endpoint_per_s": round(DELIVERIES / fast_s, 1),
        "fast_total_per_s": round(FAST * DELIVERIES / fast_s, 1),
        "fast_done_s": round(fast_s, 2),
    }
    if with_slow:
        result["slow_endpoint_per_s"] = round(len(receivers["usr_slow"].arrivals) / elapsed, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--skip-cloud", action="store_true", help="only the in-process throughput part")
    args = parser.parse_args()
    command = ".venv/bin/python bench/webhooks_bench.py --out bench/webhooks-results.md"
    lines = [*heading("Webhooks: commit to delivery, and deliveries/s with a slow endpoint", command), ""]
    alone, beside = throughput(False), throughput(True)
    lines += [
        f"Sender, in process, {FAST} fast endpoints on 127.0.0.1, {DELIVERIES} deliveries each, one run:",
        "",
        "| | fast endpoints' deliveries/s (each) | fast, in total | fast all delivered after | slow one |",
        "|---|---|---|---|---|",
        f"| alone | {alone['fast_endpoint_per_s']} | {alone['fast_total_per_s']} | "
        f"{alone['fast_done_s']} s | — |",
        f"| beside a slow endpoint ({SLOW_S:g} s an answer) | {beside['fast_endpoint_per_s']} | "
        f"{beside['fast_total_per_s']} | {beside['fast_done_s']} s | {beside['slow_endpoint_per_s']}/s |",
        "",
    ]
    figures: dict[str, Any] = {"alone": alone, "beside_slow": beside}
    if not args.skip_cloud:
        measured = figures["latency"] = latency()
        lines += [
            f"Local cloud (time scale 60: the consumer and the sweeper each run every second), "
            f"{TRANSFERS} transfers, {CONCURRENCY} at a time, commit of `vaultpay.transaction.completed` to "
            f"arrival at the payee's receiver: p50 {measured['p50_s']} s, p99 {measured['p99_s']} s, "
            f"max {measured['max_s']} s ({measured['delivered']} of {measured['transfers']} delivered).",
            "",
        ]
    if args.out:
        publish(args.out, "webhooks", figures, lines)
    else:
        print("\n".join(lines))


if __name__ == "__main__":
    main()

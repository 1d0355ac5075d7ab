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
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its siblings are modules
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' helpers
from runinfo import heading, publish
from support.bank import create_admin, deposit, idempotency_key, open_account, signed_in_admin
from support.cloud import CloudProcess, RunningCloud
from support.http import ApiClient
from support.webhooks import Receiver

SENDERS = 12
TRANSFERS = 48  # four per sender
CONCURRENCY = 2
FAST = 8
SLOW_S = 1.0
DELIVERIES = 100


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

            def client(device_id: str = "bench-device") -> ApiClient:
                return ApiClient(cloud.api, next(addresses), device_id)

            from support.bank import signed_in_customer

            admin = signed_in_admin(client, create_admin(cloud))
            payee = signed_in_customer(client, device_id="bench-payee")
            destination = open_account(payee)
            reply = payee.post(
                "/v1/webhooks", {"url": receiver.url, "events": ["vaultpay.transaction.completed"]}
            )
            assert reply.status == 201, reply.body
            # Several senders, each under the fraud engine's velocity limit (5 transfers a minute per user).
            senders = []
            for n in range(SENDERS):
                sender = signed_in_customer(client, device_id=f"bench-sender-{n}")
                source = open_account(sender)
                assert deposit(admin, source["account_id"], 10_000_000).status == 201
                senders.append((sender, source))
            refused: list[int] = []

            def send(job: int) -> None:
                sender, source = senders[job % SENDERS]
                body = {
                    "source_account_id": source["account_id"],
                    "destination_account_number": destination["account_number"],
                    "amount": 100,
                    "currency": "INR",
                }
                # A 503 (the local cloud's emulators busy) is tried again with its key, as a client would.
                key = idempotency_key()
                for _attempt in range(5):
                    answer = sender.post("/v1/transfers", body, headers=key)
                    if answer.status == 202:
                        return
                    assert answer.status == 503, answer.body
                    refused.append(answer.status)
                    time.sleep(1)
                raise AssertionError("a transfer was refused five times")

            with ThreadPoolExecutor(CONCURRENCY) as pool:
                list(pool.map(send, range(TRANSFERS)))
            # Until every transfer's event arrived, or none came for 30 s (a transfer that did not complete).
            last, count = time.monotonic(), 0
            while len(receiver.received) < TRANSFERS and time.monotonic() - last < 30:
                if len(receiver.received) != count:
                    last, count = time.monotonic(), len(receiver.received)
                time.sleep(0.2)
    finally:
        receiver.close()
    samples = []
    for arrived, _, raw, _ in receiver.received:
        event = json.loads(raw)
        committed = parse_timestamp(event["time"]).timestamp()
        samples.append(arrived - committed)
    return {
        "transfers": TRANSFERS,
        "delivered": len(samples),
        "refused_503_then_retried": len(refused),
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
        receivers["usr_slow"] = Receiver(delay_s=SLOW_S)
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
        fast_arrivals = sorted(t for u, r in receivers.items() if u != "usr_slow" for t, *_ in r.received)
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
        result["slow_endpoint_per_s"] = round(len(receivers["usr_slow"].received) / elapsed, 2)
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
            f"{TRANSFERS} transfers from {SENDERS} senders, {CONCURRENCY} at a time, commit of "
            f"`vaultpay.transaction.completed` to arrival at the payee's receiver: "
            f"p50 {measured['p50_s']} s, p99 {measured['p99_s']} s, max {measured['max_s']} s "
            f"({measured['delivered']} of {measured['transfers']} delivered).",
            "",
        ]
    if args.out:
        publish(args.out, "webhooks", figures, lines)
    else:
        print("\n".join(lines))


if __name__ == "__main__":
    main()

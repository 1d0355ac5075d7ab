"""Local-cloud figures: start-up time, memory, Lambda invoke round trip and Step Functions throughput."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_TEMPLATE = ROOT / "bench" / "fixtures" / "template.yaml"


def start_cloud(
    state_dir: Path, cache_dir: Path | None = None, *extra: str
) -> tuple[subprocess.Popen[bytes], dict[str, Any], float]:
    env = dict(os.environ)
    if cache_dir is not None:
        env["VAULTPAY_CACHE_DIR"] = str(cache_dir)
    argv = [
        sys.executable, "-m", "vaultpay_cli.main", "local", "up", "--in-memory",
        "--edge-port", "0", "--api-port", "0", "--nats-port", "0", "--nats-monitor-port", "0",
        "--state-dir", str(state_dir), "--template", str(ROOT / "template.yaml"),
        "--template", str(BENCH_TEMPLATE),
        # The benches fund accounts with one admin's deposit: no second admin to approve large ones.
        "--parameter", "DepositApprovalThreshold=100000000000",
        *extra,
    ]  # fmt: skip
    began = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        if proc.poll() is not None:
            raise SystemExit("the local cloud failed to start")
        try:
            state = json.loads((state_dir / "state.json").read_text())
            if state.get("ready"):
                return proc, state, time.monotonic() - began
        except (OSError, ValueError):
            pass
        time.sleep(0.05)


def stop_cloud(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry.name))
            except OSError:
                continue
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
        stack.extend(children.get(current, []))
    return total / 1024


def client(state: dict[str, Any], service: str) -> Any:
    return endpoint_client(service, state["endpoints"]["edge"])


def endpoint_client(service: str, endpoint_url: str) -> Any:
    """A boto3 client for an emulator on loopback (any credentials pass), made as the CLI makes one."""
    from botocore.config import Config

    from vaultpay_cli.target import local_client

    return local_client(service, endpoint_url, config=Config())


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def timed(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        began = time.perf_counter()
        fn()
        out.append((time.perf_counter() - began) * 1000)
    return out


def bench_invoke(state: dict[str, Any], n: int) -> dict[str, float]:
    lam = client(state, "lambda")
    name = next(k for k, v in state["functions"].items() if v["logical_id"] == "NoopFunction")
    lam.invoke(FunctionName=name, Payload=b"{}")  # cold start out of the way
    invoke = timed(lambda: lam.invoke(FunctionName=name, Payload=b'{"n": 1}')["Payload"].read(), n)
    health_url = state["endpoints"]["edge"] + "/_localstack/health"
    floor = timed(lambda: urllib.request.urlopen(health_url, timeout=5).read(), n)  # noqa: S310
    ddb = client(state, "dynamodb")
    proxied = timed(lambda: ddb.list_tables(Limit=1), n)
    return {
        "invoke_p50": statistics.median(invoke),
        "invoke_p99": percentile(invoke, 99),
        "http_floor_p50": statistics.median(floor),
        "dynamodb_proxied_p50": statistics.median(proxied),
    }


def bench_stepfunctions(state: dict[str, Any], executions: int, concurrency: int) -> dict[str, float]:
    sfn = client(state, "stepfunctions")
    arn = next(
        m["stateMachineArn"]
        for m in sfn.list_state_machines()["stateMachines"]
        if "FourTaskMachine" in m["name"]
    )

    def run_one(_: int) -> str:
        execution = sfn.start_execution(stateMachineArn=arn, name=f"bench-{uuid.uuid4()}", input="{}")
        while True:
            status = sfn.describe_execution(executionArn=execution["executionArn"])["status"]
            if status != "RUNNING":
                return str(status)
            time.sleep(0.05)

    run_one(0)  # warm the workers and moto's engine
    began = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        statuses = list(pool.map(run_one, range(executions)))
    elapsed = time.monotonic() - began
    return {
        "executions": executions,
        "succeeded": statuses.count("SUCCEEDED"),
        "seconds": elapsed,
        "per_second": executions / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--invokes", type=int, default=500)
    parser.add_argument("--executions", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "localcloud-results.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        cold_cache = Path(tmp) / "cache"
        proc, _, cold = start_cloud(Path(tmp) / "s1", cache_dir=cold_cache)  # fetches DynamoDB Local
        stop_cloud(proc)
        # The NATS cluster of `make test` and `make soak` (three nodes, routes, R3 streams) against the
        # single node `make run` starts by default, both with a warm cache.
        proc, _, cluster = start_cloud(Path(tmp) / "s3", cold_cache, "--nats-cluster", "3")
        cluster_rss = tree_rss_mib(proc.pid)
        stop_cloud(proc)
        proc, _, warm = start_cloud(Path(tmp) / "s2", cache_dir=cold_cache)
        try:
            time.sleep(1)
            state = json.loads((Path(tmp) / "s2" / "state.json").read_text())
            idle_rss = tree_rss_mib(proc.pid)
            inv = bench_invoke(state, args.invokes)
            sfn = bench_stepfunctions(state, args.executions, args.concurrency)
            busy_rss = tree_rss_mib(proc.pid)
        finally:
            stop_cloud(proc)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    lines = [
        "# Local cloud figures",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; commit {commit.stdout.strip()}.",
        f"Command: `.venv/bin/python bench/localcloud_bench.py --invokes {args.invokes} "
        f"--executions {args.executions} --concurrency {args.concurrency}`",
        "",
        "| Figure | Value | Baseline in the same run |",
        "|---|---|---|",
        f"| Start to ready, cold cache (fetches DynamoDB Local from npm) | {cold:.1f} s | — |",
        f"| Start to ready, warm cache | {warm:.1f} s | — |",
        f"| Start to ready, warm cache, NATS as a three-node cluster (--nats-cluster 3) | {cluster:.1f} s | "
        f"single node {warm:.1f} s |",
        f"| Memory of the running stack (RSS, all processes), idle | {idle_rss:.0f} MiB | "
        f"with the three-node NATS cluster {cluster_rss:.0f} MiB |",
        f"| Memory after the benchmark (warm Lambda workers) | {busy_rss:.0f} MiB | — |",
        f"| Lambda invoke round trip through the edge, p50 / p99 (n={args.invokes}) | "
        f"{inv['invoke_p50']:.2f} / {inv['invoke_p99']:.2f} ms | "
        f"HTTP to the edge itself p50 {inv['http_floor_p50']:.2f} ms; DynamoDB ListTables via edge "
        f"p50 {inv['dynamodb_proxied_p50']:.2f} ms |",
        f"| Step Functions, 4 no-op Lambda tasks, {sfn['executions']} executions, "
        f"{args.concurrency} at a time | {sfn['per_second']:.1f} executions/s "
        f"({sfn['succeeded']}/{sfn['executions']} succeeded) | moto's ceiling (docs/emulators.md: ~13/s) |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()

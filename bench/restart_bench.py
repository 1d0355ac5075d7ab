"""Restart of a persistent local cloud: start-to-ready with an empty state vs a populated one, and its size.

A persistent cloud (no --in-memory) in a temporary state dir: first start (nothing saved), a restart with only
what provisioning saved, then the bank test's workload (tests/support/bank_run.py: customers, accounts,
deposits, concurrent transfers under faults), a stop (which waits for sagas in flight and saves moto's state)
and a restart on that populated state. Each start is timed from the `vaultpay local up` process start to
Ready (state.json); the state dir is measured per part after the stop.

    .venv/bin/python bench/restart_bench.py --out bench/restart-results.md [--scale short|soak]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its siblings are modules
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' helpers
from runinfo import heading, publish
from support.bank import create_admin
from support.bank_run import SHORT, SOAK, BankRun
from support.cloud import CloudProcess, RunningCloud
from support.http import ApiClient

from localcloud.faults import FaultClient
from localcloud.stored_state import StoredState

SCALES = {"short": SHORT, "soak": SOAK}


class Cloud:
    """What BankRun needs of a cloud (edge, clients, function names): a RunningCloud, anew at each start."""

    def __init__(self, process: CloudProcess) -> None:
        self.process = process
        self.running: RunningCloud | None = None
        self._addresses = iter(f"127.2.{a}.{b}" for a in range(1, 250) for b in range(2, 250))

    def start(self) -> float:
        began = time.monotonic()
        self.running = RunningCloud(self.process.start(timeout_s=900), self.process.state_dir)
        return time.monotonic() - began

    def stop(self) -> float:
        began = time.monotonic()
        self.process.stop(timeout_s=900)
        return time.monotonic() - began

    @property
    def now(self) -> RunningCloud:
        assert self.running is not None, "start() first"
        return self.running

    @property
    def edge(self) -> str:
        return self.now.edge

    def api(self, device_id: str = "device-bench-1") -> ApiClient:
        return ApiClient(self.now.api, next(self._addresses), device_id)

    def client(self, service: str) -> Any:
        return self.now.client(service)

    def function_name(self, logical_id: str) -> str:
        return self.now.function_name(logical_id)


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/restart-results.md"))
    parser.add_argument("--scale", choices=sorted(SCALES), default="short")
    args = parser.parse_args()
    state_dir = Path(tempfile.mkdtemp(prefix="vaultpay-restart-")) / "state"
    cloud = Cloud(CloudProcess(state_dir))
    figures: dict[str, Any] = {}
    try:
        figures["first_start_s"] = cloud.start()
        figures["stop_empty_s"] = cloud.stop()
        figures["restart_empty_s"] = cloud.start()
        empty_sizes = StoredState(state_dir).size_bytes()
        began = time.monotonic()
        outcome = BankRun(
            cloud.api, create_admin(cloud), cloud, FaultClient(cloud.edge), SCALES[args.scale]
        ).run()
        figures["workload_s"] = time.monotonic() - began
        figures["workload_ok"] = outcome.ok
        figures["workload_problems"] = outcome.problems[:10]
        figures["transfers"] = outcome.figures.get("transfers sent")
        figures["stop_populated_s"] = cloud.stop()
        sizes = StoredState(state_dir).size_bytes()
        moto_meta = json.loads((state_dir / "moto" / "snapshot.json").read_text())
        figures["restart_populated_s"] = cloud.start()
        figures["state_bytes"] = sizes
        figures["state_bytes_empty"] = empty_sizes
        figures["moto_snapshot_bytes"] = moto_meta["bytes"]
        cloud.stop()
    finally:
        cloud.process.kill()
        shutil.rmtree(state_dir.parent, ignore_errors=True)
    total = sum(figures["state_bytes"].values())
    total_empty = sum(figures["state_bytes_empty"].values())
    lines = [
        *heading("Local cloud restart", f".venv/bin/python bench/restart_bench.py --scale {args.scale}"),
        "| | seconds |",
        "|---|---:|",
        f"| first start (nothing saved) | {figures['first_start_s']:.1f} |",
        f"| restart, state of a fresh stack | {figures['restart_empty_s']:.1f} |",
        f"| workload: bank test `{args.scale}` ({figures['transfers']} transfers, "
        f"ok={figures['workload_ok']}) | {figures['workload_s']:.1f} |",
        f"| stop after it (waits for sagas, saves moto's state) | {figures['stop_populated_s']:.1f} |",
        f"| restart on the populated state | {figures['restart_populated_s']:.1f} |",
        "",
        "| state dir part | fresh stack (MiB) | after the workload (MiB) |",
        "|---|---:|---:|",
        *(
            f"| {part} | {_mib(figures['state_bytes_empty'].get(part, 0))} | {_mib(size)} |"
            for part, size in sorted(figures["state_bytes"].items())
        ),
        f"| **total** | {_mib(total_empty)} | {_mib(total)} |",
        "",
        f"moto snapshot after the workload: {_mib(figures['moto_snapshot_bytes'])} MiB.",
        *(
            ["", "Problems the bank test found:", *(f"- {p}" for p in figures["workload_problems"])]
            if figures["workload_problems"]
            else []
        ),
        "",
    ]
    publish(args.out, "restart", figures, lines)
    return 0 if figures["workload_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

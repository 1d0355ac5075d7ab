"""`make run` with the functions on `sam build`'s output (Python 3.13) vs the source tree (the venv's).

Each repetition starts `vaultpay local up --in-memory --code build|source` in a fresh state dir (the two modes
alternate, so both see the same machine load), times process start to Ready (state.json), then the first
request to two functions (a cold start each: GET /v1/health, and POST /v1/auth/register with an invalid body,
which loads the validating resolver and pydantic) and 20 warm health requests. `make run` adds the build
check before that (`python -m localcloud.build` when nothing changed), timed on its own.

    .venv/bin/python bench/run_built_bench.py --out bench/run-built-results.md [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its siblings are modules
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' helpers
from runinfo import ROOT, heading, publish
from support.cloud import CloudProcess


def request(url: str, body: bytes | None = None) -> float:
    """Milliseconds for one request, whatever its status."""
    began = time.perf_counter()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=60) as response:  # noqa: S310 - the local API's http URL
            response.read()
    except urllib.error.HTTPError as exc:
        exc.read()
    return (time.perf_counter() - began) * 1000


def one_start(mode: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"run-{mode}-") as tmp:
        process = CloudProcess(Path(tmp) / "state", "--in-memory", "--code", mode)
        began = time.monotonic()
        state = process.start(timeout_s=600)
        ready_s = time.monotonic() - began
        try:
            api = state["endpoints"]["api"]
            built = [c["built"] for c in state["code"]]
            assert built == [mode == "build"], f"--code {mode} ran {state['code']}"
            health_cold = request(f"{api}/v1/health")
            register_cold = request(f"{api}/v1/auth/register", b"{}")
            warm = statistics.median(request(f"{api}/v1/health") for _ in range(20))
        finally:
            process.stop()
    return {
        "ready_s": ready_s,
        "health_cold_ms": health_cold,
        "register_cold_ms": register_cold,
        "warm_ms": warm,
    }


def build_check_s() -> float:
    """`python -m localcloud.build` with nothing to build: what `make run` adds before the start."""
    times = []
    for _ in range(5):
        began = time.monotonic()
        subprocess.run([sys.executable, "-m", "localcloud.build"], cwd=ROOT, check=True, capture_output=True)
        times.append(time.monotonic() - began)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "run-built-results.md")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "localcloud.build"], cwd=ROOT, check=True)  # fresh, or built now
    check = build_check_s()
    runs: dict[str, list[dict[str, float]]] = {"build": [], "source": []}
    for i in range(args.repeat):
        for mode in ("build", "source") if i % 2 == 0 else ("source", "build"):
            runs[mode].append(one_start(mode))
            print(mode, runs[mode][-1], flush=True)

    def median(mode: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[mode])

    def spread(mode: str, key: str, unit: str, digits: int) -> str:
        values = ", ".join(f"{run[key]:.{digits}f}" for run in runs[mode])
        return f"{median(mode, key):.{digits}f} {unit} ({values})"

    rows = [
        ("Start to Ready (`vaultpay local up`)", "ready_s", "s", 1),
        ("First GET /v1/health (cold start)", "health_cold_ms", "ms", 0),
        ("First POST /v1/auth/register, invalid body (cold start)", "register_cold_ms", "ms", 0),
        ("GET /v1/health, warm (median of 20)", "warm_ms", "ms", 1),
    ]
    lines = [
        *heading(
            "make run: functions on sam build's output vs the source tree",
            f".venv/bin/python bench/run_built_bench.py --repeat {args.repeat}",
        ),
        f"`make run`'s build check when nothing changed (`python -m localcloud.build`, median of 5): "
        f"{check:.2f} s.",
        "",
        "| Median (each run) | sam build output, Python 3.13 | source tree, venv Python |",
        "| --- | --- | --- |",
        *(
            f"| {label} | {spread('build', key, unit, digits)} | {spread('source', key, unit, digits)} |"
            for label, key, unit, digits in rows
        ),
    ]
    figures = {f"{mode}_{key}": median(mode, key) for mode in runs for _, key, _, _ in rows}
    figures["build_check_s"] = check
    publish(args.out, "run-built", figures, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

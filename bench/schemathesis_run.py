"""The long schemathesis run against the local API: tests/e2e/test_api_schema.py with many more examples per
operation, the coverage phase on (every boundary of every field), and a new seed each run.

It runs that test under pytest (its own local cloud, as in `make test`), then writes the summary: operations,
examples per operation, requests made and their status codes, failing operations with schemathesis' own
account of each failure, seconds, seed, date and commit.

    python bench/schemathesis_run.py --out bench/schemathesis-results.md        # `make bench`
    python bench/schemathesis_run.py --examples 30 --no-coverage --seed 7       # a shorter look

Exits 1 when an operation failed (a 5xx or a response the document does not describe), after the report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/e2e/test_api_schema.py"
FAILURE_LINES = 40  # of schemathesis' report per failing operation
RESULTS_VARIABLE = "VAULTPAY_SCHEMATHESIS_RESULTS"


# This module is also the pytest plugin of the run (`-p schemathesis_run`): pytest gives every operation's
# test the same node id, so the outcome is recorded under the item's name, which carries the operation.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Any:
    outcome = yield
    report = outcome.get_result()
    target = os.environ.get(RESULTS_VARIABLE)
    if target and (report.when == "call" or report.failed):
        name = str(item.name)
        label = name[name.find("[") + 1 : -1] if "[" in name else name
        text = report.longreprtext if report.failed else None
        with open(target, "a", encoding="utf-8") as out:
            out.write(json.dumps({"operation": label, "failure": text}) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "schemathesis-results.md")
    parser.add_argument("--examples", type=int, default=200, help="generated examples per operation")
    parser.add_argument("--seed", type=int, default=None, help="default: a new one")
    parser.add_argument("--no-coverage", action="store_true", help="skip the coverage phase")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)

    with tempfile.TemporaryDirectory(prefix="schemathesis-run-") as tmp:
        report = Path(tmp) / "statuses.json"
        results = Path(tmp) / "results.jsonl"
        env = {
            **os.environ,
            "VAULTPAY_SCHEMATHESIS_EXAMPLES": str(args.examples),
            "VAULTPAY_SCHEMATHESIS_SEED": str(seed),
            "VAULTPAY_SCHEMATHESIS_COVERAGE": "0" if args.no_coverage else "1",
            "VAULTPAY_SCHEMATHESIS_STATUSES": str(report),
            RESULTS_VARIABLE: str(results),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "bench"), os.environ.get("PYTHONPATH")])),
        }
        argv_ = [
            sys.executable, "-m", "pytest", TEST, "-q", "-p", "no:cacheprovider",
            "--timeout=7200", "-p", "schemathesis_run",
        ]  # fmt: skip
        began = time.perf_counter()
        run = subprocess.run(argv_, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - began
        if not results.exists():
            print(run.stdout[-4000:], run.stderr[-4000:], sep="\n", file=sys.stderr)
            return 2
        cases = _cases(results)
        statuses = json.loads(report.read_text()) if report.exists() else {}

    failed = {name: text for name, text in cases.items() if text is not None}
    args.out.write_text(_render(args, seed, seconds, cases, failed, statuses), encoding="utf-8")
    print(f"wrote {args.out}: {len(cases)} operations, {len(failed)} failed, {seconds:.0f} s")
    return 1 if failed or run.returncode not in (0, 1) else 0


def _cases(results: Path) -> dict[str, str | None]:
    """Operation label -> None when it passed, else schemathesis' account of the failure."""
    out: dict[str, str | None] = {}
    for line in results.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        out[record["operation"]] = out.get(record["operation"]) or record["failure"]
    return out


def _render(
    args: argparse.Namespace,
    seed: int,
    seconds: float,
    cases: dict[str, str | None],
    failed: dict[str, str],
    statuses: dict[str, object],
) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    by_op: dict[str, dict[str, int]] = statuses.get("statuses", {})  # type: ignore[assignment]
    requests = sum(sum(c.values()) for c in by_op.values())
    lines = [
        "# Schemathesis against the local API",
        "",
        f"`python bench/schemathesis_run.py` (`make bench`) ran `{TEST}` against its own local cloud: every "
        "operation of `infra/openapi/openapi.json`, valid and invalid data, as a signed-in customer or admin "
        "with real ids half of the time; checks: no 5xx, documented status codes, content types, headers "
        "and response bodies (every success body against its response model's schema), invalid data refused.",
        "",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; commit `{commit}`"
        + (" (with uncommitted changes)" if dirty else ""),
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"- Examples per operation: {args.examples} per generation mode (positive, negative), plus the "
        f"document's examples; coverage phase: {'off' if args.no_coverage else 'on'}; seed {seed}",
        f"- Operations: {len(cases)}; failed: {len(failed)}; requests: {requests}; "
        f"seconds: {seconds:.0f} (with the local cloud's start)",
        "",
        "| Operation | Requests | Status codes | Success bodies checked | Result |",
        "|---|---:|---|---:|---|",
    ]
    unchecked = []
    for label in sorted(cases):
        codes = by_op.get(label, {})
        spread = ", ".join(f"{code}: {n}" for code, n in sorted(codes.items()))
        # A success body is checked against its schema only when the run got one: say where it did not.
        successes = sum(n for code, n in codes.items() if 200 <= int(code) < 300)
        if not successes:
            unchecked.append(label)
        result = "FAILED" if label in failed else "ok"
        lines.append(f"| `{label}` | {sum(codes.values())} | {spread} | {successes} | {result} |")
    if unchecked:
        lines += [
            "",
            "No success answer, so no success body checked, for: " + ", ".join(f"`{u}`" for u in unchecked),
        ]
    for label, text in sorted(failed.items()):
        lines_ = [line for line in text.splitlines() if line.strip()]
        # Schemathesis' own account (the failures, the response, a curl to reproduce), not the traceback.
        start = next((i for i, line in enumerate(lines_) if "Schemathesis found" in line), 0)
        kept = lines_[start : start + FAILURE_LINES]
        lines += ["", f"## `{label}`", "", "```", *kept, "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

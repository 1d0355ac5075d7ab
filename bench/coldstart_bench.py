"""Cold-start import time of each function's handler module, before and after a change, vs `import boto3`.

Each sample is a fresh interpreter whose sys.path is laid out as the Lambda runtime lays it out (the
function's code, then the core layer, then the dependencies, here the venv's site-packages; no `site`
processing, so no .pth file such as the editable install's finder takes part), with the function's
environment from template.yaml as infra/openapi/build.py sets it (harmless placeholders, AWS pointed at a
closed port, X-Ray and metrics off). The child times only the import, with time.perf_counter; interpreter
start-up is reported apart (the parent's wall time of the whole process). One more sample per function runs
under `-X importtime` and names the heaviest modules, by cumulative import time, that VaultPay code imports
from outside itself: where a lazy import would cut the most.

"Before" is the same function at another commit (`--before`, by default ac904f6, the last commit before
the cold-start work), checked out into a temporary `git worktree` that is removed at the end. Its samples
alternate with the current tree's (and with the current tree under X-Ray on, as `Tracing: Active` runs
it in Lambda), so the machine's noise falls on all three alike.

    python bench/coldstart_bench.py --out bench/coldstart-results.md    # `make bench`
    python bench/coldstart_bench.py --samples 11 --only Login            # a closer look at some functions
    python bench/coldstart_bench.py --before HEAD~3 --only Relay         # against another commit
    python bench/coldstart_bench.py --before ""                          # the current tree only
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository is the root
from infra.openapi.build import ROOT, import_variables, load_template, template_functions

CORE_LAYER = ROOT / "layers" / "core"
MARK = "COLDSTART_MS="
BEGIN = "COLDSTART_BEGIN"
TOP_MODULES = 5
FLOOR = "import boto3"
# The last commit before the cold-start work (issue 7): lazy tracer, lazy batch processor.
DEFAULT_BEFORE = "ac904f6"
# `Tracing: Active` in Lambda: the task root is set and nothing disables Powertools' tracer.
XRAY_ON: Mapping[str, str | None] = {
    "POWERTOOLS_TRACE_DISABLED": None,
    "LAMBDA_TASK_ROOT": "/var/task",
    "AWS_LAMBDA_FUNCTION_NAME": "coldstart-bench",
}

# The child: only what start-up already loaded (os, sys, time) and importlib run before the timer, so the
# measured statement pays for every module it needs. `{statement}` is the one thing timed.
CHILD = """\
import importlib, os, sys, time
sys.path[0:0] = sys.argv[1].split(os.pathsep)
sys.stderr.write("{begin}\\n")
sys.stderr.flush()
began = time.perf_counter()
{statement}
print("{mark}%.3f" % ((time.perf_counter() - began) * 1000))
"""

# What any handler starts from: nothing, the AWS SDK, the Powertools objects every handler creates at import
# (docs/style.md, convention 3) and the REST resolver of the HTTP handlers, plain and validating (pydantic).
# The last changes the environment (None removes a variable): X-Ray on, as `Tracing: Active` has it.
BASELINES: tuple[tuple[str, str, Mapping[str, str | None]], ...] = (
    ("empty interpreter (`pass`)", "pass", {}),
    (FLOOR, "import boto3", {}),
    ("Powertools Logger+Tracer+Metrics", "from aws_lambda_powertools import Logger, Metrics, Tracer", {}),
    (
        "Powertools `Logger()`, `Tracer()`, `Metrics()` created (X-Ray off)",
        "from aws_lambda_powertools import Logger, Metrics, Tracer\nLogger(); Tracer(); Metrics()",
        {},
    ),
    (
        "Powertools event handler (APIGatewayRestResolver)",
        "from aws_lambda_powertools.event_handler import APIGatewayRestResolver",
        {},
    ),
    (
        "Powertools validating resolver (`enable_validation=True`)",
        "from aws_lambda_powertools.event_handler import APIGatewayRestResolver\n"
        "APIGatewayRestResolver(enable_validation=True)",
        {},
    ),
    (
        "Powertools `Logger()`, `Tracer()`, `Metrics()` created, X-Ray on (as in Lambda)",
        "from aws_lambda_powertools import Logger, Metrics, Tracer\nLogger(); Tracer(); Metrics()",
        XRAY_ON,
    ),
    (
        "VaultPay `get_logger()`, `get_tracer()`, `get_metrics()` (X-Ray off)",
        "from vaultpay.shared.observability import get_logger, get_metrics, get_tracer\n"
        "get_logger(); get_tracer(); get_metrics()",
        {},
    ),
    (
        "what a first call to AWS imports anyway: boto3 and PynamoDB",
        "import boto3, pynamodb.models",
        {},
    ),
    (
        "boto3 and PynamoDB, then `get_tracer()` X-Ray on (as in Lambda): X-Ray's own share",
        "import boto3, pynamodb.models\nfrom vaultpay.shared.observability import get_tracer\nget_tracer()",
        XRAY_ON,
    ),
)


@dataclass
class Target:
    """One thing to import cold: a function's handler module or a baseline statement."""

    name: str
    statement: str
    path: tuple[str, ...]
    environment: Mapping[str, str]
    module: str = ""  # the handler module, left out of its own heaviest-modules list
    is_baseline: bool = False
    import_ms: list[float] = field(default_factory=list)
    process_ms: list[float] = field(default_factory=list)
    top: list[Imported] = field(default_factory=list)
    error: str = ""
    # For a function: the same handler at the `--before` commit (None: not measured, or no such function
    # there) and the current one with X-Ray on; sampled in turn with this one.
    before: Target | None = None
    xray: Target | None = None

    def variants(self) -> list[Target]:
        return [t for t in (self.before, self, self.xray) if t is not None]

    def median(self) -> float:
        return statistics.median(self.import_ms)


def dependency_paths() -> tuple[str, ...]:
    """The venv's site-packages: the stand-in for the deps layer (/opt/python in Lambda)."""
    paths = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    return tuple(str(p) for p in paths if p)


def changed(environment: Mapping[str, str], changes: Mapping[str, str | None]) -> dict[str, str]:
    """The environment with `changes` applied: a value sets a variable, None removes it."""
    return {k: v for k, v in {**environment, **changes}.items() if v is not None}


def targets(only: Sequence[str], before_root: Path | None = None) -> list[Target]:
    deps = dependency_paths()
    functions = template_functions(load_template())
    found = []
    for function in functions:
        if only and not any(word.lower() in function.logical_id.lower() for word in only):
            continue
        statement = f"importlib.import_module({function.module_name!r})"
        environment = import_variables(function)
        after = Target(
            name=function.logical_id,
            statement=statement,
            path=(str(function.code_dir), str(CORE_LAYER), *deps),
            environment=environment,
            module=function.module_name,
        )
        after.xray = Target(
            f"{function.logical_id} (X-Ray on)", statement, after.path, changed(environment, XRAY_ON)
        )
        if before_root is not None:
            # The same function directory at the other commit, with its own core layer and the same
            # dependencies and environment: only VaultPay's code differs between the two.
            code_dir = before_root / function.code_dir.relative_to(ROOT)
            if (code_dir / function.module_file.name).exists():
                path = (str(code_dir), str(before_root / CORE_LAYER.relative_to(ROOT)), *deps)
                after.before = Target(f"{function.logical_id} (before)", statement, path, environment)
        found.append(after)
    # Baselines run with the environment every function shares (the template's Globals).
    variables = [set(import_variables(f).items()) for f in functions]
    shared = dict(set.intersection(*variables)) if variables else {}
    baselines = []
    for name, statement, changes in BASELINES:
        environment = changed(shared, changes)
        baselines.append(Target(name, statement, (str(CORE_LAYER), *deps), environment, is_baseline=True))
    return baselines + found


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """A detached checkout of `ref` in a temporary directory, removed (with its git metadata) on exit."""
    parent = Path(tempfile.mkdtemp(prefix="coldstart-before-"))
    path = parent / "tree"
    added = subprocess.run(
        ["git", "worktree", "add", "--detach", "--quiet", str(path), ref],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if added.returncode != 0:
        shutil.rmtree(parent, ignore_errors=True)
        raise SystemExit(f"git worktree add {ref}: {added.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, capture_output=True, check=False
        )
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, capture_output=True, check=False)
        shutil.rmtree(parent, ignore_errors=True)


def child_env(target: Target) -> dict[str, str]:
    # A clean environment: nothing of the caller's (PYTHONPATH, AWS profile, a real endpoint) leaks in.
    keep = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TZ") if k in os.environ}
    return {**keep, **target.environment}


def run_child(target: Target, *, importtime: bool = False) -> tuple[float, float, str]:
    """(import ms measured in the child, whole-process wall ms, the child's stderr)."""
    code = CHILD.format(statement=target.statement, mark=MARK, begin=BEGIN)
    flags = ["-X", "importtime"] if importtime else []
    command = [sys.executable, "-I", "-S", *flags, "-c", code, os.pathsep.join(target.path)]
    began = time.perf_counter()
    done = subprocess.run(
        command, env=child_env(target), capture_output=True, text=True, timeout=120, check=False
    )
    wall = (time.perf_counter() - began) * 1000
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"exit {done.returncode}: {tail}")
    return float(lines[-1].removeprefix(MARK)), wall, done.stderr


@dataclass
class Imported:
    """One line of `-X importtime`: a module, its cumulative import time and the module that imported it."""

    name: str
    cumulative_ms: float
    depth: int
    importer: str = ""  # empty: imported by the timed statement, or by code the handler ran at import


def import_tree(stderr: str) -> list[Imported]:
    """The modules the timed statement imported (`-X importtime` output after the child's mark), each with
    its importer. The output is post-order, nested by two spaces a level: a module's importer is the next
    line one level up."""
    _, _, timed = stderr.partition(BEGIN + "\n")
    modules: list[Imported] = []
    waiting: dict[int, list[Imported]] = {}
    for line in timed.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cumulative_us, column = line.removeprefix("import time:").split("|", 2)
        name = column.strip()
        depth = (len(column) - len(column.lstrip()) - 1) // 2
        module = Imported(name, int(cumulative_us) / 1000, depth)
        for child in waiting.pop(depth + 1, []):
            child.importer = name
        waiting.setdefault(depth, []).append(module)
        modules.append(module)
    return modules


def first_party(name: str, handler: str) -> bool:
    return name == handler or name.partition(".")[0] == "vaultpay"


def heaviest(modules: list[Imported], handler: str, count: int = TOP_MODULES) -> list[Imported]:
    """For a function: the heaviest modules VaultPay code imports from outside itself (third-party or the
    standard library), by cumulative time: each is one import statement that a lazy import would cut, and
    they do not overlap. For a baseline (no handler): simply the heaviest modules."""
    if handler:
        # importlib.import_module does not go through the C import that -X importtime logs, so the
        # handler has no line of its own: what it imports, or what code it calls imports, is at the top.
        modules = [
            m
            for m in modules
            if not first_party(m.name, handler) and first_party(m.importer or handler, handler)
        ]
    return sorted(modules, key=lambda m: -m.cumulative_ms)[:count]


def measure(target: Target, samples: int) -> None:
    """Samples the target and its variants in turn, the order reversed every round (before, after, X-Ray
    on; then X-Ray on, after, before), so that a burst of load hits each of them alike."""
    variants = target.variants()
    for variant in variants:
        try:
            run_child(variant)  # warm-up: writes bytecode and page caches, as a deployed package has them
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            variant.error = str(exc)
    for round_ in range(samples):
        for variant in variants if round_ % 2 == 0 else variants[::-1]:
            if variant.error:
                continue
            try:
                import_ms, wall_ms, _ = run_child(variant)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                variant.error = str(exc)
                continue
            variant.import_ms.append(import_ms)
            variant.process_ms.append(wall_ms)
    if not target.error:
        try:
            target.top = heaviest(import_tree(run_child(target, importtime=True)[2]), target.module)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            target.error = str(exc)


def git(*args: str) -> str:
    done = subprocess.run(
        ["git", "--no-optional-locks", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()} ({platform.machine()})"


def fmt_top(top: list[Imported], handler: str) -> str:
    def one(m: Imported) -> str:
        via = f" ← `{m.importer}`" if handler and m.importer else ""
        return f"`{m.name}` {m.cumulative_ms:.0f}{via}"

    return ", ".join(one(m) for m in top) or "-"


def report(all_targets: list[Target], samples: int, before_ref: str = "") -> str:
    floor = next((t for t in all_targets if t.name == FLOOR and t.import_ms), None)
    floor_ms = floor.median() if floor else None
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    before_line = 'not measured (`--before ""`)'
    if before_ref:
        resolved = git("rev-parse", "--short", f"{before_ref}^{{commit}}") or before_ref
        subject = git("log", "-1", "--format=%s", resolved)
        before_line = f"{resolved} ({subject}), checked out into a temporary git worktree"

    def delta(ms: float) -> str:
        return f"{ms - floor_ms:+.0f}" if floor_ms is not None else "-"

    def failed(t: Target) -> str:
        return "failed: " + t.error.replace("|", r"\|")

    def baseline_row(t: Target) -> str:
        if t.error:
            return f"| {t.name} | {failed(t)} | | | | |"
        return (
            f"| {t.name} | {t.median():.0f} | {min(t.import_ms):.0f} | {delta(t.median())} "
            f"| {statistics.median(t.process_ms):.0f} | {fmt_top(t.top, t.module)} |"
        )

    def cell(t: Target | None) -> str:
        if t is None:
            return "-"
        return failed(t) if t.error else f"{t.median():.0f}"

    def function_row(t: Target) -> str:
        if t.error:
            return f"| {t.name} | {cell(t.before)} | {failed(t)} | | | | {cell(t.xray)} | | |"
        after = t.median()
        change, percent = "-", "-"
        if t.before is not None and t.before.import_ms:
            before = t.before.median()
            change = f"{after - before:+.0f}"
            percent = f"{(after - before) / before * 100:+.0f}%" if before else "-"
        return (
            f"| {t.name} | {cell(t.before)} | {after:.0f} | {change} | {percent} | {delta(after)} "
            f"| {cell(t.xray)} | {statistics.median(t.process_ms):.0f} | {fmt_top(t.top, t.module)} |"
        )

    baselines = [t for t in all_targets if t.is_baseline]
    functions = [t for t in all_targets if not t.is_baseline]
    ordered = sorted(functions, key=lambda t: (not t.error, -statistics.median(t.import_ms or [0])))
    measured = [t.median() for t in functions if t.import_ms]
    above = sum(1 for ms in measured if floor_ms is not None and ms > floor_ms)
    pairs = [
        (t.before.median(), t.median()) for t in functions if t.import_ms and t.before and t.before.import_ms
    ]
    xrays = [t.xray.median() - t.median() for t in functions if t.import_ms and t.xray and t.xray.import_ms]
    summary = []
    if pairs:
        before_all, after_all = (statistics.median(side) for side in zip(*pairs, strict=True))
        summary.append(
            f"Over the {len(pairs)} functions measured both ways, the median import went from "
            f"{before_all:.0f} ms to {after_all:.0f} ms ({after_all - before_all:+.0f} ms); summed over "
            f"them, from {sum(b for b, _ in pairs):.0f} ms to {sum(a for _, a in pairs):.0f} ms."
        )
    if xrays:
        summary.append(
            f"X-Ray on (as `Tracing: Active` runs in Lambda) adds a median "
            f"{statistics.median(xrays):+.0f} ms to the current import; most of it is botocore, which the "
            "function's first AWS call imports anyway: the last two baselines separate X-Ray's own share."
        )

    lines = [
        "# Cold-start import time per function",
        "",
        "Generated by `python bench/coldstart_bench.py` (`make bench`); do not edit by hand.",
        "",
        f"- Machine: {machine()}",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Commit: {commit}",
        f"- Before: {before_line}",
        f"- Python: {platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        f"- Samples: {samples} fresh interpreters per row and per column after one warm-up each (bytecode "
        "cached), before / after / X-Ray on taken in turn; plus one `-X importtime` run for the module list",
        f"- Load average (1/5/15 min) when the run ended: {load}; other work on the machine adds noise, "
        "which the min column shows least",
        "",
        "Each sample is `python -I -S -c` with sys.path as the Lambda runtime builds it (function code, "
        "`layers/core`, then the dependencies: here the venv's site-packages) and the function's environment "
        "from template.yaml with infra/openapi/build.py's harmless values (X-Ray and metrics off, AWS at a "
        "closed port). *import ms* is `importlib.import_module` of the handler module timed with "
        "`time.perf_counter` inside the child; *process ms* is the parent's wall time of the whole process "
        "(interpreter start-up included). The Δ is over the median of `import boto3`: shared modules load "
        "once, so any function that calls AWS pays at least that floor by its first call.",
        "",
        "*before* is the same handler, core layer and environment at the before commit; *after* the current "
        "tree; *X-Ray on* the current tree with LAMBDA_TASK_ROOT set and POWERTOOLS_TRACE_DISABLED unset, as "
        "a deployed function with `Tracing: Active` imports it (the X-Ray SDK never sends at import).",
        "",
        "The module lists come from one more sample under `-X importtime`. For a function they are the "
        f"{TOP_MODULES} heaviest modules that VaultPay code, the handler or `vaultpay.*`, "
        "imports from outside itself, with the importer when it is a `vaultpay` module: each is one import "
        "statement a lazy import would cut, and they do not overlap. A module shared by two of them is "
        "counted under whichever imported it first.",
        "",
        "## Baselines",
        "",
        "| | import ms (median) | min | Δ vs `import boto3` | process ms (median) "
        "| heaviest modules, cumulative ms |\n|---|---:|---:|---:|---:|---|",
        *(baseline_row(t) for t in baselines),
        "",
        f"## Functions, slowest first ({len(functions)} functions; {above} above the `import boto3` floor)",
        "",
        *(line for text in summary for line in (text, "")),
        "| | before ms | after ms | Δ ms | Δ % | after vs `import boto3` | X-Ray on ms | process ms (after) "
        "| heaviest imports out of VaultPay code (after), cumulative ms ← importer |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        *(function_row(t) for t in ordered),
        "",
        "Caveats: this machine's CPU and Python, not Lambda's (the template says python3.13 on arm64), "
        "so read the figures relative to the floor. Only the import is timed: what a handler builds at its "
        "first call (settings, clients, boto3 or PynamoDB) counts in Lambda's first invocation, not here; "
        "deferring what every call needs moves its cost, only what some paths need is saved.",
        "",
    ]
    return "\n".join(lines)


# ---- first invocation: init and the first request, in a fresh local cloud ----------------------------------

BARE = "BareGetItemFunction"  # bench/fixtures: import boto3, build a client, one GetItem
FIRST_INVOCATION_TARGET = 1.3  # issue 17: every function's first invocation within 1.3x the bare handler's
_REPORT = re.compile(r"REPORT RequestId: \S+\s+Duration: ([0-9.]+) ms.*?Init Duration: ([0-9.]+) ms")


@dataclass
class FirstInvocation:
    """A function's first invocation in the run: its worker's init and the request that started it."""

    function: str
    init_ms: float
    duration_ms: float

    @property
    def total_ms(self) -> float:
        return self.init_ms + self.duration_ms


def first_invocations(log_dir: Path) -> dict[str, FirstInvocation]:
    """Each function's first cold REPORT line in the local cloud's Lambda logs, by logical id."""
    found: dict[str, FirstInvocation] = {}
    for log in sorted(log_dir.glob("*.log")):
        match = _REPORT.search(log.read_text(encoding="utf-8", errors="replace"))
        if match is None:
            continue
        logical_id = log.stem.rsplit("-", 1)[-1]
        found[logical_id] = FirstInvocation(logical_id, float(match.group(2)), float(match.group(1)))
    return found


def measure_first_invocations() -> tuple[dict[str, FirstInvocation], dict[str, Any]]:
    """A fresh local cloud: the API latency bench's cold tour calls every route once (so every function
    behind them, the authorizer, the saga's steps and the consumers run for the first time), then the bare
    handler is invoked once, cold, in the same cloud."""
    import json

    sys.path.insert(0, str(ROOT / "bench"))
    from api_latency_bench import Bench
    from localcloud_bench import start_cloud, stop_cloud
    from saga_bench import Cloud

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp) / "s"
        proc, state, _startup = start_cloud(state_dir)
        try:
            cloud = Cloud(state, state_dir)
            options = argparse.Namespace(
                n=1, n_small=1, n_write=1, n_auth=1, n_transfers=1, n_reviews=1, warmup=0, customers=1
            )
            Bench(cloud, options).cold_tour()
            time.sleep(5)  # the relay, consumers and audit after the tour's last request
            answer = cloud.client("lambda").invoke(FunctionName=cloud.function_name(BARE), Payload=b"{}")
            if answer.get("FunctionError"):
                raise SystemExit(f"{BARE} failed: {json.loads(answer['Payload'].read())}")
            time.sleep(1)  # the REPORT line reaches the log file after the answer
            found = first_invocations(state_dir / "logs" / "lambda")
        finally:
            stop_cloud(proc)
    return found, {"load": [load_before, os.getloadavg()[0]]}


def first_invocation_report(found: Mapping[str, FirstInvocation], load: Sequence[float]) -> str:
    if BARE not in found:
        return "## First invocation\n\nThe bare handler did not run: no figure.\n"
    bare = found[BARE].total_ms
    rows = sorted(
        (f for name, f in found.items() if name not in (BARE, "NoopFunction")), key=lambda f: -f.total_ms
    )
    over = [f.function for f in rows if f.total_ms > FIRST_INVOCATION_TARGET * bare]
    lines = [
        "## First invocation (init + the first request), vs a bare boto3 handler",
        "",
        f"One fresh local cloud: `bench/api_latency_bench.py`'s cold tour calls every route once, then "
        f"`{BARE}` (bench/fixtures: `import boto3`, a client at import, one `GetItem`) is invoked once, "
        f"cold. Each figure is the local Lambda runtime's REPORT line of the function's first invocation: "
        f"`Init Duration` (worker start and the handler's import) + `Duration` (the first request: settings, "
        f"clients, secrets, and every call it waits on, another function's cold start included). Load "
        f"average before/after {load[0]:.2f}/{load[1]:.2f}.",
        "",
        f"Bare handler: {bare:.0f} ms (init {found[BARE].init_ms:.0f} + first request "
        f"{found[BARE].duration_ms:.0f}). Target: every function ≤ {FIRST_INVOCATION_TARGET}x "
        f"= {FIRST_INVOCATION_TARGET * bare:.0f} ms; over it: {', '.join(over) or 'none'}.",
        "",
        "| function | init ms | first request ms | total ms | x bare |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {f.function} | {f.init_ms:.0f} | {f.duration_ms:.0f} | {f.total_ms:.0f} | "
            f"{f.total_ms / bare:.2f} |"
            for f in rows
        ),
        "",
    ]
    return "\n".join(lines)


def figures(all_targets: Sequence[Target], found: Mapping[str, FirstInvocation]) -> dict[str, Any]:
    """Issue 17's cold-start figures (bench/results.json): the median function's import, the `import boto3`
    floor, and the worst function's first invocation against the bare GetItem handler's, same run."""
    floor = next((t for t in all_targets if t.name == FLOOR and t.import_ms), None)
    imports = [t.median() for t in all_targets if not t.is_baseline and t.import_ms]
    bare = found.get(BARE)
    ratios = {
        name: f.total_ms / bare.total_ms
        for name, f in found.items()
        if bare is not None and name not in (BARE, "NoopFunction")
    }
    worst = max(ratios, key=lambda name: ratios[name]) if ratios else None
    return {
        "coldstart_median_ms": statistics.median(imports) if imports else None,
        "coldstart_boto3_floor_ms": floor.median() if floor else None,
        "first_invocation_ratio_max": ratios[worst] if worst else None,
        "first_invocation_worst": worst,
        "first_invocation_bare_ms": bare.total_ms if bare else None,
        "first_invocation_ms": {name: f.total_ms for name, f in sorted(found.items())},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=5, help="fresh interpreters per row (default 5)")
    parser.add_argument("--only", nargs="*", default=[], help="functions whose logical id contains a word")
    parser.add_argument(
        "--before",
        default=DEFAULT_BEFORE,
        help=f'the commit to compare with (default {DEFAULT_BEFORE}); "" measures the current tree only',
    )
    parser.add_argument("--out", type=Path, help="also write the markdown table to this file")
    parser.add_argument(
        "--first-invocation",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure each function's first invocation in a fresh local cloud (default on)",
    )
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error("--samples must be at least 1")
    if args.before and not git("rev-parse", "--verify", "--quiet", f"{args.before}^{{commit}}"):
        # A shallow clone (CI) may not hold the old commit: measure the current tree rather than fail.
        print(
            f"--before {args.before}: no such commit here; measuring the current tree only", file=sys.stderr
        )
        args.before = ""
    with contextlib.ExitStack() as stack:
        before_root = stack.enter_context(worktree(args.before)) if args.before else None
        all_targets = targets(args.only, before_root)
        for number, target in enumerate(all_targets, 1):
            measure(target, args.samples)
            outcome = " / ".join(t.error or f"{t.median():.0f} ms" for t in target.variants())
            print(f"[{number}/{len(all_targets)}] {target.name}: {outcome}", file=sys.stderr, flush=True)
    text = report(all_targets, args.samples, args.before)
    found: dict[str, FirstInvocation] = {}
    if args.first_invocation:
        found, info = measure_first_invocations()
        text += "\n" + first_invocation_report(found, info["load"])
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        sys.path.insert(0, str(ROOT / "bench"))
        from runinfo import write_figures

        write_figures(args.out, "coldstart", figures(all_targets, found))
        print(f"wrote {args.out} and its .json", file=sys.stderr)
    return 1 if any(v.error for t in all_targets for v in t.variants()) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Cold-start import time of every function's handler module, against `import boto3` as the floor.

Each sample is a fresh interpreter whose sys.path is laid out as the Lambda runtime lays it out (the
function's code, then the core layer, then the dependencies, here the venv's site-packages; no `site`
processing, so no .pth file such as the editable install's finder takes part), with the function's
environment from template.yaml as infra/openapi/build.py sets it (harmless placeholders, AWS pointed at a
closed port, X-Ray and metrics off). The child times only the import, with time.perf_counter; interpreter
start-up is reported apart (the parent's wall time of the whole process). One more sample per function runs
under `-X importtime` and names the heaviest modules, by cumulative import time, that VaultPay code imports
from outside itself: where a lazy import would cut the most.

    python bench/coldstart_bench.py --out bench/coldstart-results.md    # `make bench`
    python bench/coldstart_bench.py --samples 11 --only Login            # a closer look at some functions
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository is the root
from infra.openapi.build import ROOT, import_variables, load_template, template_functions

CORE_LAYER = ROOT / "layers" / "core"
MARK = "COLDSTART_MS="
BEGIN = "COLDSTART_BEGIN"
TOP_MODULES = 5
FLOOR = "import boto3"

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
# (STYLE.md, convention 3) and the REST resolver of the HTTP handlers, plain and validating (pydantic).
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
        {"POWERTOOLS_TRACE_DISABLED": None, "AWS_LAMBDA_FUNCTION_NAME": "coldstart-bench"},
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


def dependency_paths() -> tuple[str, ...]:
    """The venv's site-packages: the stand-in for the deps layer (/opt/python in Lambda)."""
    paths = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    return tuple(str(p) for p in paths if p)


def targets(only: Sequence[str]) -> list[Target]:
    deps = dependency_paths()
    functions = template_functions(load_template())
    found = []
    for function in functions:
        if only and not any(word.lower() in function.logical_id.lower() for word in only):
            continue
        found.append(
            Target(
                name=function.logical_id,
                statement=f"importlib.import_module({function.module_name!r})",
                path=(str(function.code_dir), str(CORE_LAYER), *deps),
                environment=import_variables(function),
                module=function.module_name,
            )
        )
    # Baselines run with the environment every function shares (the template's Globals).
    variables = [set(import_variables(f).items()) for f in functions]
    shared = dict(set.intersection(*variables)) if variables else {}
    baselines = []
    for name, statement, changes in BASELINES:
        environment = {k: v for k, v in {**shared, **changes}.items() if v is not None}
        baselines.append(Target(name, statement, (str(CORE_LAYER), *deps), environment, is_baseline=True))
    return baselines + found


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
    try:
        run_child(target)  # warm-up: writes bytecode caches and the page cache, as a deployed package has
        for _ in range(samples):
            import_ms, wall_ms, _ = run_child(target)
            target.import_ms.append(import_ms)
            target.process_ms.append(wall_ms)
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


def report(all_targets: list[Target], samples: int) -> str:
    floor = next((t for t in all_targets if t.name == FLOOR and t.import_ms), None)
    floor_ms = statistics.median(floor.import_ms) if floor else None
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"

    def delta(ms: float) -> str:
        return f"{ms - floor_ms:+.0f}" if floor_ms is not None else "-"

    def row(t: Target) -> str:
        if t.error:
            error = t.error.replace("|", r"\|")
            return f"| {t.name} | failed | | | | {error} |"
        median = statistics.median(t.import_ms)
        return (
            f"| {t.name} | {median:.0f} | {min(t.import_ms):.0f} | {delta(median)} "
            f"| {statistics.median(t.process_ms):.0f} | {fmt_top(t.top, t.module)} |"
        )

    baselines = [t for t in all_targets if t.is_baseline]
    functions = [t for t in all_targets if not t.is_baseline]
    ordered = sorted(functions, key=lambda t: (not t.error, -statistics.median(t.import_ms or [0])))
    measured = [statistics.median(t.import_ms) for t in functions if t.import_ms]
    above = sum(1 for ms in measured if floor_ms is not None and ms > floor_ms)

    def header(modules: str) -> str:
        return (
            "| | import ms (median) | min | Δ vs `import boto3` | process ms (median) "
            f"| {modules} |\n|---|---:|---:|---:|---:|---|"
        )

    lines = [
        "# Cold-start import time per function",
        "",
        "Generated by `python bench/coldstart_bench.py` (`make bench`); do not edit by hand.",
        "",
        f"- Machine: {machine()}",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Commit: {commit}",
        f"- Python: {platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        f"- Samples: {samples} fresh interpreters per row after one warm-up (bytecode cached), "
        "plus one `-X importtime` run for the module list",
        f"- Load average (1/5/15 min) when the run ended: {load}; other work on the machine adds noise, "
        "which the min column shows least",
        "",
        "Each sample is `python -I -S -c` with sys.path as the Lambda runtime builds it (function code, "
        "`layers/core`, then the dependencies: here the venv's site-packages) and the function's environment "
        "from template.yaml with infra/openapi/build.py's harmless values (X-Ray and metrics off, AWS at a "
        "closed port). *import ms* is `importlib.import_module` of the handler module timed with "
        "`time.perf_counter` inside the child; *process ms* is the parent's wall time of the whole process "
        "(interpreter start-up included). The Δ is over the median of `import boto3`: shared modules load "
        "once, so any function that calls AWS pays at least that floor.",
        "",
        "The module lists come from one more sample under `-X importtime`. For a function they are the "
        f"{TOP_MODULES} heaviest modules that VaultPay code, the handler or `vaultpay.*`, "
        "imports from outside itself, with the importer when it is a `vaultpay` module: each is one import "
        "statement a lazy import would cut, and they do not overlap. A module shared by two of them is "
        "counted under whichever imported it first.",
        "",
        "## Baselines",
        "",
        header("heaviest modules, cumulative ms"),
        *(row(t) for t in baselines),
        "",
        f"## Functions, slowest first ({len(functions)} functions; {above} above the `import boto3` floor)",
        "",
        header("heaviest imports out of VaultPay code, cumulative ms ← importer"),
        *(row(t) for t in ordered),
        "",
        "Caveats: this machine's CPU and Python, not Lambda's (the template says python3.13 on arm64), "
        "so read the figures relative to the floor. The functions run with X-Ray off; in Lambda, where "
        "`Tracing: Active`, `Tracer()` also patches the libraries X-Ray traces, at import: the last "
        "baseline measures that part.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=5, help="fresh interpreters per row (default 5)")
    parser.add_argument("--only", nargs="*", default=[], help="functions whose logical id contains a word")
    parser.add_argument("--out", type=Path, help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error("--samples must be at least 1")
    all_targets = targets(args.only)
    for number, target in enumerate(all_targets, 1):
        measure(target, args.samples)
        outcome = target.error or f"{statistics.median(target.import_ms):.0f} ms"
        print(f"[{number}/{len(all_targets)}] {target.name}: {outcome}", file=sys.stderr, flush=True)
    text = report(all_targets, args.samples)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    return 1 if any(t.error for t in all_targets) else 0


if __name__ == "__main__":
    sys.exit(main())

"""`sam build`'s output as the local cloud runs it: freshness, its Python, what replaces foreign wheels.

AWS runs what `sam build` writes into .aws-sam/build on the template's runtime, so the local cloud does too
when this machine has that Python: a layer that forgot a file, or code that breaks on 3.13 only, fails here.
One departure: a layer built for another platform than this machine's (VaultPay's DepsLayer is arm64 Linux
wheels; a laptop is x86_64 or macOS) cannot load its native modules here, so the local cloud puts a
host-platform install of the same requirements in its place (.aws-sam/local-deps/<LayerId>/<tag>).

`python -m localcloud.build` builds when stale (`make run` and `make test` call it); `--check` only tells.
"""

from __future__ import annotations

import argparse
import functools
import glob
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcloud.spec import Interpreter

BUILD_DIR = Path(".aws-sam") / "build"
# Beside the build, not in it: sam build empties .aws-sam/build, and a plain `sam build` (which writes no
# stamp) must read as stale until the local cloud's own build has checked what it built from.
STAMP = Path(".aws-sam") / "localcloud-build.json"
LOCAL_DEPS = Path(".aws-sam") / "local-deps"
FUNCTION = "AWS::Serverless::Function"
LAYER = "AWS::Serverless::LayerVersion"
# Caches that tools write into source folders; none of them changes what sam build produces.
IGNORED_DIRS = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", "node_modules"})
IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", "~")


class BuildError(RuntimeError):
    """sam build or the host-platform install failed; the message carries the tool's last lines."""


# ---- the template's Python -------------------------------------------------------------------------------
@functools.cache
def find_python(runtime: str) -> Interpreter | None:
    """A CPython of the runtime's version ("python3.13") on this machine, or None.

    The places the layers' Makefiles look too: $PYTHON313, python3.13 on PATH, then pyenv's versions (whose
    shim answers only when pyenv selects that version, so each candidate is asked its version).
    """
    if not runtime.startswith("python3."):
        return None
    minor = runtime.removeprefix("python")
    candidates = [
        os.environ.get(_variable(runtime), ""),
        shutil.which(runtime) or "",
        *sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{minor}*/bin/{runtime}")), reverse=True),
    ]
    for candidate in dict.fromkeys(c for c in candidates if c):
        try:
            done = subprocess.run(
                [candidate, "-I", "-S", "-c", "import sys; print(sys.version.split()[0])"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except OSError:
            continue
        version = done.stdout.strip()
        if done.returncode == 0 and (version == minor or version.startswith(minor + ".")):
            return Interpreter(executable=candidate, version=version, isolated=True)
    return None


def host_architecture() -> str | None:
    """This machine in Lambda's terms ("x86_64", "arm64"), or None when it is not Linux (no Lambda wheel
    for Linux loads on macOS or Windows, whatever the CPU)."""
    if not sys.platform.startswith("linux"):
        return None
    machine = platform.machine().lower()
    return {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)


# ---- what the template builds ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Resource:
    """A function or layer that sam build builds from a local folder."""

    logical_id: str
    kind: str  # FUNCTION or LAYER
    source: Path  # CodeUri / ContentUri, absolute
    runtime: str  # the function's Runtime, a layer's first CompatibleRuntimes
    architecture: str  # "x86_64" or "arm64"
    build_method: str  # Metadata.BuildMethod ("makefile", ...), "" when sam picks the workflow


@dataclass(frozen=True)
class Project:
    """One template and where sam build puts its output."""

    template: Path
    resources: dict[str, Resource]
    root: Path = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", self.template.parent)

    @property
    def build_dir(self) -> Path:
        return self.root / BUILD_DIR

    @property
    def stamp(self) -> Path:
        return self.root / STAMP

    def built(self, logical_id: str) -> Path:
        return self.build_dir / logical_id

    def source_roots(self) -> list[Path]:
        """The folders whose files a build depends on: the top folder (under the template's directory) of
        every code folder, so what a Makefile includes from beside the code (functions/function.mk) counts."""
        roots: set[Path] = set()
        for resource in self.resources.values():
            try:
                top = resource.source.relative_to(self.root).parts[0]
            except (ValueError, IndexError):
                roots.add(resource.source)
                continue
            roots.add(self.root / top)
        return sorted(roots)

    def foreign_layers(self) -> list[Resource]:
        """Layers with a requirements.txt built for another platform than this machine's."""
        host = host_architecture()
        return [
            r
            for r in self.resources.values()
            if r.kind == LAYER and r.architecture != host and (r.source / "requirements.txt").is_file()
        ]

    def local_deps(self, layer: Resource) -> Path:
        """Where the host-platform install replacing `layer`'s build lives: a layer root (holding python/)."""
        tag = "cp" + layer.runtime.removeprefix("python").replace(".", "") + "-" + platform.machine().lower()
        return self.root / LOCAL_DEPS / layer.logical_id / tag


def read_project(template: Path, sam: Mapping[str, Any]) -> Project:
    """The functions and layers of a loaded SAM template that sam build builds from local folders."""
    template = template.resolve()
    globals_fn = sam.get("Globals", {}).get("Function", {})
    resources: dict[str, Resource] = {}
    for logical_id, resource in sam.get("Resources", {}).items():
        rtype = resource.get("Type")
        props = resource.get("Properties", {}) or {}
        metadata = resource.get("Metadata", {}) or {}
        if rtype == FUNCTION:
            uri = props.get("CodeUri", globals_fn.get("CodeUri"))
            runtime = props.get("Runtime", globals_fn.get("Runtime", ""))
            arches = props.get("Architectures", globals_fn.get("Architectures", ["x86_64"]))
        elif rtype == LAYER:
            uri = props.get("ContentUri")
            runtime = (props.get("CompatibleRuntimes") or [""])[0]
            arches = [metadata.get("BuildArchitecture")] if metadata.get("BuildArchitecture") else None
            arches = arches or props.get("CompatibleArchitectures") or ["x86_64"]
        else:
            continue
        if not isinstance(uri, str) or uri.startswith("s3://") or not isinstance(runtime, str):
            continue  # inline or S3 code, or an intrinsic: nothing sam build builds here
        resources[logical_id] = Resource(
            logical_id=logical_id,
            kind=rtype,
            source=(template.parent / uri).resolve(),
            runtime=runtime,
            architecture=str(arches[0]) if isinstance(arches, list) and arches else "x86_64",
            build_method=str(metadata.get("BuildMethod", "")),
        )
    return Project(template, resources)


def load_project(template: Path) -> Project:
    """read_project of a template file, parsed with libyaml when present: the freshness check runs before
    every `make run` and `make test`, and the pure-Python parser takes most of a second on template.yaml."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader: Any = type("TagsAsMappings", (base,), {})

    def tagged(loader: Any, suffix: str, node: Any) -> dict[str, Any]:
        # Only plain values matter here (paths, runtimes, architectures); an intrinsic stays a mapping.
        if isinstance(node, yaml.ScalarNode):
            return {suffix: loader.construct_scalar(node)}
        if isinstance(node, yaml.SequenceNode):
            return {suffix: loader.construct_sequence(node, deep=True)}
        return {suffix: loader.construct_mapping(node, deep=True)}

    loader.add_multi_constructor("!", tagged)
    with template.open() as fh:
        sam = yaml.load(fh, Loader=loader)  # noqa: S506 - a SafeLoader with CloudFormation's tags only
    if not isinstance(sam, dict):
        raise BuildError(f"{template} is not a SAM template")
    return read_project(template, sam)


# ---- freshness -------------------------------------------------------------------------------------------
def _files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for folder, dirs, names in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in IGNORED_DIRS)
        for name in sorted(names):
            if not name.endswith(IGNORED_SUFFIXES):
                yield Path(folder) / name


def source_digest(project: Project) -> str:
    """A hash of the template and of every file sam build reads (links followed, caches ignored)."""
    digest = hashlib.sha256()
    for root in [project.template, *project.source_roots()]:
        for path in _files(root):
            digest.update(str(path.relative_to(project.root)).encode() + b"\0")
            try:
                digest.update(hashlib.sha256(path.read_bytes()).digest())
            except OSError:  # a dangling link: its absence is what gets hashed
                digest.update(b"missing")
    return digest.hexdigest()


# A layer's hashed lock (layers/deps/requirements.lock), installed with --require-hashes where it exists.
LOCK_FILE = "requirements.lock"


def _requirements_digest(layer: Resource, interpreter: Interpreter) -> str:
    digest = hashlib.sha256(f"{interpreter.version} {platform.machine()}".encode())
    for name in ("requirements.txt", "constraints.txt", LOCK_FILE):
        path = layer.source / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b""))
    return digest.hexdigest()


@dataclass(frozen=True)
class Freshness:
    fresh: bool
    reason: str  # why not, or what is there


def build_freshness(project: Project) -> Freshness:
    """Whether .aws-sam/build holds what the sources build now (sam build's own part only)."""
    if not (project.build_dir / "template.yaml").is_file():
        return Freshness(False, f"no sam build output in {project.build_dir}")
    missing = [r.logical_id for r in project.resources.values() if not project.built(r.logical_id).is_dir()]
    if missing:
        return Freshness(False, f"sam build output lacks {', '.join(sorted(missing)[:3])}")
    try:
        stamp = json.loads(project.stamp.read_text())
    except (OSError, ValueError):
        return Freshness(False, f"{project.build_dir} was not built by `python -m localcloud.build`")
    if stamp.get("digest") != source_digest(project):
        return Freshness(False, f"the sources changed since {project.build_dir} was built")
    return Freshness(True, f"built {time.strftime('%Y-%m-%d %H:%M', time.localtime(stamp.get('at', 0)))}")


def deps_freshness(project: Project, layer: Resource, interpreter: Interpreter) -> Freshness:
    target = project.local_deps(layer)
    try:
        recorded = (target / "requirements.sha256").read_text().strip()
    except OSError:
        return Freshness(False, f"no host-platform install of {layer.logical_id} in {target}")
    if recorded != _requirements_digest(layer, interpreter):
        return Freshness(False, f"{layer.logical_id}'s requirements changed since {target} was installed")
    return Freshness(True, str(target))


def freshness(project: Project) -> Freshness:
    """The build and every host-platform install together: what the local cloud needs to run the build."""
    built = build_freshness(project)
    if not built.fresh:
        return built
    for layer in project.foreign_layers():
        interpreter = find_python(layer.runtime)
        if interpreter is None:
            return Freshness(False, f"no {layer.runtime} on this machine for {layer.logical_id}")
        deps = deps_freshness(project, layer, interpreter)
        if not deps.fresh:
            return deps
    return built


# ---- building --------------------------------------------------------------------------------------------
def _sam() -> str:
    beside = Path(sys.executable).parent / "sam"  # the venv's, which requirements/dev.lock pins
    return str(beside) if beside.exists() else (shutil.which("sam") or "sam")


def _build_env(project: Project) -> dict[str, str]:
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    # The venv's bin first, as `make build` has it: sam, and the python3 the layers' Makefiles download
    # wheels with (never the one that compiles bytecode: the Makefiles find a CPython 3.13 for that, first
    # through PYTHON313, which is set here to the one the local cloud runs the functions on).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
    for runtime in sorted({r.runtime for r in project.resources.values()}):
        interpreter = find_python(runtime)
        if interpreter is not None:
            env.setdefault(_variable(runtime), interpreter.executable)
    return env


def sam_build(project: Project, *, logical_ids: tuple[str, ...] = ()) -> float:
    """`sam build --cached --parallel` for the template (or only `logical_ids`); the seconds it took."""
    env = _build_env(project)
    began = time.monotonic()
    done = subprocess.run(
        [_sam(), "build", "--cached", "--parallel", "--template-file", str(project.template), *logical_ids],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BuildError(f"sam build failed:\n{(done.stdout + done.stderr)[-4000:]}")
    return time.monotonic() - began


def install_host_deps(project: Project, layer: Resource, interpreter: Interpreter) -> float:
    """The layer's requirements (and constraints) for this machine's platform, with `interpreter`'s pip: the
    same pins as the layer, other wheels. Built beside the target and swapped in, so a failure leaves the old
    install. The seconds it took."""
    target = project.local_deps(layer)
    target.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix=".installing-", dir=target.parent))
    try:
        command = [
            interpreter.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-input", "--only-binary=:all:", "--target", str(scratch / "python"),
        ]  # fmt: skip
        lock = layer.source / LOCK_FILE
        if lock.is_file():
            # The layer's own hashed lock, as its build installs it (it carries this platform's hashes too).
            command += ["--require-hashes", "--requirement", str(lock)]
        else:
            command += ["--requirement", str(layer.source / "requirements.txt")]
            if (layer.source / "constraints.txt").is_file():
                command += ["--constraint", str(layer.source / "constraints.txt")]
        done = subprocess.run(
            command,
            env={**os.environ, "PIP_ROOT_USER_ACTION": "ignore"},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BuildError(
                f"installing {layer.logical_id}'s requirements for this machine failed:\n"
                f"{(done.stdout + done.stderr)[-4000:]}"
            )
        # Console scripts name this machine's interpreter in their shebang; the layer drops them too.
        shutil.rmtree(scratch / "python" / "bin", ignore_errors=True)
        (scratch / "requirements.sha256").write_text(_requirements_digest(layer, interpreter) + "\n")
        _swap_in(scratch, target, old=target.with_name(target.name + ".old"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return time.monotonic() - began


def rebuild(project: Project, resource: Resource) -> float:
    """Rebuilds one function or layer in place, for hot reload; the seconds it took.

    A makefile build runs its Makefile's target as sam build does (`make build-<LogicalId>` with
    ARTIFACTS_DIR), into a scratch folder that then replaces the old output: milliseconds for a function,
    about a second for a layer that compiles its bytecode, where `sam build <LogicalId>` takes seconds.
    A foreign layer is installed for this machine again. Other build methods need sam build.
    """
    if resource.kind == LAYER and resource in project.foreign_layers():
        interpreter = find_python(resource.runtime)
        if interpreter is None:
            raise BuildError(f"no {resource.runtime} on this machine for {resource.logical_id}")
        return install_host_deps(project, resource, interpreter)
    if resource.build_method != "makefile":
        raise BuildError(
            f"{resource.logical_id} is not a makefile build (BuildMethod "
            f"{resource.build_method or 'default'}): hot reload cannot rebuild it; `make build` does"
        )
    target = project.built(resource.logical_id)
    began = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix=f".{resource.logical_id}-", dir=project.build_dir))
    try:
        done = subprocess.run(
            [
                "make",
                "--no-print-directory",
                "--makefile",
                str(resource.source / "Makefile"),
                f"build-{resource.logical_id}",
                f"ARTIFACTS_DIR={scratch}",
            ],
            cwd=resource.source,
            env=_build_env(project),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-4000:]
            raise BuildError(f"make build-{resource.logical_id} failed:\n{output}")
        _swap_in(scratch, target, old=target.with_name(f".{resource.logical_id}.old"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return time.monotonic() - began


def _swap_in(scratch: Path, target: Path, *, old: Path) -> None:
    """Puts a finished build in place of the last one, moving the last one aside first, so a reader never
    sees a half-written folder and a failed build never removes a good one."""
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    scratch.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def write_stamp(project: Project, digest: str, seconds: float) -> None:
    project.stamp.parent.mkdir(parents=True, exist_ok=True)
    tmp = project.stamp.with_suffix(".tmp")
    tmp.write_text(json.dumps({"digest": digest, "at": time.time(), "seconds": round(seconds, 2)}) + "\n")
    tmp.replace(project.stamp)


def ensure_built(project: Project, say: Any = print) -> bool:
    """Builds what is stale: sam build and each foreign layer's host-platform install, side by side (they
    share no file, and both mostly wait on unpacking wheels). True if it built anything."""
    jobs: list[Callable[[], None]] = []
    built = build_freshness(project)
    if not built.fresh:
        digest = source_digest(project)  # before the build: an edit during it must leave the build stale

        def build() -> None:
            seconds = sam_build(project)
            write_stamp(project, digest, seconds)
            say(f"sam build: done in {seconds:.1f} s")

        say(f"sam build: {built.reason}; building (cached, parallel)")
        jobs.append(build)
    for layer in project.foreign_layers():
        interpreter = find_python(layer.runtime)
        if interpreter is None:
            say(f"{layer.logical_id}: no {layer.runtime} here; the local cloud will run the source tree")
            continue
        deps = deps_freshness(project, layer, interpreter)
        if not deps.fresh:

            def install(layer: Resource = layer, interpreter: Interpreter = interpreter) -> None:
                seconds = install_host_deps(project, layer, interpreter)
                say(f"{layer.logical_id}: installed in {seconds:.1f} s ({project.local_deps(layer)})")

            say(f"{layer.logical_id}: {deps.reason}; installing it with Python {interpreter.version}")
            jobs.append(install)
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()  # the first failure is raised, after every job has ended
    return bool(jobs)


# ---- what the local cloud runs ----------------------------------------------------------------------------
CODE_MODES = ("auto", "build", "source")


@dataclass(frozen=True)
class CodePlan:
    """Where one template's functions and layers run from, and on which Python."""

    project: Project
    built: bool
    dirs: dict[str, Path]  # logical id -> the folder the local cloud loads it from
    interpreters: dict[str, Interpreter]  # runtime -> its Python, when built; empty: the local cloud's own
    note: str  # for the start-up report: what runs, or why not the build
    warning: bool = False  # the build was wanted but the source tree runs

    def interpreter(self, runtime: str) -> Interpreter | None:
        return self.interpreters.get(runtime)


def plan_code(project: Project, source_dirs: Mapping[str, Path], mode: str = "auto") -> CodePlan:
    """`mode` "build": the build output on the template's runtime, or BuildError; "source": the source tree
    on the local cloud's own Python; "auto": the build when it is fresh and the runtime's Python is here,
    else the source tree with a warning."""
    if mode not in CODE_MODES:
        raise ValueError(f"code mode {mode!r} is not one of {', '.join(CODE_MODES)}")
    own = f"Python {sys.version.split()[0]}"
    if mode == "source":
        return CodePlan(project, False, dict(source_dirs), {}, f"source tree on {own}")
    runtimes = {r.runtime for r in project.resources.values() if r.kind == FUNCTION}
    interpreters = {runtime: find_python(runtime) for runtime in sorted(runtimes)}
    missing = sorted(runtime for runtime, found in interpreters.items() if found is None)
    state = freshness(project)
    reason = (
        f"no {', '.join(missing)} on this machine (set {_variable(missing[0])} or install it)"
        if missing
        else ("" if state.fresh else f"{state.reason}: `make build` (or `python -m localcloud.build`)")
    )
    if not project.resources:
        reason = "nothing in the template is built from a local folder"
    if reason:
        if mode == "build":
            raise BuildError(f"cannot run {project.template.name}'s build: {reason}")
        note = f"source tree on {own}: {reason}"
        return CodePlan(project, False, dict(source_dirs), {}, note, warning=True)
    dirs = dict(source_dirs)
    foreign = {layer.logical_id for layer in project.foreign_layers()}
    for resource in project.resources.values():
        if resource.logical_id in foreign:
            dirs[resource.logical_id] = project.local_deps(resource)
        else:
            dirs[resource.logical_id] = project.built(resource.logical_id)
    found = {runtime: i for runtime, i in interpreters.items() if i is not None}
    versions = ", ".join(sorted({f"Python {i.version}" for i in found.values()}))
    replaced = f"; {', '.join(sorted(foreign))} installed for this machine" if foreign else ""
    return CodePlan(project, True, dirs, found, f"sam build output on {versions}{replaced}")


def _variable(runtime: str) -> str:
    return "PYTHON" + runtime.removeprefix("python").replace(".", "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcloud.build", description=__doc__.splitlines()[0])
    parser.add_argument("--template", type=Path, default=Path("template.yaml"))
    parser.add_argument("--check", action="store_true", help="only say whether it is fresh (exit 1 if not)")
    args = parser.parse_args(argv)
    began = time.monotonic()
    project = load_project(args.template)
    if args.check:
        state = freshness(project)
        print(("fresh: " if state.fresh else "stale: ") + state.reason)
        return 0 if state.fresh else 1
    try:
        worked = ensure_built(project, say=lambda line: print(line, file=sys.stderr))
    except BuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    if not worked:
        print(f"sam build: fresh ({time.monotonic() - began:.2f} s to check)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

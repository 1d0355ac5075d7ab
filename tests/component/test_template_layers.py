"""The layers and makefile builds: pins agree with pyproject and the lock, and every build target exists."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.component
ROOT = Path(__file__).resolve().parents[2]
DEPS = ROOT / "layers" / "deps"


def _name(requirement: str) -> str:
    """PEP 503 normalised project name, without extras."""
    return re.sub(r"[-_.]+", "-", requirement.split("[")[0].split("==")[0].strip()).lower()


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if line:
            assert "==" in line, f"not pinned exactly: {line}"
            pins[_name(line)] = line.split("==", 1)[1].strip()
    return pins


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _lock() -> dict[str, str]:
    return _pins((ROOT / "requirements" / "dev.lock").read_text().splitlines())


def test_the_deps_layer_pins_every_runtime_dependency_as_pyproject_does() -> None:
    requirements = (DEPS / "requirements.txt").read_text().splitlines()
    layer = {_name(line): line.strip() for line in requirements if line.strip() and not line.startswith("#")}
    for dependency in _pyproject()["project"]["dependencies"]:
        assert layer.get(_name(dependency)) == dependency, dependency


def test_every_layer_pin_matches_the_dev_lock() -> None:
    lock = _lock()
    for filename in ("requirements.txt", "constraints.txt"):
        for name, version in _pins((DEPS / filename).read_text().splitlines()).items():
            assert lock.get(name) == version, f"{filename}: {name}=={version}, dev.lock has {lock.get(name)}"


def _lock_entries() -> list[tuple[str, list[str], list[str]]]:
    """requirements.lock as (requirement, hashes, wheel file names of the comment above it), in file order."""
    entries = []
    wheels: list[str] = []
    text = (DEPS / "requirements.lock").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if line.startswith("# ") and line.endswith(".whl"):
            wheels.append(line[2:])
        elif line.strip() and not line.startswith("#"):
            requirement, *options = line.split()
            hashes = [option.removeprefix("--hash=sha256:") for option in options]
            assert all(option.startswith("--hash=sha256:") for option in options), line
            entries.append((requirement, hashes, wheels))
            wheels = []
    return entries


def test_the_deps_layer_lock_pins_every_package_with_the_hashes_of_its_wheels() -> None:
    # Given the lock the layer build installs
    entries = _lock_entries()
    # Then it pins exactly what requirements.txt and constraints.txt pin (a pin changed without `make lock`
    # shows here), extras included
    pinned = {}
    for filename in ("requirements.txt", "constraints.txt"):
        for raw in (DEPS / filename).read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            if line:
                pinned[_name(line)] = line
    assert {_name(requirement): requirement for requirement, _, _ in entries} == pinned
    for requirement, hashes, wheels in entries:
        # And every line is pinned exactly, with one sha256 per wheel named above it
        assert re.fullmatch(r"[A-Za-z0-9._-]+(\[[a-z0-9,]+\])?==[A-Za-z0-9.+!]+", requirement), requirement
        assert hashes, f"{requirement}: no hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in hashes), requirement
        assert len(hashes) == len(wheels) == len(set(hashes)), requirement
        name, version = _name(requirement), requirement.split("==", 1)[1]
        for wheel in wheels:
            assert _name(wheel.split("-")[0]) == name and wheel.split("-")[1] == version, (requirement, wheel)
        # And both platforms the pins run on have a wheel: Lambda's arm64 and the x86_64 machines
        for arch in ("aarch64", "x86_64"):
            assert any(wheel.endswith("-none-any.whl") or arch in wheel for wheel in wheels), requirement


def test_the_deps_layer_build_installs_only_the_lock_and_requires_its_hashes() -> None:
    makefile = (DEPS / "Makefile").read_text()
    recipe = makefile.split("build-DepsLayer:", 1)[1].split("\n\n", 1)[0]
    assert "--require-hashes --requirement requirements.lock" in recipe
    assert "requirements.txt" not in recipe and "constraints.txt" not in recipe


def test_the_core_package_version_is_the_project_version() -> None:
    import vaultpay

    assert vaultpay.__version__ == _pyproject()["project"]["version"]


def _makefile_resources() -> dict[str, Path]:
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((ROOT / "template.yaml").read_text())
    out = {}
    for logical_id, resource in template["Resources"].items():
        if resource.get("Metadata", {}).get("BuildMethod") == "makefile":
            props = resource["Properties"]
            out[logical_id] = ROOT / str(props.get("CodeUri") or props["ContentUri"])
    return out


def test_every_makefile_built_resource_has_its_build_target() -> None:
    resources = _makefile_resources()
    assert {"CoreLayer", "DepsLayer", "HealthFunction"} <= set(resources)
    for logical_id, directory in resources.items():
        makefile = (directory / "Makefile").read_text()
        assert re.search(rf"^build-{logical_id}:", makefile, re.MULTILINE), logical_id


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_the_core_layer_build_ships_the_package_with_only_lambda_bytecode(tmp_path: Path) -> None:
    # Given a bytecode cache of this machine's Python in the source tree (any local test run leaves one)
    cache = ROOT / "layers" / "core" / "vaultpay" / "__pycache__"
    cache.mkdir(exist_ok=True)
    # When the layer is built as sam build does
    subprocess.run(
        ["make", "--no-print-directory", "build-CoreLayer", f"ARTIFACTS_DIR={tmp_path}"],
        cwd=ROOT / "layers" / "core",
        check=True,
        capture_output=True,
        timeout=120,
    )
    # Then Lambda finds the package under python/
    assert (tmp_path / "python" / "vaultpay" / "shared" / "http.py").is_file()
    assert (tmp_path / "python" / "vaultpay" / "py.typed").is_file()
    # And any bytecode is CPython 3.13's, hash-based and unchecked: a zip keeps file times only to two
    # seconds, so timestamp-checked .pyc files could look stale once Lambda unpacks the layer.
    for pyc in tmp_path.rglob("*.pyc"):
        assert pyc.name.endswith(".cpython-313.pyc"), pyc
        flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
        assert flags == 0b01, f"{pyc}: flags {flags:#b}"

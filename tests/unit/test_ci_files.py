"""The hosting service's CI workflow and the pre-commit hooks: they parse, and they run what the project runs.

CI cannot be run from here, so its shape is what is checked: the jobs, the Python versions (every one the
project supports, from pyproject.toml's requires-python up to the Lambda runtime of template.yaml), the tools
each job sets up, the make targets it runs, and actions pinned to a commit.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
PRE_COMMIT = ROOT / ".pre-commit-config.yaml"


def _workflow() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return document


def _supported_pythons() -> list[str]:
    """requires-python's lower bound up to the template's Lambda runtime, every minor version between."""
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    low = re.fullmatch(r">=\s*3\.(\d+)", requires)
    assert low, f"requires-python is {requires!r}: this test reads a lower bound only"
    runtime = re.search(r"^\s+Runtime: python3\.(\d+)$", (ROOT / "template.yaml").read_text(), re.MULTILINE)
    assert runtime
    return [f"3.{minor}" for minor in range(int(low[1]), int(runtime[1]) + 1)]


def _runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def _uses(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The job's actions by name (without the pin), each with its `with:`."""
    return {step["uses"].split("@")[0]: step.get("with", {}) for step in job["steps"] if "uses" in step}


def test_the_workflow_runs_on_pushes_and_pull_requests_with_read_only_rights() -> None:
    workflow = _workflow()
    # YAML 1.1 reads the key `on` as true
    triggers = workflow.get("on", workflow.get(True))
    assert {"push", "pull_request"} <= set(triggers)
    assert workflow["permissions"] == {"contents": "read"}
    assert set(workflow["jobs"]) == {"lint-unit", "component", "test", "sam-build"}
    assert all("timeout-minutes" in job for job in workflow["jobs"].values())


def test_lint_and_unit_tests_run_on_every_supported_python() -> None:
    job = _workflow()["jobs"]["lint-unit"]
    assert job["strategy"]["matrix"]["python"] == _supported_pythons()
    assert {"3.11", "3.13"} <= set(_supported_pythons())
    assert _uses(job)["actions/setup-python"]["python-version"] == "${{ matrix.python }}"
    # make check is code-lint (ruff, mypy, import contracts) and the unit tests
    assert any(run.startswith("make check") for run in _runs(job))


def test_the_component_tests_run_on_the_lambda_runtime_python() -> None:
    job = _workflow()["jobs"]["component"]
    assert _uses(job)["actions/setup-python"]["python-version"] == _supported_pythons()[-1]
    assert _uses(job)["actions/setup-java"]["java-version"] == "17"
    assert "make component" in _runs(job)


def test_the_full_make_test_runs_with_java_node_and_a_debian_chromium() -> None:
    job = _workflow()["jobs"]["test"]
    # Debian, so `make browser` installs the chromium package the ops console's test drives
    assert "bookworm" in job["container"]
    assert _uses(job)["actions/setup-java"] == {"distribution": "temurin", "java-version": "17"}
    assert "actions/setup-node" in _uses(job)
    assert "make test" in _runs(job)


def test_sam_build_runs_with_the_venv_sam_on_the_lambda_runtime_python() -> None:
    job = _workflow()["jobs"]["sam-build"]
    assert _uses(job)["actions/setup-python"]["python-version"] == _supported_pythons()[-1]
    assert any(run.startswith("make build") for run in _runs(job))


def test_every_action_is_pinned_to_a_commit_with_its_version_beside_it() -> None:
    lines = [line.strip() for line in WORKFLOW.read_text().splitlines() if "uses:" in line]
    assert lines
    for line in lines:
        assert re.fullmatch(r"(- )?uses: [\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+", line), line


def _hooks() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(PRE_COMMIT.read_text())
    return {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}


def test_pre_commit_runs_the_venv_ruff_and_mypy_as_make_code_lint_does() -> None:
    hooks = _hooks()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\t\$\(BIN\)/mypy \$\(MYPY_PATHS\)$", makefile, re.MULTILINE)
    paths = re.search(r"^MYPY_PATHS := (.+)$", makefile, re.MULTILINE)
    assert paths
    # Then mypy checks the very paths code-lint checks, whole (not file by file), with .venv's mypy
    assert hooks["mypy"]["entry"] == f".venv/bin/mypy {paths[1]}"
    assert hooks["mypy"]["pass_filenames"] is False
    assert hooks["ruff-check"]["entry"].startswith(".venv/bin/ruff check")
    assert hooks["ruff-format"]["entry"].startswith(".venv/bin/ruff format")
    assert hooks["import-contracts"]["entry"] == ".venv/bin/lint-imports --no-cache"
    for name in ("ruff-check", "ruff-format", "mypy", "import-contracts"):
        assert hooks[name]["language"] == "system", name


def test_pre_commit_file_checks_come_pinned_from_the_package_index() -> None:
    for hook in _hooks().values():
        if hook["language"] == "python":
            assert all(re.fullmatch(r"[\w.-]+==[\w.]+", dep) for dep in hook["additional_dependencies"]), hook
    assert {"check-yaml", "check-json", "check-toml"} <= set(_hooks())


def test_pre_commit_checks_the_compose_file_and_the_workflow_against_their_schemas() -> None:
    hooks = _hooks()
    assert hooks["check-compose-spec"]["entry"].endswith("--builtin-schema vendor.compose-spec")
    assert re.search(hooks["check-compose-spec"]["files"], "docker-compose.yml")
    assert hooks["check-github-workflows"]["entry"].endswith("--builtin-schema vendor.github-workflows")
    assert re.search(hooks["check-github-workflows"]["files"], str(WORKFLOW.relative_to(ROOT)))

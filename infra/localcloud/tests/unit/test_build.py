"""What the local cloud runs of a template: the build's freshness, the plan, the worker's command."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any

import pytest

from localcloud import build
from localcloud.build import FUNCTION, LAYER, BuildError, plan_code, read_project, source_digest, write_stamp
from localcloud.lambda_runtime import WORKER_FILE, worker_command
from localcloud.spec import Interpreter
from localcloud.watch import changed_files, snapshot

pytestmark = pytest.mark.unit

PY313 = Interpreter(executable="/opt/python3.13", version="3.13.0", isolated=True)
SAM: dict[str, Any] = {
    "Globals": {"Function": {"Runtime": "python3.13", "Architectures": ["arm64"]}},
    "Resources": {
        "HelloFunction": {
            "Type": "AWS::Serverless::Function",
            "Metadata": {"BuildMethod": "makefile"},
            "Properties": {"CodeUri": "functions/hello/", "Handler": "app.handler"},
        },
        "CoreLayer": {
            "Type": "AWS::Serverless::LayerVersion",
            "Metadata": {"BuildMethod": "makefile", "BuildArchitecture": "arm64"},
            "Properties": {"ContentUri": "layers/core/", "CompatibleRuntimes": ["python3.13"]},
        },
        "DepsLayer": {
            "Type": "AWS::Serverless::LayerVersion",
            "Metadata": {"BuildMethod": "makefile", "BuildArchitecture": "arm64"},
            "Properties": {"ContentUri": "layers/deps/", "CompatibleRuntimes": ["python3.13"]},
        },
        "InlineFunction": {
            "Type": "AWS::Serverless::Function",
            "Properties": {"InlineCode": "def handler(e, c): return e", "Handler": "index.handler"},
        },
        "Table": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
    },
}


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    (tmp_path / "template.yaml").write_text("Resources: {}\n")
    (tmp_path / "functions" / "hello").mkdir(parents=True)
    (tmp_path / "functions" / "hello" / "app.py").write_text("def handler(event, context):\n    return 1\n")
    (tmp_path / "functions" / "function.mk").write_text("function-source:\n\tcp *.py $(ARTIFACTS_DIR)/\n")
    (tmp_path / "layers" / "core" / "lib").mkdir(parents=True)
    (tmp_path / "layers" / "core" / "lib" / "__init__.py").write_text("VALUE = 1\n")
    (tmp_path / "layers" / "deps").mkdir(parents=True)
    (tmp_path / "layers" / "deps" / "requirements.txt").write_text("six==1.17.0\n")
    return tmp_path


def built_output(project: build.Project) -> None:
    """What sam build leaves: a folder per function and layer and the built template."""
    for logical_id in project.resources:
        project.built(logical_id).mkdir(parents=True, exist_ok=True)
    (project.build_dir / "template.yaml").write_text("Resources: {}\n")


def test_the_project_holds_what_sam_build_builds_from_local_folders(project_dir: Path) -> None:
    # Given a template with functions and layers, one of them inline, and a table
    project = read_project(project_dir / "template.yaml", SAM)

    # Then only the local folders count, each with its runtime, architecture and build method
    assert sorted(project.resources) == ["CoreLayer", "DepsLayer", "HelloFunction"]
    hello = project.resources["HelloFunction"]
    assert (hello.kind, hello.source) == (FUNCTION, project_dir / "functions" / "hello")
    assert (hello.runtime, hello.architecture, hello.build_method) == ("python3.13", "arm64", "makefile")
    assert project.resources["CoreLayer"].kind == LAYER
    assert project.source_roots() == [project_dir / "functions", project_dir / "layers"]


def test_a_layer_with_requirements_built_for_another_platform_is_installed_for_this_one(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build, "host_architecture", lambda: "x86_64")
    project = read_project(project_dir / "template.yaml", SAM)

    # The core layer is plain Python (no requirements.txt): its arm64 build runs anywhere
    assert [layer.logical_id for layer in project.foreign_layers()] == ["DepsLayer"]
    monkeypatch.setattr(build, "host_architecture", lambda: "arm64")
    assert project.foreign_layers() == []


def test_the_digest_changes_with_a_source_file_and_ignores_bytecode_caches(project_dir: Path) -> None:
    project = read_project(project_dir / "template.yaml", SAM)
    before = source_digest(project)

    cache = project_dir / "layers" / "core" / "lib" / "__pycache__"
    cache.mkdir()
    (cache / "__init__.cpython-313.pyc").write_bytes(b"\x00")
    assert source_digest(project) == before

    # A file beside the code folders that a Makefile includes counts too
    (project_dir / "functions" / "function.mk").write_text(
        "function-source:\n\tcp -L *.py $(ARTIFACTS_DIR)/\n"
    )
    assert source_digest(project) != before


def test_the_build_is_fresh_only_when_stamped_with_the_digest_of_the_sources(project_dir: Path) -> None:
    project = read_project(project_dir / "template.yaml", SAM)
    assert "no sam build output" in build.build_freshness(project).reason

    built_output(project)
    assert "not built by" in build.build_freshness(project).reason  # a plain `sam build` writes no stamp

    write_stamp(project, source_digest(project), 1.0)
    assert build.build_freshness(project).fresh

    (project_dir / "functions" / "hello" / "app.py").write_text(
        "def handler(event, context):\n    return 2\n"
    )
    assert "sources changed" in build.build_freshness(project).reason


def test_a_fresh_build_runs_on_the_templates_python_with_the_host_install_in_place_of_foreign_wheels(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a fresh build, a Python 3.13 and the deps layer installed for this machine
    monkeypatch.setattr(build, "host_architecture", lambda: "x86_64")
    monkeypatch.setattr(build, "find_python", lambda runtime: PY313)
    project = read_project(project_dir / "template.yaml", SAM)
    built_output(project)
    write_stamp(project, source_digest(project), 1.0)
    deps = project.local_deps(project.resources["DepsLayer"])
    deps.mkdir(parents=True)
    (deps / "requirements.sha256").write_text(
        build._requirements_digest(project.resources["DepsLayer"], PY313)
    )
    sources = {logical_id: r.source for logical_id, r in project.resources.items()}

    # When the local cloud plans what to run
    plan = plan_code(project, sources, "auto")

    # Then functions and the core layer come from the build, the deps layer from the host install
    assert plan.built and not plan.warning
    assert plan.dirs["HelloFunction"] == project_dir / ".aws-sam" / "build" / "HelloFunction"
    assert plan.dirs["CoreLayer"] == project_dir / ".aws-sam" / "build" / "CoreLayer"
    assert plan.dirs["DepsLayer"] == deps
    assert plan.interpreter("python3.13") == PY313
    assert "DepsLayer installed for this machine" in plan.note


def test_without_the_templates_python_auto_runs_the_source_tree_with_a_warning_and_build_refuses(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build, "find_python", lambda runtime: None)
    project = read_project(project_dir / "template.yaml", SAM)
    sources = {logical_id: r.source for logical_id, r in project.resources.items()}

    plan = plan_code(project, sources, "auto")

    assert not plan.built and plan.warning
    assert plan.dirs == sources and plan.interpreters == {}
    assert "no python3.13 on this machine (set PYTHON313" in plan.note
    with pytest.raises(BuildError, match=r"no python3\.13"):
        plan_code(project, sources, "build")


def test_a_stale_build_is_not_run(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "find_python", lambda runtime: PY313)
    project = read_project(project_dir / "template.yaml", SAM)
    sources = {logical_id: r.source for logical_id, r in project.resources.items()}

    plan = plan_code(project, sources, "auto")

    assert not plan.built and plan.warning and "make build" in plan.note


def test_source_mode_runs_the_source_tree_without_a_warning(project_dir: Path) -> None:
    project = read_project(project_dir / "template.yaml", SAM)
    plan = plan_code(project, {}, "source")
    assert not plan.built and not plan.warning
    with pytest.raises(ValueError, match="not one of"):
        plan_code(project, {}, "sometimes")


def test_a_built_function_runs_its_worker_isolated_by_path_and_a_source_one_as_a_module() -> None:
    # -I -S: neither PYTHONPATH nor any site-packages, so only the code and its layers provide packages
    assert worker_command(PY313, sys.executable) == ["/opt/python3.13", "-I", "-S", "-B", str(WORKER_FILE)]
    assert worker_command(None, "/venv/python") == ["/venv/python", "-m", "localcloud.lambda_worker"]


def test_the_watcher_sees_an_edit_a_new_file_and_a_deletion_but_not_caches(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("A = 1\n")
    (tmp_path / "old.py").write_text("")
    before = snapshot(tmp_path)

    (tmp_path / "app.py").write_text("A = 22\n")  # another size: a same-second edit still shows
    (tmp_path / "new.py").write_text("")
    (tmp_path / "old.py").unlink()
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "app.cpython-313.pyc").write_bytes(b"\x00")

    assert changed_files(before, snapshot(tmp_path)) == ["app.py", "new.py", "old.py"]


def test_the_worker_bootstrap_imports_only_the_standard_library() -> None:
    # A built function's worker runs on an interpreter without site-packages: the bootstrap needs none
    tree = ast.parse(WORKER_FILE.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and not node.level
    }
    roots = {name.split(".")[0] for name in imported} - {"__future__"}
    assert roots and roots <= sys.stdlib_module_names, roots - sys.stdlib_module_names

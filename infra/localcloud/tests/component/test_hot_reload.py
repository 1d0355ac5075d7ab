"""Built functions on the template's Python, and hot reload: real workers, a real make, a temporary tree."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from localcloud.build import (
    CodePlan,
    find_python,
    plan_code,
    read_project,
    rebuild,
    source_digest,
    write_stamp,
)
from localcloud.lambda_runtime import LambdaRuntime
from localcloud.spec import FunctionSpec
from localcloud.watch import CodeWatcher

pytestmark = pytest.mark.component

SAM: dict[str, Any] = {
    "Globals": {"Function": {"Runtime": "python3.13"}},
    "Resources": {
        "HelloFunction": {
            "Type": "AWS::Serverless::Function",
            "Metadata": {"BuildMethod": "makefile"},
            "Properties": {"CodeUri": "functions/hello/", "Handler": "app.handler", "Layers": ["CoreLayer"]},
        },
        "CoreLayer": {
            "Type": "AWS::Serverless::LayerVersion",
            "Metadata": {"BuildMethod": "makefile"},
            "Properties": {"ContentUri": "layers/core/", "CompatibleRuntimes": ["python3.13"]},
        },
    },
}
HANDLER = """\
import importlib
import sys

import greeting


def handler(event, context):
    if event.get("import"):
        importlib.import_module(event["import"])
    return {"word": greeting.WORD, "python": sys.version.split()[0], "path": sys.path}
"""
# The layer's Makefile ships greeting/__init__.py only: greeting/extra.py is the file a layer forgot.
FILES = {
    "functions/hello/app.py": HANDLER,
    "functions/hello/Makefile": 'build-HelloFunction:\n\tcp *.py "$(ARTIFACTS_DIR)/"\n',
    "layers/core/greeting/__init__.py": 'WORD = "hello"\n',
    "layers/core/greeting/extra.py": "",
    "layers/core/Makefile": (
        'build-CoreLayer:\n\tmkdir -p "$(ARTIFACTS_DIR)/python/greeting"\n'
        '\tcp greeting/__init__.py "$(ARTIFACTS_DIR)/python/greeting/"\n'
    ),
}


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    (tmp_path / "template.yaml").write_text(json.dumps(SAM))
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def build_project(project_dir: Path) -> CodePlan:
    """What `python -m localcloud.build` leaves, made with each resource's Makefile (sam build is slower)."""
    project = read_project(project_dir / "template.yaml", SAM)
    project.build_dir.mkdir(parents=True)
    for resource in project.resources.values():
        rebuild(project, resource)
    shutil.copy(project.template, project.build_dir / "template.yaml")
    write_stamp(project, source_digest(project), 0.0)
    return plan_code(project, sources(project_dir), "build")


def sources(project_dir: Path) -> dict[str, Path]:
    return {
        "HelloFunction": project_dir / "functions" / "hello",
        "CoreLayer": project_dir / "layers" / "core",
    }


class Deployed:
    """The function of the plan in a Lambda runtime, with the local cloud's redeploy on a new revision."""

    def __init__(self, plan: CodePlan) -> None:
        spec = FunctionSpec(
            logical_id="HelloFunction",
            name="hello",
            handler="app.handler",
            code_dir=plan.dirs["HelloFunction"],
            layer_dirs=(plan.dirs["CoreLayer"],),
            runtime="python3.13",
            timeout_s=10,
            memory_mb=128,
            environment={},
            interpreter=plan.interpreter("python3.13") if plan.built else None,
        )
        self.functions: dict[str, FunctionSpec] = {"hello": spec}
        self.runtime = LambdaRuntime(self.functions, base_env={})
        self.reports: list[str] = []
        self.watcher = CodeWatcher(
            [plan], lambda: self.functions, self.retire, lambda *parts: self.reports.append(" ".join(parts))
        )

    async def retire(self, names: set[str]) -> None:
        for name in names:
            self.functions[name] = dataclasses.replace(
                self.functions[name], revision=self.functions[name].revision + 1
            )
        self.runtime.set_functions(self.functions)

    async def invoke(self, event: Mapping[str, Any] | None = None) -> dict[str, Any]:
        result = await self.runtime.invoke("hello", json.dumps(event or {}).encode())
        answer: dict[str, Any] = json.loads(result.payload)
        return answer


@pytest.fixture
async def built(project_dir: Path) -> AsyncIterator[Deployed]:
    if find_python("python3.13") is None:
        pytest.skip("no CPython 3.13 on this machine")
    deployed = Deployed(build_project(project_dir))
    await deployed.watcher.start()
    yield deployed
    await deployed.watcher.stop()
    await deployed.runtime.close()


@pytest.fixture
async def from_source(project_dir: Path) -> AsyncIterator[Deployed]:
    project = read_project(project_dir / "template.yaml", SAM)
    deployed = Deployed(plan_code(project, sources(project_dir), "source"))
    await deployed.watcher.start()
    yield deployed
    await deployed.watcher.stop()
    await deployed.runtime.close()


async def test_a_built_function_runs_on_the_templates_python_and_sees_only_its_code_and_layers(
    built: Deployed, project_dir: Path
) -> None:
    answer = await built.invoke()

    assert answer["word"] == "hello"
    assert answer["python"].startswith("3.13.")
    build_dir = str(project_dir / ".aws-sam" / "build")
    assert answer["path"][:3] == [
        f"{build_dir}/HelloFunction",
        f"{build_dir}/CoreLayer/python",
        f"{build_dir}/CoreLayer",
    ]
    assert not [entry for entry in answer["path"] if "site-packages" in entry]
    # A package of the local cloud's venv is not there, as it would not be on AWS
    assert (await built.invoke({"import": "yaml"}))["errorType"] == "ModuleNotFoundError"


async def test_a_file_the_layers_build_forgets_fails_built_and_not_from_source(
    built: Deployed, from_source: Deployed
) -> None:
    assert (await built.invoke({"import": "greeting.extra"}))["errorType"] == "ModuleNotFoundError"
    assert (await from_source.invoke({"import": "greeting.extra"}))["word"] == "hello"


async def test_an_edited_layer_is_rebuilt_and_the_next_invoke_runs_it(
    built: Deployed, project_dir: Path
) -> None:
    # Given a warm worker that imported the layer
    assert (await built.invoke())["word"] == "hello"

    # When the layer's source changes
    (project_dir / "layers" / "core" / "greeting" / "__init__.py").write_text('WORD = "bonjour"\n')
    reloaded = await built.watcher.check()

    # Then its build is redone, the worker retired, and the next invoke is a cold start on the new code
    assert reloaded == {"hello"}
    built_module = project_dir / ".aws-sam" / "build" / "CoreLayer" / "python" / "greeting" / "__init__.py"
    assert "bonjour" in built_module.read_text()
    assert (await built.invoke())["word"] == "bonjour"
    assert built.runtime.stats()["hello"]["cold_starts"] == 2
    assert any("CoreLayer" in line and "rebuilt" in line for line in built.reports)


async def test_an_edited_handler_runs_at_the_next_invoke_without_a_restart(
    built: Deployed, project_dir: Path
) -> None:
    assert (await built.invoke())["word"] == "hello"

    (project_dir / "functions" / "hello" / "app.py").write_text(
        "def handler(event, context):\n    return {'word': 'edited'}\n"
    )

    assert await built.watcher.check() == {"hello"}
    assert (await built.invoke())["word"] == "edited"
    assert await built.watcher.check() == set()  # nothing changed since


async def test_from_source_an_edit_needs_no_build(from_source: Deployed, project_dir: Path) -> None:
    assert (await from_source.invoke())["word"] == "hello"

    (project_dir / "functions" / "hello" / "app.py").write_text(
        "def handler(event, context):\n    return {'word': 'from source'}\n"
    )

    assert await from_source.watcher.check() == {"hello"}
    assert (await from_source.invoke())["word"] == "from source"
    assert not (project_dir / ".aws-sam").exists()


async def test_a_failed_rebuild_keeps_the_old_build_and_says_why(built: Deployed, project_dir: Path) -> None:
    (project_dir / "layers" / "core" / "Makefile").write_text("build-CoreLayer:\n\tfalse\n")

    assert await built.watcher.check() == set()

    assert (await built.invoke())["word"] == "hello"
    assert any("not reloaded" in line and "make build-CoreLayer failed" in line for line in built.reports)

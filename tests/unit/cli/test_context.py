"""vaultpay_cli.context: where the CLI's commands go (its rules, per kind of client), and the import graph it
keeps acyclic (only the entry point imports main; every command module takes its target from context)."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest
import typer

from vaultpay_cli import context

pytestmark = pytest.mark.unit

CLI = Path(context.__file__).parent
EDGE = "http://127.0.0.1:45666"


def _imports(module: Path) -> set[str]:
    """The vaultpay_cli modules `module` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        found.update(name.split(".")[1] for name in names if name.startswith("vaultpay_cli."))
    return found


def test_only_the_entry_point_imports_main_and_the_modules_import_no_circle() -> None:
    graph = {path.stem: _imports(path) for path in CLI.glob("*.py")}

    assert {name for name, imported in graph.items() if "main" in imported} == set()
    assert _imports(CLI / "context.py") == set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path, name))
        for imported in graph[name]:
            visit(imported, (*path, name))

    for name in graph:
        visit(name, ())


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS configuration of the machine's leaks in: a region, no endpoint, no config files."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


def _running_cloud(state_dir: Path) -> Path:
    """A state file as a running local cloud writes it (this process's pid: read_state checks it lives)."""
    state_dir.mkdir()
    state = {
        "pid": os.getpid(),
        "endpoints": {"edge": EDGE},
        "functions": {"vaultpay-HealthFunction": {"logical_id": "HealthFunction"}},
    }
    (state_dir / "state.json").write_text(json.dumps(state))
    return state_dir


def test_the_state_dir_is_the_option_else_the_variable_else_the_checkouts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("VAULTPAY_STATE_DIR", raising=False)
    monkeypatch.delenv("VAULTPAY_ROOT", raising=False)
    assert context.repo_root() == CLI.parents[1]
    assert context.default_state_dir() == CLI.parents[1] / ".localcloud"
    monkeypatch.setenv("VAULTPAY_ROOT", str(tmp_path))
    assert context.default_state_dir() == tmp_path / ".localcloud"
    monkeypatch.setenv("VAULTPAY_STATE_DIR", str(tmp_path / "state"))
    assert context.state_dir_or_default(None) == tmp_path / "state"
    assert context.state_dir_or_default(Path("given")) == Path("given").resolve()


@pytest.mark.usefixtures("aws")
def test_aws_client_prefers_the_named_endpoint_then_the_local_cloud_then_aws(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    running = _running_cloud(tmp_path / "running")
    idle = tmp_path / "idle"

    local = context.aws_client("stepfunctions", running)
    assert (local.meta.endpoint_url, local.meta.region_name) == (EDGE, "us-east-1")
    assert context.is_local(running) and not context.is_local(idle)
    assert context.aws_client("stepfunctions", idle).meta.endpoint_url.endswith("eu-west-1.amazonaws.com")

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    assert context.aws_client("stepfunctions", running).meta.endpoint_url == "http://127.0.0.1:4566"
    assert context.is_local(idle)


@pytest.mark.usefixtures("aws")
def test_lambda_client_prefers_the_local_cloud_and_without_one_needs_a_named_endpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    running = _running_cloud(tmp_path / "running")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")

    client, functions = context.lambda_client(running)
    assert client.meta.endpoint_url == EDGE
    assert functions == {"HealthFunction": "vaultpay-HealthFunction"}
    client, functions = context.lambda_client(tmp_path / "idle")
    assert (client.meta.endpoint_url, functions) == ("http://127.0.0.1:4566", {})

    monkeypatch.delenv("AWS_ENDPOINT_URL")
    with pytest.raises(typer.Exit) as exited:
        context.lambda_client(tmp_path / "idle")
    assert exited.value.exit_code == 1


@pytest.mark.usefixtures("aws")
def test_dynamodb_client_goes_to_the_states_local_cloud_else_to_boto3s_own(tmp_path: Path) -> None:
    state = context.local_state(_running_cloud(tmp_path / "running"))

    assert context.dynamodb_client(state).meta.endpoint_url == EDGE
    assert context.dynamodb_client(None).meta.endpoint_url.endswith("eu-west-1.amazonaws.com")
    assert context.local_state(tmp_path / "idle") is None

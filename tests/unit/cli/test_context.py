"""vaultpay_cli.context: where the CLI starts from (the checkout, the state dir), and the import graph it
keeps acyclic (only the entry point imports main; every command module takes its target from
vaultpay_cli.target, tests/unit/cli/test_target.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from vaultpay_cli import context

pytestmark = pytest.mark.unit

CLI = Path(context.__file__).parent


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

"""The local cloud stands alone: no module of the package, nor any of its tests, imports the product."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # infra/localcloud
PRODUCT_PACKAGES = {"vaultpay", "vaultpay_cli"}


def imported_modules(source: str) -> set[str]:
    """Every module a source file imports, at any depth (lazy imports inside functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def product_imports(path: Path) -> set[str]:
    return {name for name in imported_modules(path.read_text()) if name.split(".")[0] in PRODUCT_PACKAGES}


def test_no_module_of_the_local_cloud_or_its_tests_imports_the_product() -> None:
    # Given every Python file of the package and of its tests
    files = sorted((PACKAGE_ROOT / "src" / "localcloud").rglob("*.py")) + sorted(
        (PACKAGE_ROOT / "tests").rglob("*.py")
    )
    assert len(files) > 20, f"found only {len(files)} files under {PACKAGE_ROOT}: has the package moved?"
    # When their imports are read
    offenders = {str(path.relative_to(PACKAGE_ROOT)): product_imports(path) for path in files}
    # Then none names vaultpay or vaultpay_cli (the product plugs in through localcloud.plugins instead)
    assert {path: names for path, names in offenders.items() if names} == {}


@pytest.mark.parametrize(
    "source",
    [
        "import vaultpay",
        "import vaultpay.shared.errors as errors",
        "from vaultpay_cli.console import OpsConsole",
        "def later():\n    from vaultpay.events import jetstream_config\n",
    ],
)
def test_every_form_of_a_product_import_is_seen(source: str, tmp_path: Path) -> None:
    # Given a module that imports the product in one of the ways Python allows
    module = tmp_path / "module.py"
    module.write_text(source)
    # When / Then
    assert product_imports(module)


def test_a_name_that_only_starts_like_the_product_is_not_an_import_of_it(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("import vaultpayments\nfrom localcloud import vaultpay_like\n")
    assert product_imports(module) == set()

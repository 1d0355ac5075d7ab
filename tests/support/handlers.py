"""Loading a module from its file in a test: a handler (functions/<domain>/<name>/app.py) or a script.

Every handler module is called `app`, so none is imported through sys.path: each is executed from its file
under a name of its own (vaultpay_function_<domain>_<name>), and two handlers never shadow each other. Each
call executes the file afresh (a new module, as a new Lambda execution environment would): a test module that
wants one module per function keeps it, e.g. `_handler = functools.cache(load_handler)`. The environment a
handler reads at import is the caller's to set first.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"


def load_module(path: Path, name: str, *, register: bool = False, siblings: bool = False) -> ModuleType:
    """The module at `path`, executed afresh under `name`.

    `register` puts it in sys.modules first (dataclasses look their module up there); `siblings` puts its
    folder on sys.path while it executes, as running it as a script does (it imports modules beside it).
    """
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = module
    folder = str(path.parent)
    if siblings:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    finally:
        if siblings:
            sys.path.remove(folder)
    return module


def load_handler(function: str) -> ModuleType:
    """`load_handler("ops/health")` is functions/ops/health/app.py, executed afresh under its own name."""
    domain, name = function.split("/")
    return load_module(FUNCTIONS / domain / name / "app.py", f"vaultpay_function_{domain}_{name}")

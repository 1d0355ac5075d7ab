"""`sam build` builds every function and both layers for the Lambda platform, without Docker or python3.13."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.component
ROOT = Path(__file__).resolve().parents[2]


def test_sam_build_succeeds_and_ships_handlers_and_layers() -> None:
    # The build `make test` made (`make built`: localcloud.build runs sam build only when a source changed);
    # run alone, this builds it.
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SAM_CLI_TELEMETRY": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "localcloud.build"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    build = ROOT / ".aws-sam" / "build"
    assert (build / "HealthFunction" / "app.py").exists()
    # The docs function ships the committed OpenAPI document itself, not the link to it.
    document = build / "DocsFunction" / "openapi.json"
    assert document.is_file() and not document.is_symlink()
    assert document.read_bytes() == (ROOT / "infra" / "openapi" / "openapi.json").read_bytes()
    assert (build / "CoreLayer" / "python" / "vaultpay" / "shared" / "http.py").exists()
    deps = build / "DepsLayer" / "python"
    assert (deps / "aws_lambda_powertools").is_dir()
    # Wheels for the Lambda platform (arm64), not for this machine.
    native = list(deps.glob("pydantic_core/_pydantic_core*.so"))
    assert native and all("aarch64" in p.name for p in native)

"""Cold start: importing any handler builds no client and loads no module that only some invocations need.

One fresh interpreter, laid out as the Lambda runtime lays it out (`-I -S`: no site, no .pth finder; the
core layer and the dependencies on sys.path), imports every functions/*/*/app.py in turn and reports which
of the modules below each import brought in. Membership of sys.modules, not timing: it holds on a busy CI
machine, and a module that is there costs its import whatever the clock says. (About 1 s.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
HANDLERS = sorted(ROOT.glob("functions/*/*/app.py"))

# Built or imported at first use, never at import: X-Ray's recorder (its import creates a botocore session
# and client) where tracing is off, AWS clients and the libraries behind them, NATS, the crypto stack, and
# Powertools utilities only some paths use.
NOT_AT_IMPORT = (
    "aws_xray_sdk.core",
    "boto3",
    "botocore.session",
    "botocore.client",
    "pynamodb",
    "nats",
    "jwt",
    "cryptography",
    "aws_lambda_powertools.utilities.batch",
    "aws_lambda_powertools.utilities.idempotency",
)

CHILD = """
import importlib.util, json, os, sys
handlers, watched = json.loads(sys.argv[1]), json.loads(sys.argv[2])
report = []
for number, path in enumerate(handlers):
    code_dir = os.path.dirname(path)
    sys.path.insert(0, code_dir)
    spec = importlib.util.spec_from_file_location(f"handler_{number}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.path.remove(code_dir)
    report.append({
        "handler": path,
        "callable": callable(getattr(module, "handler", None)),
        "loaded": [name for name in watched if name in sys.modules],
    })
print(json.dumps(report))
"""


def import_all_handlers(environment: dict[str, str]) -> list[dict[str, object]]:
    paths = [str(ROOT / "layers" / "core"), sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]
    code = "import sys\nsys.path[0:0] = " + repr(list(dict.fromkeys(paths))) + "\n" + CHILD
    keep = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            code,
            json.dumps([str(p) for p in HANDLERS]),
            json.dumps(NOT_AT_IMPORT),
        ],
        env={**keep, **environment},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: list[dict[str, object]] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_every_handler_imports_without_x_ray_clients_or_path_only_modules_when_tracing_is_off() -> None:
    # Given every function's handler, and tracing off as in the local cloud (POWERTOOLS_TRACE_DISABLED)
    assert len(HANDLERS) >= 30, "the handlers moved: point HANDLERS at them"
    environment = {
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "1",
        "POWERTOOLS_SERVICE_NAME": "coldstart-test",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        # Closed port: an AWS call at import would fail here rather than reach anything.
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "LAMBDA_TASK_ROOT": str(ROOT / "functions"),
    }
    # When one interpreter imports them one after the other
    report = import_all_handlers(environment)
    # Then each is a module with a handler, and none of them brought in any of the watched modules (the
    # first that does is named: the modules load once, so every later handler would list it too)
    assert [entry["handler"] for entry in report] == [str(p) for p in HANDLERS]
    assert all(entry["callable"] for entry in report)
    first = next((entry for entry in report if entry["loaded"]), None)
    assert first is None, f"{first['handler']} imports {first['loaded']} at import time"


def test_outside_lambda_tracing_is_off_and_costs_no_x_ray_recorder() -> None:
    # Given no LAMBDA_TASK_ROOT and no POWERTOOLS_TRACE_DISABLED: a test run or a script, where Powertools
    # disables its tracer by itself
    environment = {"POWERTOOLS_SERVICE_NAME": "coldstart-test", "AWS_REGION": "us-east-1"}
    # When every handler is imported
    report = import_all_handlers(environment)
    # Then the X-Ray recorder was never imported either
    assert not [entry["handler"] for entry in report if "aws_xray_sdk.core" in entry["loaded"]]

"""`make demo` end to end: the guided demo runs against the test cloud to the end and says what happened."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# Twelve digits standing alone (not inside an id or a hash): what a full account number would look like.
FULL_ACCOUNT_NUMBER = re.compile(r"(?<![0-9A-Za-z_])\d{12}(?![0-9A-Za-z])")
JWT = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}")


def test_the_demo_walks_through_to_a_verified_chain(local_cloud: Any) -> None:
    argv = [
        sys.executable, "-m", "vaultpay_cli.demo",
        "--api", local_cloud.api, "--edge", local_cloud.edge,
        "--saga-timeout", "120", "--audit-timeout", "120",
    ]  # fmt: skip
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    for line in (
        "Step 1. Is the stack up?",
        "Transfer completed:",
        "Transfer declined (fraud_declined)",
        "Held transfer: IN_REVIEW → COMPLETED",
        "Audit chain verified:",
        "Demo complete.",
    ):
        assert line in out, (line, out[-6000:])
    # Each step says what it calls, and masks what it must.
    assert "→ POST /v1/auth/mfa/verify" in out
    assert "→ POST /v1/admin/fraud/reviews/tr_" in out
    assert "vaultpay.transaction.completed" in out
    assert re.search(r"XXXXXXXX\d{4}", out)
    assert not FULL_ACCOUNT_NUMBER.search(out), FULL_ACCOUNT_NUMBER.findall(out)
    assert not JWT.search(out)


def test_the_demo_says_clearly_when_the_api_is_not_there() -> None:
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    argv = [sys.executable, "-m", "vaultpay_cli.demo", "--api", closed, "--edge", closed]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Step 1 (Is the stack up?) failed" in done.stdout
    assert "make run" in done.stdout

"""The relay handler's cold start: importing it loads no NATS client, no boto3, no PynamoDB, opens nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]

PROBE = """
import json, sys
sys.path[:0] = [{core!r}, {function!r}]
import app
from vaultpay.bootstrap import events
print(json.dumps({{
    "loaded": sorted(m for m in ("nats", "boto3", "pynamodb", "pydantic", "aiohttp") if m in sys.modules),
    "connection_built": events.nats_connection.cache_info().currsize,
    "handler": callable(app.handler),
}}))
"""


def test_importing_the_relay_handler_does_no_work_beyond_powertools_objects() -> None:
    # Given a fresh interpreter with the layers on sys.path, as Lambda has them, and no NATS_URL at all
    code = PROBE.format(
        core=str(ROOT / "layers" / "core"), function=str(ROOT / "functions" / "events" / "relay")
    )
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"} | {"POWERTOOLS_SERVICE_NAME": "relay"}
    # When the handler module is imported
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    # Then it imported (settings are read at first use, not at import), and nothing heavy came with it
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"loaded": [], "connection_built": 0, "handler": True}

"""The tracer: when Powertools turns tracing off, its decorators over the no-trace provider, X-Ray on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools import Tracer

from vaultpay.shared.observability import TRACED_MODULES, tracing_disabled
from vaultpay.shared.tracing_off import NoTraceProvider

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("environ", "disabled"),
    [
        ({}, True),  # not in Lambda: Powertools disables its tracer
        ({"LAMBDA_TASK_ROOT": "/var/task"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "1"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "false"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "AWS_CHALICE_CLI_MODE": "true"}, True),
    ],
)
def test_tracing_is_disabled_where_powertools_disables_it(environ: dict[str, str], disabled: bool) -> None:
    # Given an environment; When asked; Then the answer is Powertools' own
    assert tracing_disabled(environ) is disabled


def test_tracing_disabled_agrees_with_powertools_own_check(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given each environment of the table above set for real
    for environ in (
        {},
        {"LAMBDA_TASK_ROOT": "/var/task"},
        {"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "yes"},
        {"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"},
    ):
        for name in (
            "LAMBDA_TASK_ROOT",
            "POWERTOOLS_TRACE_DISABLED",
            "AWS_SAM_LOCAL",
            "AWS_CHALICE_CLI_MODE",
        ):
            monkeypatch.delenv(name, raising=False)
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        # When both decide; Then they agree (a Powertools upgrade that changes its rules fails here)
        assert tracing_disabled() is bool(Tracer._is_tracer_disabled()), environ


def test_an_unreadable_trace_disabled_value_fails_as_in_powertools() -> None:
    with pytest.raises(ValueError, match="invalid truth value"):
        tracing_disabled({"POWERTOOLS_TRACE_DISABLED": "maybe"})


@pytest.fixture
def no_trace_tracer() -> Iterator[Tracer]:
    # Tracer keeps its configuration on the class: restore it for the tests that follow.
    saved = dict(Tracer._config)
    try:
        yield Tracer(disabled=True, auto_patch=False, provider=NoTraceProvider())
    finally:
        Tracer._config = saved


def test_decorators_over_the_no_trace_provider_return_what_the_function_returns(
    no_trace_tracer: Tracer,
) -> None:
    tracer = no_trace_tracer

    @tracer.capture_method(capture_response=False)
    def add(a: int, b: int) -> int:
        return a + b

    @tracer.capture_method
    def numbers() -> Iterator[int]:
        yield from (1, 2, 3)

    @tracer.capture_method
    @contextlib.contextmanager
    def opened() -> Iterator[str]:
        yield "open"

    @tracer.capture_method
    async def later() -> str:
        await asyncio.sleep(0)
        return "done"

    @tracer.capture_lambda_handler(capture_response=False)
    def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
        return {"echo": event["value"], "sum": add(1, 2), "numbers": list(numbers())}

    # When each is called; Then it behaves as the undecorated function
    assert handler({"value": "x"}, None) == {"echo": "x", "sum": 3, "numbers": [1, 2, 3]}
    with opened() as value:
        assert value == "open"
    assert asyncio.run(later()) == "done"
    # and the wrapper keeps the name and annotations Powertools' route validation reads
    assert add.__name__ == "add" and add.__annotations__ == {"a": "int", "b": "int", "return": "int"}


def test_an_exception_goes_through_the_no_trace_decorators_unchanged(no_trace_tracer: Tracer) -> None:
    tracer = no_trace_tracer

    @tracer.capture_lambda_handler
    def handler(event: dict[str, Any], context: object) -> None:
        raise LookupError("no such account")

    with pytest.raises(LookupError, match="no such account"):
        handler({}, None)


def test_the_no_trace_provider_keeps_nothing(no_trace_tracer: Tracer) -> None:
    provider = no_trace_tracer.provider
    assert isinstance(provider, NoTraceProvider)
    provider.put_annotation("k", "v")
    provider.put_metadata("k", {"v": 1})
    provider.patch(["botocore"])
    provider.patch_all()
    with provider.in_subsegment("## x") as segment:
        segment.put_annotation("ColdStart", True)
        segment.put_metadata("x response", {"secret": "never kept"})
        assert vars(segment) == {}


PROBE_ON = """
import json, sys
from vaultpay.shared.observability import get_tracer
tracer = get_tracer()
import botocore.client
from aws_xray_sdk.core import xray_recorder
print(json.dumps({
    "disabled": tracer.disabled,
    "x_ray_recorder": tracer.provider is xray_recorder,
    "botocore_patched": bool(getattr(botocore.client, "_xray_enabled", False)),
    "sqlite3_loaded": "sqlite3" in sys.modules,
}))
"""


def test_in_lambda_with_tracing_on_the_tracer_is_x_rays_and_patches_the_aws_calls() -> None:
    # Given the environment of a deployed function with `Tracing: Active` (task root set, nothing disabled)
    keep = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    environment = {
        **keep,
        "LAMBDA_TASK_ROOT": "/var/task",
        "AWS_LAMBDA_FUNCTION_NAME": "tracing-test",
        "AWS_REGION": "us-east-1",
        "PYTHONPATH": str(ROOT / "layers" / "core"),
    }
    # When a fresh interpreter gets the tracer
    done = subprocess.run(
        [sys.executable, "-c", PROBE_ON], env=environment, capture_output=True, text=True, check=False
    )
    # Then it is Powertools' X-Ray tracer, enabled, with botocore patched, and only the named modules
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "disabled": False,
        "x_ray_recorder": True,
        "botocore_patched": True,
        "sqlite3_loaded": False,
    }
    assert "botocore" in TRACED_MODULES

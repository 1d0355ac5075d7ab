"""GET /v1/health: the health service with fake checks, and the handler around it."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from vaultpay.ops.health import HealthReport, HealthService

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FakeCheck:
    """A dependency whose behaviour the test chooses."""

    name: str
    behaviour: Callable[[], Awaitable[None]]

    async def run(self) -> None:
        await self.behaviour()


async def _answers() -> None:
    return None


async def _refuses() -> None:
    raise ConnectionRefusedError("connect to http://10.0.0.7:4566 refused (secret=hunter2)")


async def _hangs() -> None:
    await asyncio.Event().wait()


class RecordingLog:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, object]]] = []

    def warning(self, msg: str, /, *, extra: Any = None) -> None:
        self.warnings.append((msg, dict(extra or {})))


def _service(*checks: FakeCheck, timeout_s: float = 1.0, log: RecordingLog | None = None) -> HealthService:
    return HealthService(list(checks), version="1.2.3", timeout_s=timeout_s, log=log or RecordingLog())


def _three(dynamodb: Callable[[], Awaitable[None]] = _answers) -> list[FakeCheck]:
    return [
        FakeCheck("dynamodb", dynamodb),
        FakeCheck("stepfunctions", _answers),
        FakeCheck("nats", _answers),
    ]


def test_all_checks_passing_reports_ok_with_status_200() -> None:
    # Given three dependencies that all answer
    service = _service(*_three())
    # When the service checks them
    report = service.run()
    # Then the report is ok, HTTP 200, in the contract's shape
    assert report.http_status == 200
    assert report.to_body() == {
        "status": "ok",
        "version": "1.2.3",
        "checks": {"dynamodb": "ok", "stepfunctions": "ok", "nats": "ok"},
    }


def test_one_failing_check_reports_degraded_with_status_503_and_hides_the_error() -> None:
    # Given DynamoDB refuses connections with a message full of internals
    log = RecordingLog()
    service = _service(*_three(dynamodb=_refuses), log=log)
    # When the service checks
    report = service.run()
    # Then only that check is an error, the status is degraded/503, and the body says nothing more
    assert report.http_status == 503
    assert report.to_body() == {
        "status": "degraded",
        "version": "1.2.3",
        "checks": {"dynamodb": "error", "stepfunctions": "ok", "nats": "ok"},
    }
    assert "refused" not in json.dumps(report.to_body())
    # And the reason went to the log instead
    assert log.warnings == [
        (
            "health check failed",
            {
                "check": "dynamodb",
                "error_type": "ConnectionRefusedError",
                "error": "connect to http://10.0.0.7:4566 refused (secret=hunter2)",
            },
        )
    ]


def test_a_hanging_check_times_out_as_an_error_without_holding_up_the_others() -> None:
    # Given NATS never answers and the deadline is short
    checks = [FakeCheck("dynamodb", _answers), FakeCheck("nats", _hangs)]
    service = _service(*checks, timeout_s=0.05)
    # When the service checks
    started = time.monotonic()
    report = service.run()
    elapsed = time.monotonic() - started
    # Then NATS is an error, DynamoDB still ok, and the round ended at about the deadline
    assert report.checks == {"dynamodb": "ok", "nats": "error"}
    assert report.status == "degraded"
    assert elapsed < 1.0


def test_checks_run_concurrently() -> None:
    # Given three checks that can only pass if all three are running at the same time
    barrier = asyncio.Barrier(3)

    async def meet() -> None:
        await barrier.wait()

    service = _service(FakeCheck("a", meet), FakeCheck("b", meet), FakeCheck("c", meet), timeout_s=1.0)
    # When the service checks (a sequential run would leave each waiting alone until its timeout)
    report = service.run()
    # Then every check met the others
    assert report.healthy


def test_duplicate_check_names_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        _service(FakeCheck("nats", _answers), FakeCheck("nats", _answers))


# ---- the Lambda handler ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeLambdaContext:
    function_name: str = "vaultpay-local-HealthFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:vaultpay-local-HealthFunction"
    aws_request_id: str = "2f1d9c6e-0000-4000-8000-000000000000"


def _load_handler() -> ModuleType:
    # Every function's module is called `app`: load this one under a name of its own.
    path = ROOT / "functions" / "ops" / "health" / "app.py"
    spec = importlib.util.spec_from_file_location("vaultpay_function_ops_health", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def health_app() -> ModuleType:
    return _load_handler()


@pytest.fixture(scope="module")
def health_event() -> dict[str, Any]:
    return json.loads((ROOT / "events" / "ops" / "health.json").read_text())


def test_handler_answers_200_with_the_report_and_the_callers_correlation_id(
    health_app: ModuleType, health_event: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given every dependency answers
    monkeypatch.setattr(health_app, "health_service", lambda: _service(*_three()))
    # When API Gateway sends the sample GET /v1/health event
    response = health_app.handler(health_event, FakeLambdaContext())
    # Then the answer is 200 JSON, never cached, carrying the caller's correlation id
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["checks"] == {"dynamodb": "ok", "stepfunctions": "ok", "nats": "ok"}
    headers = response["multiValueHeaders"]
    assert headers["Content-Type"] == ["application/json"]
    assert headers["Cache-Control"] == ["no-store"]
    assert headers["X-Correlation-Id"] == [health_event["headers"]["X-Correlation-Id"]]


def test_handler_answers_503_when_a_dependency_fails(
    health_app: ModuleType, health_event: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health_app, "health_service", lambda: _service(*_three(dynamodb=_refuses)))
    response = health_app.handler(health_event, FakeLambdaContext())
    assert response["statusCode"] == 503
    body = json.loads(response["body"])
    assert body["status"] == "degraded"
    assert body["checks"]["dynamodb"] == "error"


def test_the_sample_event_is_a_rest_api_proxy_event_for_the_health_route(
    health_event: dict[str, Any],
) -> None:
    assert health_event["httpMethod"] == "GET"
    assert health_event["resource"] == health_event["path"] == "/v1/health"
    assert health_event["requestContext"]["resourcePath"] == "/v1/health"


def test_report_of_no_failures_is_healthy() -> None:
    assert HealthReport(version="x", checks={"a": "ok"}).healthy
    assert not HealthReport(version="x", checks={"a": "ok", "b": "error"}).healthy

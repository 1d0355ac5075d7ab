"""GET /v1/health end to end: HTTP → API Gateway emulator → Lambda → DynamoDB, Step Functions and NATS (with
the event stream's leader and replicas, read as the health NATS user)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

pytestmark = pytest.mark.e2e


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, dict(resp.headers), json.loads(resp.read())


def test_health_reports_every_dependency_ok_over_http(local_cloud: Any) -> None:
    # Each check has one second: on a test machine loaded by the rest of the suite one may time out and the
    # probe answers 503, as it should. Up dependencies must answer ok within a few probes.
    for _ in range(3):
        try:
            status, headers, body = _get(local_cloud.api + "/v1/health")
            break
        except urllib.error.HTTPError as exc:
            degraded = exc.code, json.loads(exc.read())
        # Only a degraded report may be retried: any other error fails the test at once
        assert degraded[0] == 503 and degraded[1]["status"] == "degraded", degraded
        time.sleep(1)
    else:
        pytest.fail("GET /v1/health answered 503 three times with every dependency up")

    assert status == 200
    assert body["status"] == "ok"
    assert body["checks"] == {"dynamodb": "ok", "stepfunctions": "ok", "nats": "ok"}
    assert body["version"]
    assert headers["Cache-Control"] == "no-store"
    # The event bus as the VAULTPAY stream's info tells it: a leader (a server name), its replicas current
    event_bus = body["event_bus"]
    assert set(event_bus) == {"stream", "leader", "replicas", "replicas_current", "nodes_up"}
    assert event_bus["stream"] == "VAULTPAY"
    assert isinstance(event_bus["leader"], str) and event_bus["leader"]
    assert 1 <= event_bus["replicas_current"] <= event_bus["replicas"]
    assert 1 <= event_bus["nodes_up"] <= event_bus["replicas"]
    assert set(body) == {"status", "version", "checks", "event_bus"}


def test_health_echoes_the_callers_correlation_id(local_cloud: Any) -> None:
    try:
        _, headers, _ = _get(local_cloud.api + "/v1/health", {"X-Correlation-Id": "corr-e2e-123"})
    except urllib.error.HTTPError as exc:  # a degraded probe (503) carries it too
        headers = dict(exc.headers)
    assert headers["X-Correlation-Id"] == "corr-e2e-123"


def test_an_unknown_route_is_a_problem_document_not_a_500(local_cloud: Any) -> None:
    req = urllib.request.Request(local_cloud.api + "/v1/nowhere")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(req, timeout=10)
    assert caught.value.code == 404
    assert caught.value.headers["Content-Type"].startswith("application/problem+json")
    assert json.loads(caught.value.read())["status"] == 404

"""GET /v1/health: the health service with fake checks, the NATS check's event bus report from stream info
as JetStream sends it (no server), and the handler around it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from nats.js.api import StreamInfo
from support.handlers import load_handler
from support.lambda_context import FakeLambdaContext
from support.logs import RecordingLog

from vaultpay.ops.checks import NatsCheck, event_bus_report
from vaultpay.ops.health import CheckFailed, DependencyCheck, HealthReport, HealthService

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FakeCheck:
    """A dependency whose behaviour the test chooses."""

    name: str
    behaviour: Callable[[], Awaitable[None]]

    async def run(self) -> None:
        await self.behaviour()


@dataclass
class ReportingCheck:
    """A dependency that reports details (as the NATS check does), or fails and still reports them."""

    name: str
    details: dict[str, object]
    details_key: str = "event_bus"
    fail: bool = False

    async def run(self) -> dict[str, object]:
        if self.fail:
            raise CheckFailed("stream VAULTPAY has no leader (peers at 10.0.0.7)", details=self.details)
        return self.details


EVENT_BUS = {"stream": "VAULTPAY", "leader": "n1", "replicas": 3, "replicas_current": 3, "nodes_up": 3}


async def _answers() -> None:
    return None


async def _refuses() -> None:
    raise ConnectionRefusedError("connect to http://10.0.0.7:4566 refused (secret=hunter2)")


async def _hangs() -> None:
    await asyncio.Event().wait()


def _service(
    *checks: DependencyCheck, timeout_s: float = 1.0, log: RecordingLog | None = None
) -> HealthService:
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


LAMBDA_CONTEXT = FakeLambdaContext("vaultpay-local-HealthFunction")


@pytest.fixture(scope="module")
def health_app() -> ModuleType:
    return load_handler("ops/health")


@pytest.fixture(scope="module")
def health_event() -> dict[str, Any]:
    return json.loads((ROOT / "events" / "ops" / "health.json").read_text())


def test_handler_answers_200_with_the_report_and_the_callers_correlation_id(
    health_app: ModuleType, health_event: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given every dependency answers, NATS with its event bus report
    checks: list[DependencyCheck] = [*_three()[:2], ReportingCheck("nats", EVENT_BUS)]
    monkeypatch.setattr(health_app, "health_service", lambda: _service(*checks))
    # When API Gateway sends the sample GET /v1/health event
    response = health_app.handler(health_event, LAMBDA_CONTEXT)
    # Then the answer is 200 JSON with the report, never cached, carrying the caller's correlation id
    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert body["checks"] == {"dynamodb": "ok", "stepfunctions": "ok", "nats": "ok"}
    assert body["event_bus"] == EVENT_BUS
    headers = response["multiValueHeaders"]
    assert headers["Content-Type"] == ["application/json"]
    assert headers["Cache-Control"] == ["no-store"]
    assert headers["X-Correlation-Id"] == [health_event["headers"]["X-Correlation-Id"]]


def test_handler_answers_503_when_a_dependency_fails(
    health_app: ModuleType, health_event: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health_app, "health_service", lambda: _service(*_three(dynamodb=_refuses)))
    response = health_app.handler(health_event, LAMBDA_CONTEXT)
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


# ---- details: what a check reports beyond ok/error --------------------------------------------------------


def test_a_checks_details_appear_under_its_key_beside_the_checks() -> None:
    # Given the NATS check reports the event bus and the others report nothing
    checks = [FakeCheck("dynamodb", _answers), FakeCheck("stepfunctions", _answers)]
    service = _service(*checks, ReportingCheck("nats", EVENT_BUS))
    # When the service checks
    report = service.run()
    # Then the body carries the report under `event_bus`, and the checks are unchanged
    assert report.http_status == 200
    assert report.to_body() == {
        "status": "ok",
        "version": "1.2.3",
        "checks": {"dynamodb": "ok", "stepfunctions": "ok", "nats": "ok"},
        "event_bus": EVENT_BUS,
    }


def test_a_check_that_fails_with_details_is_an_error_that_still_reports_them_but_not_why() -> None:
    # Given the NATS check finds the stream without a leader
    log = RecordingLog()
    leaderless = {**EVENT_BUS, "leader": None, "replicas_current": 0, "nodes_up": 2}
    service = _service(
        FakeCheck("dynamodb", _answers), ReportingCheck("nats", leaderless, fail=True), log=log
    )
    # When the service checks
    report = service.run()
    # Then the check is an error (503), the numbers are shown, and the reason is in the log only
    assert report.http_status == 503
    assert report.to_body() == {
        "status": "degraded",
        "version": "1.2.3",
        "checks": {"dynamodb": "ok", "nats": "error"},
        "event_bus": leaderless,
    }
    assert "10.0.0.7" not in json.dumps(report.to_body())
    assert [(msg, extra["check"], extra["error_type"]) for msg, extra in log.warnings] == [
        ("health check failed", "nats", "CheckFailed")
    ]


def test_a_check_that_raises_anything_else_reports_no_details() -> None:
    service = _service(FakeCheck("nats", _refuses))
    assert "event_bus" not in service.run().to_body()


def test_a_check_returning_something_other_than_a_mapping_reports_no_details() -> None:
    # Given a check written before details existed, whose run happens to return a value
    async def returns_true() -> Any:
        return True

    # When the service checks, then it is ok and the body has only the contract's three keys
    assert set(_service(FakeCheck("legacy", returns_true)).run().to_body()) == {"status", "version", "checks"}


def test_details_keys_may_not_clash_with_each_other_or_the_bodys_own() -> None:
    with pytest.raises(ValueError, match="clash"):
        _service(ReportingCheck("a", EVENT_BUS), ReportingCheck("b", EVENT_BUS))
    with pytest.raises(ValueError, match="clash"):
        _service(ReportingCheck("nats", EVENT_BUS, details_key="status"))


# ---- the NATS check's event bus report, from stream info as JetStream sends it ----------------------------


def _stream_info(*, replicas: int, cluster: dict[str, Any] | None) -> StreamInfo:
    """StreamInfo parsed by nats-py from a $JS.API.STREAM.INFO answer of this shape."""
    answer: dict[str, Any] = {
        "config": {"name": "VAULTPAY", "subjects": ["vaultpay.>"], "num_replicas": replicas},
        "state": {"messages": 12, "bytes": 4096, "first_seq": 1, "last_seq": 12, "consumer_count": 2},
        "created": "2026-11-28T10:15:30.123456789Z",
    }
    if cluster is not None:
        answer["cluster"] = cluster
    info: StreamInfo = StreamInfo.from_response(answer)
    return info


def _peer(name: str, *, current: bool = True, offline: bool = False, lag: int = 0) -> dict[str, Any]:
    return {"name": name, "current": current, "offline": offline, "active": 250_000_000, "lag": lag}


def test_a_single_node_stream_reports_its_server_as_leader() -> None:
    # Given a standalone server: its answer names itself as leader, with no peers
    info = _stream_info(replicas=1, cluster={"leader": "vaultpay-local"})
    # Then one replica, current, on one node up
    assert event_bus_report(info) == {
        "stream": "VAULTPAY",
        "leader": "vaultpay-local",
        "replicas": 1,
        "replicas_current": 1,
        "nodes_up": 1,
    }


def test_an_answer_without_cluster_info_is_one_node_named_by_the_servers_info_if_known() -> None:
    info = _stream_info(replicas=1, cluster=None)
    single = {"stream": "VAULTPAY", "replicas": 1, "replicas_current": 1, "nodes_up": 1}
    assert event_bus_report(info, server_name="vaultpay-local") == {**single, "leader": "vaultpay-local"}
    assert event_bus_report(info) == {**single, "leader": None}


def test_a_three_node_stream_with_every_replica_current() -> None:
    # Given R3 on a 3-node cluster: the leader and two peers, both caught up
    cluster = {
        "name": "vaultpay",
        "leader": "vaultpay-local-1",
        "replicas": [_peer("vaultpay-local-2"), _peer("vaultpay-local-3")],
    }
    info = _stream_info(replicas=3, cluster=cluster)
    # Then all three replicas are current on three nodes up
    assert event_bus_report(info) == {
        "stream": "VAULTPAY",
        "leader": "vaultpay-local-1",
        "replicas": 3,
        "replicas_current": 3,
        "nodes_up": 3,
    }


def test_an_offline_replica_shows_in_the_numbers_but_the_leader_keeps_the_check_ok() -> None:
    # Given one peer is offline (and so not current) while the leader and the other peer hold a quorum
    cluster = {
        "name": "vaultpay",
        "leader": "vaultpay-local-1",
        "replicas": [_peer("vaultpay-local-2"), _peer("vaultpay-local-3", current=False, offline=True)],
    }
    report = event_bus_report(_stream_info(replicas=3, cluster=cluster))
    # Then the report is returned (the check is ok) with two of three current and up
    assert report == {
        "stream": "VAULTPAY",
        "leader": "vaultpay-local-1",
        "replicas": 3,
        "replicas_current": 2,
        "nodes_up": 2,
    }


def test_a_lagging_replica_counts_as_up_but_not_current() -> None:
    cluster = {
        "leader": "vaultpay-local-1",
        "replicas": [_peer("vaultpay-local-2"), _peer("vaultpay-local-3", current=False, lag=420)],
    }
    report = event_bus_report(_stream_info(replicas=3, cluster=cluster))
    assert (report["replicas_current"], report["nodes_up"]) == (2, 3)


def test_a_stream_without_a_leader_fails_the_check_with_the_report() -> None:
    # Given the cluster lost quorum: no leader, one peer offline
    cluster = {
        "name": "vaultpay",
        "replicas": [
            _peer("vaultpay-local-2", current=False),
            _peer("vaultpay-local-3", current=False, offline=True),
        ],
    }
    # When the report is made, then the check fails and carries what it saw
    with pytest.raises(CheckFailed, match="no leader") as failed:
        event_bus_report(_stream_info(replicas=3, cluster=cluster))
    assert failed.value.details == {
        "stream": "VAULTPAY",
        "leader": None,
        "replicas": 3,
        "replicas_current": 0,
        "nodes_up": 1,
    }


class FakeJetStream:
    def __init__(self, info: StreamInfo) -> None:
        self.info = info
        self.asked: list[str] = []

    async def stream_info(self, name: str) -> StreamInfo:
        self.asked.append(name)
        return self.info


class FakeNatsClient:
    """What NatsCheck uses of a nats-py client: JetStream, the server's INFO, close."""

    def __init__(self, js: FakeJetStream) -> None:
        self.js = js
        self._server_info = {"server_name": "vaultpay-local", "host": "10.0.0.7", "port": 4222}
        self.closed = False

    def jetstream(self, **_opts: Any) -> FakeJetStream:
        return self.js

    async def close(self) -> None:
        self.closed = True


def test_the_nats_check_reads_the_event_streams_info_and_closes_its_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a server whose answer has no cluster info
    js = FakeJetStream(_stream_info(replicas=1, cluster=None))
    client = FakeNatsClient(js)
    connected: dict[str, Any] = {}

    async def connect(servers: list[str], **options: Any) -> FakeNatsClient:
        connected.update(options, servers=servers)
        return client

    monkeypatch.setattr("nats.connect", connect)
    check = NatsCheck("tls://nats.internal:4222", timeout_s=1.0, connect_options=lambda: {"user": "health"})
    # When the service runs the check
    report = _service(check).run()
    # Then it asked for VAULTPAY as the health user, named the node from the server's INFO, and closed
    assert js.asked == ["VAULTPAY"]
    assert connected["user"] == "health" and connected["servers"] == ["tls://nats.internal:4222"]
    assert report.to_body()["event_bus"] == {
        "stream": "VAULTPAY",
        "leader": "vaultpay-local",
        "replicas": 1,
        "replicas_current": 1,
        "nodes_up": 1,
    }
    assert "nats.internal" not in json.dumps(report.to_body())
    assert "10.0.0.7" not in json.dumps(report.to_body())
    assert client.closed


def test_the_documented_schema_accepts_every_body_the_handler_sends_and_its_own_examples(
    health_app: ModuleType, health_event: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import jsonschema

    # The committed OpenAPI document (a component test keeps it in step with the handler)
    document = json.loads((ROOT / "infra" / "openapi" / "openapi.json").read_text())
    responses = document["paths"]["/v1/health"]["get"]["responses"]
    documented = [responses[status]["content"]["application/json"] for status in ("200", "503")]
    assert documented[0]["schema"] == documented[1]["schema"] == health_app.HEALTH_REPORT
    validator = jsonschema.Draft202012Validator(health_app.HEALTH_REPORT)
    examples = [example["value"] for media in documented for example in media["examples"].values()]
    assert [example["status"] for example in examples] == ["ok", "degraded"]
    for example in examples:
        validator.validate(example)
    # And the bodies the handler really sends: ok with the event bus, leaderless, and without one
    leaderless = {**EVENT_BUS, "leader": None, "replicas_current": 0, "nodes_up": 1}
    services = [
        _service(*_three()[:2], ReportingCheck("nats", EVENT_BUS)),
        _service(*_three()[:2], ReportingCheck("nats", leaderless, fail=True)),
        _service(*_three(dynamodb=_refuses)),
    ]
    for service in services:
        monkeypatch.setattr(health_app, "health_service", lambda service=service: service)
        body = json.loads(health_app.handler(health_event, LAMBDA_CONTEXT)["body"])
        validator.validate(body)
        assert set(body) <= set(health_app.HEALTH_REPORT["properties"]), body

"""The ops console's pure pieces (the ASL graph, an execution's path, DLQ detection, metrics series) and its
HTTP routes on a fake local cloud. The browser test (tests/e2e/test_ops_console.py) runs it for real."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from localcloud.spec import FunctionSpec
from vaultpay.shared.kernel import epoch_seconds
from vaultpay.webhooks.model import Delivery, DeliveryStatus, Webhook, WebhookStatus
from vaultpay_cli.console import (
    OpsConsole,
    Sample,
    add_ops_routes,
    asl_graph,
    dead_letter_queues,
    execution_path,
    executions_per_minute,
    lambda_totals,
    sample_rates,
    webhook_summary,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime(2026, 1, 31, 9, 30, 5, tzinfo=UTC)


def _history(*steps: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """GetExecutionHistory events, one second apart: (type, details) with details under the AWS key."""
    events = []
    for i, (kind, details) in enumerate(steps, start=1):
        key = {
            "TaskStateEntered": "stateEnteredEventDetails",
            "PassStateEntered": "stateEnteredEventDetails",
            "TaskStateExited": "stateExitedEventDetails",
            "PassStateExited": "stateExitedEventDetails",
        }.get(kind, kind[0].lower() + kind[1:] + "EventDetails")
        events.append({"id": i, "type": kind, "timestamp": T0 + timedelta(seconds=i), key: details})
    return events


def test_the_graph_has_every_state_and_each_kind_of_transition() -> None:
    # Given the transfer saga's ASL
    definition = json.loads((ROOT / "infra" / "statemachines" / "transfer.asl.json").read_text())
    # When it is turned into a graph
    graph = asl_graph(definition)
    # Then every state is a node, the start is marked, and Next, Choice, Default and Catch are edges
    assert {n["id"] for n in graph["nodes"]} == set(definition["States"])
    assert graph["start"] == "Begin"
    edges = {(e["source"], e["target"], e["kind"]) for e in graph["edges"]}
    assert ("Begin", "MarkProcessing", "default") in edges
    assert ("MarkProcessing", "ReserveFunds", "next") in edges
    assert ("Decide", "MarkApproved", "choice") in edges
    assert ("Decide", "FraudDeclined", "default") in edges
    assert ("ReserveFunds", "InsufficientFunds", "catch") in edges
    assert len({e["id"] for e in graph["edges"]}) == len(graph["edges"])
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert nodes["Completed"]["end"] and nodes["Decide"]["type"] == "Choice"
    assert nodes["StartReview"]["resource"] == "states:startExecution"


def test_a_task_resource_is_labelled_with_its_function_name() -> None:
    graph = asl_graph(
        {
            "StartAt": "A",
            "States": {
                "A": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:stack-Fn:$LATEST",
                      "Next": "Gone"},
                "B": {"Type": "Succeed"},
            },
        }
    )  # fmt: skip
    assert graph["nodes"][0]["resource"] == "stack-Fn"
    assert graph["edges"] == []  # a Next to a state that does not exist is not drawn


def test_a_retried_task_is_marked_with_its_retries_and_input_and_output() -> None:
    # Given a task whose first attempt failed and whose retry succeeded
    events = _history(
        ("ExecutionStarted", {"input": '{"transfer_id": "tr_1"}'}),
        ("TaskStateEntered", {"name": "Settle", "input": '{"transfer_id": "tr_1"}'}),
        ("LambdaFunctionScheduled", {"resource": "arn"}),
        ("LambdaFunctionFailed", {"error": "TransientError", "cause": '{"errorMessage": "busy"}'}),
        ("LambdaFunctionScheduled", {"resource": "arn"}),
        ("LambdaFunctionSucceeded", {"output": "{}"}),
        ("TaskStateExited", {"name": "Settle", "output": '{"settled": true}'}),
        ("PassStateEntered", {"name": "Done", "input": '{"settled": true}'}),
        ("PassStateExited", {"name": "Done", "output": '{"settled": true}'}),
        ("ExecutionSucceeded", {"output": '{"settled": true}'}),
    )
    # When its path is read
    path = execution_path(events)
    # Then the task is taken with one retry, not failed, with its input and output as JSON
    settle = path["states"]["Settle"]
    assert (settle["attempts"], settle["retries"], settle["failures"]) == (2, 1, 1)
    assert settle["failed"] is False and settle["running"] is False
    assert settle["input"] == {"transfer_id": "tr_1"} and settle["output"] == {"settled": True}
    assert settle["errors"][0]["error"] == "TransientError: busy"
    assert path["order"] == ["Settle", "Done"] and path["transitions"] == [["Settle", "Done"]]
    assert len(path["rows"]) == len(events)


def test_a_failed_attempt_that_was_caught_is_a_failed_state_on_the_path() -> None:
    events = _history(
        ("ExecutionStarted", {"input": "{}"}),
        ("TaskStateEntered", {"name": "Reserve", "input": "{}"}),
        ("LambdaFunctionScheduled", {"resource": "arn"}),
        ("LambdaFunctionFailed", {"error": "InsufficientFunds", "cause": "not enough"}),
        ("TaskStateExited", {"name": "Reserve", "output": '{"failure": {}}'}),
        ("PassStateEntered", {"name": "Release", "input": "{}"}),
    )
    path = execution_path(events)
    assert path["states"]["Reserve"]["failed"] is True
    # And the state the execution is in now is running
    assert path["states"]["Release"]["running"] is True and path["states"]["Release"]["failed"] is False


def test_dead_letter_queues_are_found_by_name_or_as_a_redrive_target() -> None:
    base = "http://edge/000000000000/"
    queues = {
        base + "work": {
            "QueueArn": "arn:work",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": "arn:parked"}),
        },
        base + "parked": {"QueueArn": "arn:parked"},
        base + "stack-RelayDeadLetterQueue": {"QueueArn": "arn:relay"},
        base + "orders-dlq.fifo": {"QueueArn": "arn:orders", "RedrivePolicy": "not json"},
    }  # fmt: skip
    assert dead_letter_queues(queues) == [
        base + "orders-dlq.fifo",
        base + "parked",
        base + "stack-RelayDeadLetterQueue",
    ]


def test_metrics_are_rates_per_minute_between_samples_and_a_restart_counts_from_zero() -> None:
    samples = [
        Sample(0.0, {"invocations": 10, "errors": 1}),
        Sample(5.0, {"invocations": 14, "errors": 1}),
        Sample(10.0, {"invocations": 3, "errors": 0}),  # the counters restarted
        Sample(10.0, {"invocations": 9, "errors": 0}),  # no time between: no rate
        Sample(12.0, {"invocations": 10, "errors": 1}),  # the short interval up to now
    ]
    rates = sample_rates(samples)
    assert rates["series"] == {"invocations": [48.0, 36.0, 30.0], "errors": [0.0, 0.0, 30.0]}
    assert rates["times"] == ["00:00:05", "00:00:10", "00:00:12"]


def test_the_totals_add_up_every_function_and_stream_poller() -> None:
    status = {
        "lambda": {"a": {"invocations": 2, "errors": 1, "throttles": 0, "cold_starts": 1},
                   "b": {"invocations": 3, "errors": 0, "throttles": 4, "cold_starts": 1}},
        "streams": [{"records_delivered": 7}, {"records_delivered": 1}],
    }  # fmt: skip
    assert lambda_totals(status) == {
        "invocations": 5, "errors": 1, "throttles": 4, "cold_starts": 2, "records_delivered": 8,
    }  # fmt: skip


def test_executions_are_counted_per_minute_and_status() -> None:
    executions = [
        {"startDate": T0, "status": "SUCCEEDED"},
        {"startDate": T0 + timedelta(seconds=20), "status": "FAILED"},
        {"startDate": T0 + timedelta(seconds=70), "status": "SUCCEEDED"},
    ]
    counted = executions_per_minute(executions)
    assert counted["minutes"] == ["2026-01-31T09:30Z", "2026-01-31T09:31Z"]
    assert counted["series"] == {"FAILED": [1, 0], "SUCCEEDED": [1, 1]}


def _webhook(webhook_id: str, status: WebhookStatus) -> Webhook:
    return Webhook(
        webhook_id=webhook_id, user_id="usr_1", url="https://example.com/hooks", events=("vaultpay.*",),
        description=None, status=status, secret_enc="enc", created_at="2026-01-31T09:00:00.000Z",
        updated_at="2026-01-31T09:00:00.000Z",
    )  # fmt: skip


def _delivery(event_id: str, status: DeliveryStatus, attempts: int, created_at: str) -> Delivery:
    return Delivery(
        webhook_id="wh_1", user_id="usr_1", event_id=event_id, type="vaultpay.transaction.completed",
        body="{}", status=status, attempts=attempts, created_at=created_at, next_attempt_at=None,
    )  # fmt: skip


def test_the_webhooks_summary_counts_deliveries_failed_attempts_endpoints_and_the_oldest_pending() -> None:
    webhooks = [_webhook("wh_1", WebhookStatus.ENABLED), _webhook("wh_2", WebhookStatus.ENABLED),
                _webhook("wh_3", WebhookStatus.DISABLED)]  # fmt: skip
    deliveries = [
        _delivery("e1", DeliveryStatus.SUCCEEDED, 1, "2026-01-31T09:30:00.000Z"),
        _delivery("e2", DeliveryStatus.SUCCEEDED, 3, "2026-01-31T09:30:10.000Z"),  # two failed, then a 2xx
        _delivery("e3", DeliveryStatus.PENDING, 2, "2026-01-31T09:29:00.000Z"),
        _delivery("e4", DeliveryStatus.PENDING, 0, "2026-01-31T09:31:00.000Z"),
        _delivery("e5", DeliveryStatus.FAILED, 12, "2026-01-30T09:30:00.000Z"),
    ]
    now = epoch_seconds("2026-01-31T09:32:00.000Z") + 0.5
    assert webhook_summary(webhooks, deliveries, now) == {
        "deliveries": {"PENDING": 2, "SUCCEEDED": 2, "FAILED": 1},
        "attempts_failed": 2 + 2 + 12,
        "endpoints": {"ENABLED": 2, "DISABLED": 1},
        "oldest_pending_s": 180,  # e3, not the older e5: that one is FAILED
    }
    # Nothing pending has no age; no webhook at all is every count at 0
    assert webhook_summary([], [], now) == {
        "deliveries": {"PENDING": 0, "SUCCEEDED": 0, "FAILED": 0},
        "attempts_failed": 0,
        "endpoints": {"ENABLED": 0, "DISABLED": 0},
        "oldest_pending_s": None,
    }


# ---- HTTP -------------------------------------------------------------------------------------------------


class FakeCloud:
    edge_url = "http://127.0.0.1:1"

    def __init__(self) -> None:
        self.spec = FunctionSpec(
            logical_id="TickFunction", name="stack-TickFunction", handler="app.handler",
            code_dir=Path("/nonexistent"), layer_dirs=(), runtime="python3.13", timeout_s=3, memory_mb=128,
            environment={},
        )  # fmt: skip

    def status(self) -> dict[str, Any]:
        return {"lambda": {self.spec.name: {"invocations": 3, "errors": 1}}, "streams": [], "stacks": []}

    def functions(self) -> dict[str, FunctionSpec]:
        return {self.spec.name: self.spec}


async def _client(console_dir: Path) -> TestClient[web.Request, web.Application]:
    app = web.Application()
    add_ops_routes(app, OpsConsole(FakeCloud(), console_dir=console_dir, client_factory=_no_aws))
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    return client


def _no_aws(service: str) -> Any:
    raise AssertionError(f"this test calls no AWS API, yet {service} was asked for")


async def test_the_page_and_its_files_are_served_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<html>console</html>")
    (tmp_path / "app.js").write_text("// app")
    client = await _client(tmp_path)
    try:
        assert (await client.get("/_ops", allow_redirects=False)).headers["Location"] == "/_ops/"
        page = await client.get("/_ops/")
        assert page.status == 200 and "console" in await page.text()
        assert (await client.get("/_ops/static/app.js")).headers["Content-Type"].startswith("text/javascript")
        assert (await client.get("/_ops/static/..%2Fsecret")).status == 404
        assert (await client.get("/_ops/static/style.css")).status == 404  # listed, but not there
        # A library npm did not install says how to get it
        missing = await client.get("/_ops/vendor/chart.umd.min.js")
        assert missing.status == 503 and "make install" in await missing.text()
        assert (await client.get("/_ops/vendor/jquery.js")).status == 404
    finally:
        await client.close()


async def test_functions_come_from_the_runtime_and_bad_parameters_are_refused(tmp_path: Path) -> None:
    client = await _client(tmp_path)
    try:
        body = await (await client.get("/_ops/api/functions")).json()
        assert body["functions"] == [
            {"name": "stack-TickFunction", "logical_id": "TickFunction",
             "log_group": "/aws/lambda/stack-TickFunction", "invocations": 3, "errors": 1},
        ]  # fmt: skip
        unknown = await client.get("/_ops/api/logs/nope")
        assert unknown.status == 404 and "nope" in (await unknown.json())["error"]
        assert (await client.get("/_ops/api/logs/stack-TickFunction?limit=0")).status == 400
        assert (await client.get("/_ops/api/transfers")).status == 404  # no transfers table deployed
        assert (await client.get("/_ops/api/webhooks")).status == 404  # nor a webhooks table
    finally:
        await client.close()

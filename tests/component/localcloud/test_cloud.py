"""The local cloud as a whole: edge, Lambda through the edge, Step Functions, streams, schedules, API."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.component


def _wait_for(probe: Any, timeout: float = 20.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


# ---- edge ------------------------------------------------------------------------------------------
def test_edge_routes_dynamodb_calls_to_dynamodb_local_and_the_rest_to_moto(local_cloud: Any) -> None:
    import boto3

    def direct(service: str, endpoint: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    endpoints = local_cloud.state["endpoints"]
    name = f"edge-{uuid.uuid4().hex[:12]}"
    # When a table and a queue are created through the edge
    local_cloud.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    local_cloud.client("sqs").create_queue(QueueName=name)
    # Then the table lives in DynamoDB Local (not moto), and the queue in moto
    assert name in direct("dynamodb", endpoints["dynamodb"]).list_tables()["TableNames"]
    assert name not in direct("dynamodb", endpoints["moto"]).list_tables()["TableNames"]
    queues = direct("sqs", endpoints["moto"]).list_queues(QueueNamePrefix=name).get("QueueUrls", [])
    assert len(queues) == 1


def test_edge_answers_the_localstack_health_probe(local_cloud: Any) -> None:
    status, body = _get(local_cloud.edge + "/_localstack/health")
    assert status == 200
    # The tests' cloud runs NATS as a three-node cluster (tests/conftest.py): one process per node.
    nodes = {f"nats-{i}": "running" for i in (1, 2, 3)}
    assert body["services"] == {"dynamodb": "running", "moto": "running", **nodes}


# ---- Lambda through the edge ------------------------------------------------------------------------
def test_invoke_returns_the_payload_with_the_template_environment(local_cloud: Any) -> None:
    lam = local_cloud.client("lambda")
    name = local_cloud.function_name("EchoFunction")

    out = lam.invoke(FunctionName=name, Payload=json.dumps({"hello": "world"}))
    body = json.loads(out["Payload"].read())

    assert out["StatusCode"] == 200 and "FunctionError" not in out
    assert body["event"] == {"hello": "world"}
    assert body["greeting"] == "hello"
    assert body["echoed"] == "SHOUT"  # a custom resource's Data, through !GetAtt
    assert body["sink_table"].endswith("SinkTable")  # !Ref resolved to the table's physical name
    assert body["endpoint"] == local_cloud.edge


def test_invoke_by_full_arn_reaches_the_same_function(local_cloud: Any) -> None:
    name = local_cloud.function_name("EchoFunction")
    arn = f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    out = local_cloud.client("lambda").invoke(FunctionName=arn, Payload=b"{}")
    assert json.loads(out["Payload"].read())["function_name"] == name


def test_a_raised_exception_is_a_function_error_named_after_its_class(local_cloud: Any) -> None:
    out = local_cloud.client("lambda").invoke(
        FunctionName=local_cloud.function_name("BoomFunction"), Payload=json.dumps({"key": "k1"})
    )
    body = json.loads(out["Payload"].read())
    assert out["FunctionError"] == "Unhandled"
    assert body["errorType"] == "PaymentRejected"
    assert body["errorMessage"] == "payment k1 rejected"


def test_a_crashed_worker_is_an_exit_error_and_the_next_invoke_works(local_cloud: Any) -> None:
    lam, name = local_cloud.client("lambda"), local_cloud.function_name("EchoFunction")
    out = lam.invoke(FunctionName=name, Payload=json.dumps({"exit": 3}))
    assert out["FunctionError"] == "Unhandled"
    assert json.loads(out["Payload"].read())["errorType"] == "Runtime.ExitError"
    again = lam.invoke(FunctionName=name, Payload=b"{}")
    assert "FunctionError" not in again


def test_the_function_timeout_is_enforced(local_cloud: Any) -> None:
    lam, name = local_cloud.client("lambda"), local_cloud.function_name("EchoFunction")
    began = time.monotonic()
    out = lam.invoke(FunctionName=name, Payload=json.dumps({"sleep": 3}))
    elapsed = time.monotonic() - began
    body = json.loads(out["Payload"].read())
    assert out["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert elapsed < 2.5  # Timeout: 1 in the template
    assert "FunctionError" not in lam.invoke(FunctionName=name, Payload=b"{}")


def test_function_logs_reach_cloudwatch_logs(local_cloud: Any) -> None:
    name = local_cloud.function_name("EchoFunction")
    local_cloud.client("lambda").invoke(FunctionName=name, Payload=b"{}")
    logs = local_cloud.client("logs")

    def printed() -> bool:
        events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}", filterPattern="echo")["events"]
        return any("echo called" in e["message"] for e in events)

    assert _wait_for(printed, timeout=10)


# ---- Step Functions ---------------------------------------------------------------------------------
def _run_execution(cloud: Any, machine_logical_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    sfn = cloud.client("stepfunctions")
    arn = next(
        m["stateMachineArn"]
        for m in sfn.list_state_machines()["stateMachines"]
        if m["name"].endswith(machine_logical_id)
    )
    execution = sfn.start_execution(stateMachineArn=arn, name=f"t-{uuid.uuid4()}", input=json.dumps(payload))
    arn = execution["executionArn"]
    return dict(
        _wait_for(
            lambda: (d := sfn.describe_execution(executionArn=arn))["status"] != "RUNNING" and d,
            timeout=30,
            interval=0.2,
        )
    )


def test_a_task_that_fails_once_is_retried_and_the_execution_succeeds(local_cloud: Any) -> None:
    key = uuid.uuid4().hex
    result = _run_execution(local_cloud, "RetryMachine", {"key": key})
    assert result["status"] == "SUCCEEDED", result
    assert json.loads(result["output"]) == {"key": key, "attempts": 2}


def test_catch_routes_a_failed_task_to_its_compensation(local_cloud: Any) -> None:
    key = uuid.uuid4().hex
    result = _run_execution(local_cloud, "CatchMachine", {"key": key})
    assert result["status"] == "FAILED"
    assert result.get("error") == "Compensated"
    table = next(
        t for t in local_cloud.client("dynamodb").list_tables()["TableNames"] if t.endswith("SinkTable")
    )
    item = local_cloud.resource("dynamodb").Table(table).get_item(Key={"pk": f"compensated#{key}"})
    assert item["Item"]["error"] == "PaymentRejected"


# ---- event sources ----------------------------------------------------------------------------------
def _tables(cloud: Any) -> tuple[Any, Any]:
    names = cloud.client("dynamodb").list_tables()["TableNames"]
    ddb = cloud.resource("dynamodb")
    source = ddb.Table(next(t for t in names if t.endswith("SourceTable")))
    sink = ddb.Table(next(t for t in names if t.endswith("SinkTable")))
    return source, sink


def _deliveries(sink: Any, pk: str) -> int:
    item = sink.get_item(Key={"pk": f"seen#{pk}"}, ConsistentRead=True).get("Item")
    return int(item["deliveries"]) if item else 0


def test_a_stream_record_reaches_the_function_through_its_filter(local_cloud: Any) -> None:
    source, sink = _tables(local_cloud)
    wanted, ignored = f"out-{uuid.uuid4().hex}", f"other-{uuid.uuid4().hex}"
    source.put_item(Item={"pk": ignored, "kind": "state"})
    source.put_item(Item={"pk": wanted, "kind": "outbox"})

    _wait_for(lambda: _deliveries(sink, wanted) == 1)
    assert _deliveries(sink, ignored) == 0


def test_a_partial_batch_failure_is_retried_from_the_failed_record(local_cloud: Any) -> None:
    source, sink = _tables(local_cloud)
    first, flaky = f"ok-{uuid.uuid4().hex}", f"flaky-{uuid.uuid4().hex}"
    with source.batch_writer() as batch:
        batch.put_item(Item={"pk": first, "kind": "outbox"})
        batch.put_item(Item={"pk": flaky, "kind": "outbox", "fail_once": True})

    _wait_for(lambda: _deliveries(sink, flaky) == 2)
    assert _deliveries(sink, first) == 1


def test_a_record_that_keeps_failing_ends_in_the_on_failure_queue(local_cloud: Any) -> None:
    source, _ = _tables(local_cloud)
    poison = f"poison-{uuid.uuid4().hex}"
    source.put_item(Item={"pk": poison, "kind": "outbox", "fail_always": True})
    sqs = local_cloud.client("sqs")
    url = next(q for q in sqs.list_queues()["QueueUrls"] if q.endswith("FailureQueue"))

    def dead_letter() -> list[dict[str, Any]]:
        return [
            json.loads(m["Body"])
            for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        ]

    messages = _wait_for(dead_letter, timeout=60, interval=0.5)
    assert messages[0]["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert messages[0]["DDBStreamBatchInfo"]["batchSize"] >= 1


def test_a_schedule_fires_its_function_with_the_configured_input(local_cloud: Any) -> None:
    _, sink = _tables(local_cloud)

    def ticks() -> list[dict[str, Any]]:
        items = sink.scan(ConsistentRead=True)["Items"]
        return [i for i in items if str(i["pk"]).startswith("tick#")]

    fired = _wait_for(ticks, timeout=15, interval=0.25)
    assert fired[0]["source"] == "test-schedule"


# ---- API Gateway emulator ---------------------------------------------------------------------------
def test_the_api_runs_the_authorizer_and_passes_its_context(local_cloud: Any) -> None:
    api = local_cloud.api_url("TestApi")
    status, body = _get(api + "/echo/ravi", {"Authorization": "allow"})
    assert status == 200
    assert body["pathParameters"] == {"name": "ravi"}
    assert body["authorizer"]["user_id"] == "u-123"
    assert body["authorizer"]["principalId"] == "tester"


@pytest.mark.parametrize(("token", "expected"), [("deny", 403), ("nonsense", 401), (None, 401)])
def test_the_api_refuses_what_the_authorizer_does_not_allow(
    local_cloud: Any, token: str | None, expected: int
) -> None:
    headers = {"Authorization": token} if token else {}
    status, _ = _get(local_cloud.api_url("TestApi") + "/echo/ravi", headers)
    assert status == expected


def test_the_api_answers_403_for_a_route_that_does_not_exist(local_cloud: Any) -> None:
    status, body = _get(local_cloud.api_url("TestApi") + "/nowhere")
    assert status == 403
    assert body == {"message": "Missing Authentication Token"}


# ---- CloudWatch Logs subscription filters -----------------------------------------------------------
def test_log_lines_matching_a_subscription_filter_reach_its_function(local_cloud: Any) -> None:
    key = uuid.uuid4().hex
    local_cloud.client("lambda").invoke(
        FunctionName=local_cloud.function_name("ChattyFunction"), Payload=json.dumps({"key": key})
    )
    _, sink = _tables(local_cloud)

    def delivered() -> Any:
        return sink.get_item(Key={"pk": f"logsink#{key}#request logged"}, ConsistentRead=True).get("Item")

    item = _wait_for(delivered, timeout=15)
    assert item["group"] == "/vaultpay-test/shared"
    assert "Item" not in sink.get_item(Key={"pk": f"logsink#{key}#something else"}, ConsistentRead=True)

"""Fault injection against a real local cloud: injected errors, crashes after the work, duplicate stream
deliveries and NATS outages, each proven by its side effects and by the fault counters."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from localcloud.faults import FaultClient, FaultPlanError

pytestmark = pytest.mark.component


def _wait_for(probe: Any, timeout: float = 20.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture
def faults(local_cloud: Any) -> Iterator[FaultClient]:
    """The fault API, cleared after each test so no fault leaks into the tests sharing the cloud."""
    client = FaultClient(local_cloud.edge)
    client.clear()
    try:
        yield client
    finally:
        client.clear()


def _sink(cloud: Any) -> Any:
    names = cloud.client("dynamodb").list_tables()["TableNames"]
    return cloud.resource("dynamodb").Table(next(t for t in names if t.endswith("SinkTable")))


def _writer_runs(cloud: Any, key: str) -> int:
    item = _sink(cloud).get_item(Key={"pk": f"writer#{key}"}, ConsistentRead=True).get("Item")
    return int(item["runs"]) if item else 0


def _invoke_writer(cloud: Any, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    out = cloud.client("lambda").invoke(
        FunctionName=cloud.function_name("WriterFunction"), Payload=json.dumps({"key": key})
    )
    return out, json.loads(out["Payload"].read())


def _run_fault_machine(cloud: Any, payload: dict[str, Any]) -> dict[str, Any]:
    sfn = cloud.client("stepfunctions")
    arn = next(
        m["stateMachineArn"]
        for m in sfn.list_state_machines()["stateMachines"]
        if m["name"].endswith("FaultRetryMachine")
    )
    execution = sfn.start_execution(stateMachineArn=arn, name=f"f-{uuid.uuid4()}", input=json.dumps(payload))
    arn = execution["executionArn"]
    return dict(
        _wait_for(
            lambda: (d := sfn.describe_execution(executionArn=arn))["status"] != "RUNNING" and d,
            timeout=30,
            interval=0.2,
        )
    )


# ---- the API --------------------------------------------------------------------------------------------
def test_without_a_plan_no_fault_is_active(faults: FaultClient) -> None:
    status = faults.status()
    assert status["active"] is False
    assert status["plan"] is None
    assert status["nats"]["running"] is True


def test_a_plan_naming_no_deployed_function_is_refused_with_the_reason(faults: FaultClient) -> None:
    with pytest.raises(FaultPlanError, match="'NoSuchFunction' matches no deployed function"):
        faults.set_plan(
            {"lambda_errors": [{"functions": ["NoSuchFunction"], "error_type": "TransientError"}]}
        )
    assert faults.status()["active"] is False


def test_a_plan_that_is_not_json_is_a_400_with_the_reason(local_cloud: Any, faults: FaultClient) -> None:
    request = urllib.request.Request(local_cloud.edge + "/_localcloud/faults", data=b"{nope", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    body = json.loads(refused.value.read())
    assert refused.value.code == 400
    assert body["error"] == "InvalidFaultPlan"
    assert body["message"].startswith("the fault plan is not JSON")


def test_stream_duplicates_may_name_only_functions_fed_by_a_stream(faults: FaultClient) -> None:
    with pytest.raises(FaultPlanError, match="matches no function with a DynamoDB stream source"):
        faults.set_plan({"stream_duplicates": [{"functions": ["WriterFunction"]}]})


# ---- Lambda: an error on the first attempt --------------------------------------------------------------
def test_the_first_attempt_of_a_payload_fails_without_running_and_the_retry_runs(
    local_cloud: Any, faults: FaultClient
) -> None:
    # Given a plan that fails the first attempt of each payload of the writer with TransientError
    faults.set_plan(
        {
            "lambda_errors": [
                {
                    "functions": ["WriterFunction"],
                    "error_type": "TransientError",
                    "error_message": "try again",
                }
            ]
        }
    )
    key = uuid.uuid4().hex

    # When the writer is invoked twice with the same payload
    first, error = _invoke_writer(local_cloud, key)
    runs_after_first = _writer_runs(local_cloud, key)
    second, result = _invoke_writer(local_cloud, key)

    # Then the first answer is a handler error in Lambda's shape, and the handler did not run for it
    assert first["StatusCode"] == 200
    assert first["FunctionError"] == "Unhandled"
    assert error["errorType"] == "TransientError"
    assert error["errorMessage"] == "try again"
    assert set(error) == {"errorType", "errorMessage", "requestId", "stackTrace"}
    assert runs_after_first == 0
    # And the retry ran normally, once
    assert "FunctionError" not in second
    assert result["runs"] == 1
    status = faults.status()
    name = local_cloud.function_name("WriterFunction")
    assert status["counters"]["lambda_errors"] == 1
    assert status["by_function"]["lambda_errors"] == {name: 1}


def test_step_functions_retries_an_injected_error_by_its_name(local_cloud: Any, faults: FaultClient) -> None:
    faults.set_plan({"lambda_errors": [{"functions": ["WriterFunction"], "error_type": "TransientError"}]})
    key = uuid.uuid4().hex

    result = _run_fault_machine(local_cloud, {"key": key})

    assert result["status"] == "SUCCEEDED", result
    assert json.loads(result["output"])["runs"] == 1  # the failed attempt never ran the handler
    assert faults.counters()["lambda_errors"] == 1
    history = local_cloud.client("stepfunctions").get_execution_history(executionArn=result["executionArn"])
    failures = [e for e in history["events"] if e["type"] in ("LambdaFunctionFailed", "TaskFailed")]
    assert failures, history["events"]
    details = failures[0].get("lambdaFunctionFailedEventDetails") or failures[0].get("taskFailedEventDetails")
    assert details["error"] == "TransientError"


# ---- Lambda: a crash after the work ---------------------------------------------------------------------
def test_a_crash_after_the_work_leaves_the_write_and_the_next_invoke_gets_a_new_worker(
    local_cloud: Any, faults: FaultClient
) -> None:
    # Given a warm writer worker
    _, warm = _invoke_writer(local_cloud, uuid.uuid4().hex)
    # And a plan that crashes the writer after the first run of each payload
    faults.set_plan({"lambda_crashes": [{"functions": ["WriterFunction"]}]})
    key = uuid.uuid4().hex

    # When it is invoked
    crashed, error = _invoke_writer(local_cloud, key)

    # Then the caller sees the runtime die, as Lambda reports it
    assert crashed["FunctionError"] == "Unhandled"
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"].endswith("Error: Runtime exited with error: signal: killed")
    # But the handler's write happened
    assert _writer_runs(local_cloud, key) == 1
    # And the worker it ran on is gone
    _wait_for(lambda: not _alive(warm["pid"]), timeout=5)

    # When the same payload is invoked again, it runs on a new worker and answers
    again, result = _invoke_writer(local_cloud, key)
    assert "FunctionError" not in again
    assert result["runs"] == 2
    assert result["pid"] != warm["pid"]
    status = faults.status()
    assert status["counters"]["lambda_crashes"] == 1
    assert status["by_function"]["lambda_crashes"] == {local_cloud.function_name("WriterFunction"): 1}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_step_functions_retries_a_crashed_task_whose_write_already_happened(
    local_cloud: Any, faults: FaultClient
) -> None:
    faults.set_plan({"lambda_crashes": [{"functions": ["WriterFunction"], "probability": 1.0}]})
    key = uuid.uuid4().hex

    result = _run_fault_machine(local_cloud, {"key": key})

    # States.ALL retried the crash; the writer is not idempotent, so its effect shows twice
    assert result["status"] == "SUCCEEDED", result
    assert json.loads(result["output"])["runs"] == 2
    assert _writer_runs(local_cloud, key) == 2
    assert faults.counters()["lambda_crashes"] == 1


# ---- Streams: duplicate delivery ------------------------------------------------------------------------
def _deliveries(sink: Any, pk: str) -> int:
    item = sink.get_item(Key={"pk": f"seen#{pk}"}, ConsistentRead=True).get("Item")
    return int(item["deliveries"]) if item else 0


def test_a_stream_batch_is_delivered_twice_under_the_plan_and_once_without(
    local_cloud: Any, faults: FaultClient
) -> None:
    names = local_cloud.client("dynamodb").list_tables()["TableNames"]
    source = local_cloud.resource("dynamodb").Table(next(t for t in names if t.endswith("SourceTable")))
    sink = _sink(local_cloud)
    faults.set_plan({"stream_duplicates": [{"functions": ["SinkFunction"], "probability": 1}]})

    twice = f"dup-{uuid.uuid4().hex}"
    source.put_item(Item={"pk": twice, "kind": "outbox"})
    _wait_for(lambda: _deliveries(sink, twice) == 2)
    assert faults.counters()["stream_duplicates"] >= 1

    faults.clear()
    once = f"once-{uuid.uuid4().hex}"
    source.put_item(Item={"pk": once, "kind": "outbox"})
    _wait_for(lambda: _deliveries(sink, once) == 1)
    time.sleep(1.0)  # a duplicate would come right behind the first delivery
    assert _deliveries(sink, once) == 1
    assert _deliveries(sink, twice) == 2


# ---- NATS stopped for a while ---------------------------------------------------------------------------
def test_nats_stopped_fails_publishes_and_started_again_keeps_what_it_stored(
    local_cloud: Any, faults: FaultClient
) -> None:
    import nats

    suffix = uuid.uuid4().hex[:12]
    stream, subject = f"FAULTS_{suffix}", f"localcloud.faults.{suffix}"

    async def scenario() -> None:
        # A client like the relay's: it reconnects on its own
        nc = await nats.connect(
            local_cloud.nats,
            reconnect_time_wait=0.2,
            max_reconnect_attempts=-1,
            connect_timeout=2,
            **local_cloud.nats_login(),
        )
        js = nc.jetstream()
        try:
            await js.add_stream(name=stream, subjects=[subject], storage="file")
            stored = await js.publish(subject, b"before the outage", timeout=5)

            changed = await asyncio.to_thread(faults.nats_stop)
            assert changed["changed"] is True and changed["nats"]["running"] is False
            with pytest.raises(Exception):  # noqa: B017, PT011 - a timeout or a connection error
                await js.publish(subject, b"during the outage", timeout=1)
            with pytest.raises(Exception):  # noqa: B017, PT011 - no server to connect to
                await nats.connect(
                    local_cloud.nats,
                    allow_reconnect=False,
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0.1,
                    connect_timeout=1,
                    **local_cloud.nats_login(),
                )

            started = await asyncio.to_thread(faults.nats_start)
            assert started["changed"] is True and started["nats"]["running"] is True
            after = await _publish_eventually(js, subject, b"after the outage")
            kept = await js.get_msg(stream, stored.seq)
            assert kept.data == b"before the outage"
            assert after.seq > stored.seq
        finally:
            await asyncio.to_thread(faults.nats_start)
            with contextlib.suppress(Exception):  # the test stream is only tidied away when NATS lets it
                await js.delete_stream(stream)
            await nc.close()

    asyncio.run(scenario())
    counters = faults.counters()
    assert counters["nats_stops"] == 1
    assert counters["nats_starts"] == 1


async def _publish_eventually(js: Any, subject: str, data: bytes, within_s: float = 15.0) -> Any:
    """The client reconnects on its own once NATS is back; until then a publish may still fail."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await js.publish(subject, data, timeout=1)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def test_a_planned_nats_outage_ends_by_itself(faults: FaultClient) -> None:
    status = faults.set_plan({"nats_down_for_s": 1.5})

    assert status["nats"]["running"] is False
    assert 0 < status["nats"]["restart_in_s"] <= 1.5
    _wait_for(lambda: faults.status()["nats"]["running"], timeout=20, interval=0.2)
    counters = faults.counters()
    assert counters["nats_stops"] == 1
    assert counters["nats_starts"] == 1

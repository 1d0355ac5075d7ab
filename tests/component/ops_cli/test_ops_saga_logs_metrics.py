"""`vaultpay ops executions|execution|logs|metrics` against a running local cloud, through AWS APIs only.

A real transfer runs through the HTTP API and the saga (its first ReserveFunds attempt fails by fault
injection, so the history has a retry), and one execution is started directly with a transfer nobody created
(it fails and ends in StatusNotRecorded). The commands reach the cloud the way they reach LocalStack or AWS:
AWS_ENDPOINT_URL set, no local-cloud state file in sight.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.bank import (
    create_admin,
    deposit,
    idempotency_key,
    open_account,
    signed_in_admin,
    signed_in_customer,
)
from support.http import ApiClient
from typer.testing import CliRunner, Result

from localcloud.faults import FaultClient
from vaultpay_cli.main import app

pytestmark = pytest.mark.component
ROOT = Path(__file__).resolve().parents[3]
RUPEE = 100  # paise
# Each client speaks from its own loopback address: rate limits are per source IP.
_addresses = (f"127.0.77.{n}" for n in itertools.count(2))
SAGA_STATES = [
    "Begin",
    "MarkProcessing",
    "ReserveFunds",
    "CheckFraud",
    "Decide",
    "MarkApproved",
    "SettleTransfer",
    "CompleteTransfer",
    "Completed",
]


@dataclass(frozen=True)
class SagaRuns:
    completed: str  # a transfer through the API: COMPLETED after one retried ReserveFunds attempt
    failed: str  # an execution for a transfer that does not exist: FAILED


def _wait(what: str, check: Callable[[], bool], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


@pytest.fixture(scope="module")
def saga_runs(local_cloud: Any) -> SagaRuns:
    def api(device_id: str = "ops-cli-phone") -> ApiClient:
        return ApiClient(local_cloud.api, next(_addresses), device_id)

    admin = signed_in_admin(api, create_admin(local_cloud))
    sender = signed_in_customer(api)
    source = open_account(sender)
    assert deposit(admin, source["account_id"], 1_000 * RUPEE).status == 201
    destination = open_account(signed_in_customer(api, device_id="payee-phone"))
    faults = FaultClient(local_cloud.edge)
    # Given the first attempt of every ReserveFunds call fails with a transient error (retried by the saga)
    faults.set_plan(
        {"lambda_errors": [{"functions": ["ReserveFundsFunction"], "error_type": "TransientError"}]}
    )
    try:
        body = {
            "source_account_id": source["account_id"],
            "destination_account_number": destination["account_number"],
            "amount": 250 * RUPEE,
            "currency": "INR",
        }
        reply = sender.post("/v1/transfers", body, headers=idempotency_key())
        assert reply.status == 202, reply.body
        completed = str(reply.body["transfer_id"])
        _wait(
            "the transfer to complete",
            lambda: sender.get(f"/v1/transfers/{completed}").body["status"] == "COMPLETED",
        )
    finally:
        faults.clear()
    # And an execution started by hand for a transfer that was never created
    sfn = local_cloud.client("stepfunctions")
    machine = next(
        m["stateMachineArn"]
        for m in sfn.list_state_machines()["stateMachines"]
        if m["name"].endswith("-transfer")
    )
    failed = f"tr_{uuid.uuid4().hex}"
    saga_input = {
        "transfer_id": failed,
        "correlation_id": f"corr-{failed}",
        "user_id": "usr_nobody",
        "source_account_id": "acc_nowhere",
        "destination_account_id": "acc_nowhere_else",
        "amount": 100,
        "currency": "INR",
    }
    started = sfn.start_execution(stateMachineArn=machine, name=failed, input=json.dumps(saga_input))
    _wait(
        "the hand-started execution to fail",
        lambda: sfn.describe_execution(executionArn=started["executionArn"])["status"] == "FAILED",
    )
    return SagaRuns(completed=completed, failed=failed)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, local_cloud: Any) -> dict[str, str]:
    # No state file in this state dir: the commands use boto3's own configuration, as against AWS.
    env = {
        "VAULTPAY_STATE_DIR": str(tmp_path),
        "AWS_ENDPOINT_URL": local_cloud.edge,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "COLUMNS": "200",  # wide enough that rich never folds an id
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def vaultpay(*args: str) -> Result:
    return CliRunner().invoke(app, ["ops", *args])


def _line_with(output: str, text: str) -> str:
    return next(line for line in output.splitlines() if text in line)


# ---- ops executions ------------------------------------------------------------------------------------


def test_executions_lists_each_transfer_with_its_status(aws_env: dict[str, str], saga_runs: SagaRuns) -> None:
    result = vaultpay("executions")

    assert result.exit_code == 0, result.output
    assert "SUCCEEDED" in _line_with(result.stdout, saga_runs.completed)
    assert "FAILED" in _line_with(result.stdout, saga_runs.failed)
    assert "Executions of vaultpay-local-transfer" in result.stdout


def test_executions_status_filter_and_json(aws_env: dict[str, str], saga_runs: SagaRuns) -> None:
    result = vaultpay("executions", "--status", "failed", "--json")

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    by_id = {e["transfer_id"]: e for e in body["executions"]}
    assert saga_runs.failed in by_id
    assert saga_runs.completed not in by_id
    assert {e["status"] for e in body["executions"]} == {"FAILED"}
    assert by_id[saga_runs.failed]["stop"] is not None
    assert 0 < by_id[saga_runs.failed]["duration_s"] < 60


def test_executions_prints_every_transfer_id_whole_on_an_80_column_terminal(
    aws_env: dict[str, str], saga_runs: SagaRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")

    result = vaultpay("executions")

    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    # An operator copies the id from the table: it is never cut with an ellipsis nor wrapped
    assert saga_runs.completed in result.stdout and saga_runs.failed in result.stdout


def test_logs_json_is_one_document_of_the_lines(aws_env: dict[str, str], saga_runs: SagaRuns) -> None:
    result = vaultpay("logs", "TransferStatusFunction", "--filter", saga_runs.completed, "--json")

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["log_group"].endswith("TransferStatusFunction")
    assert document["events"] and all(saga_runs.completed in e["message"] for e in document["events"])


def test_executions_reads_the_running_cloud_from_its_state_file(
    local_cloud: Any, saga_runs: SagaRuns
) -> None:
    # The installed entry point, as an operator runs it next to `make run`: no AWS_* variables at all.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "-m", "vaultpay_cli.main", "ops", "executions", "--status", "SUCCEEDED"],
        capture_output=True,
        text=True,
        env={**env, "VAULTPAY_STATE_DIR": str(local_cloud.state_dir), "COLUMNS": "200"},
        cwd=ROOT,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCEEDED" in _line_with(done.stdout, saga_runs.completed)
    assert saga_runs.failed not in done.stdout


# ---- ops execution <transfer_id> -----------------------------------------------------------------------


def test_execution_history_shows_the_saga_states_in_order_with_the_retry(
    aws_env: dict[str, str], saga_runs: SagaRuns
) -> None:
    result = vaultpay("execution", saga_runs.completed, "--json")

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["status"] == "SUCCEEDED"
    events = body["events"]
    states = [state for state, _ in itertools.groupby(e["state"] for e in events if e["state"])]
    assert states == SAGA_STATES
    assert (events[0]["event"], events[-1]["event"]) == ("ExecutionStarted", "ExecutionSucceeded")
    # The injected failure, then its retry, both within ReserveFunds
    failed = [e for e in events if e["failed"]]
    assert [(e["state"], e["event"]) for e in failed] == [("ReserveFunds", "LambdaFunctionFailed")]
    assert failed[0]["error"].startswith("TransientError: Fault injected")
    retries = [e for e in events if e["retry"]]
    assert [(e["state"], e["event"], e["retry"]) for e in retries] == [
        ("ReserveFunds", "LambdaFunctionScheduled", 1)
    ]
    assert retries[0]["id"] > failed[0]["id"]
    # Every state that was left has a duration; times only grow
    assert all(e["duration_s"] is not None for e in events if e["event"].endswith("StateExited"))
    assert [e["elapsed_s"] for e in events] == sorted(e["elapsed_s"] for e in events)


def test_execution_table_marks_the_retry_and_the_final_status(
    aws_env: dict[str, str], saga_runs: SagaRuns
) -> None:
    result = vaultpay("execution", saga_runs.completed)

    assert result.exit_code == 0, result.output
    out = result.stdout
    for column in ("state", "event", "time (UTC)", "duration", "error"):
        assert column in out
    positions = [out.index(f" {state} ") for state in SAGA_STATES]
    assert positions == sorted(positions)  # the saga reads down the table in order
    assert "LambdaFunctionScheduled (retry 1)" in out
    assert "TransientError" in _line_with(out, "LambdaFunctionFailed")
    verdict = _line_with(out, f"Execution {saga_runs.completed}:")
    assert "SUCCEEDED" in verdict
    assert "1 retry" in verdict
    assert "1 failed attempt" in verdict


def test_failed_execution_shows_each_failed_task_and_the_final_error(
    aws_env: dict[str, str], saga_runs: SagaRuns
) -> None:
    result = vaultpay("execution", saga_runs.failed)

    assert result.exit_code == 0, result.output
    out = result.stdout
    failures = [line for line in out.splitlines() if "LambdaFunctionFailed" in line]
    assert len(failures) == 2  # MarkProcessing, then its catch MarkFailed
    assert all("InvalidStepInput" in line for line in failures)
    assert out.index("MarkProcessing") < out.index("MarkFailed") < out.index("StatusNotRecorded")
    verdict = _line_with(out, f"Execution {saga_runs.failed}:")
    assert "FAILED" in verdict
    assert "2 failed attempts" in verdict
    assert "StatusNotRecorded: The hold was released" in out


def test_an_unknown_transfer_id_exits_1_with_a_clear_message(
    aws_env: dict[str, str], local_cloud: Any
) -> None:
    unknown = f"tr_{uuid.uuid4().hex}"

    result = vaultpay("execution", unknown)

    assert result.exit_code == 1
    assert f"No execution '{unknown}' of vaultpay-local-transfer." in result.output
    assert "Traceback" not in result.output


# ---- ops logs ------------------------------------------------------------------------------------------


def test_logs_show_the_lines_a_saga_step_wrote_for_the_transfer(
    aws_env: dict[str, str], saga_runs: SagaRuns
) -> None:
    # Logs are shipped in the background: the lines of the last step may take a moment to arrive.
    result = vaultpay("logs", "TransferStatusFunction", "--filter", saga_runs.completed)
    deadline = time.monotonic() + 15
    while result.stdout.count("transfer status recorded") < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
        result = vaultpay("logs", "TransferStatusFunction", "--filter", saga_runs.completed)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # processing, approved, complete: one status change each, and only this transfer's lines
    recorded = [json.loads(line.split(" ", 3)[3]) for line in lines if "transfer status recorded" in line]
    assert len(recorded) == 3
    assert {r["transfer_id"] for r in recorded} == {saga_runs.completed}
    assert all(saga_runs.completed in line for line in lines)


def test_logs_find_a_function_by_its_physical_name_too(aws_env: dict[str, str], local_cloud: Any) -> None:
    name = local_cloud.function_name("ReserveFundsFunction")
    by_logical_id = vaultpay("logs", "ReserveFundsFunction", "--limit", "5")
    by_name = vaultpay("logs", name, "--limit", "5")

    assert by_logical_id.exit_code == by_name.exit_code == 0, by_logical_id.output + by_name.output
    assert by_logical_id.stdout == by_name.stdout
    assert len(by_name.stdout.splitlines()) == 5


def test_logs_of_an_unknown_function_exit_1_naming_the_deployed_ones(
    aws_env: dict[str, str], local_cloud: Any
) -> None:
    result = vaultpay("logs", "NoSuchFunction")

    assert result.exit_code == 1
    assert "No function 'NoSuchFunction'" in result.output
    assert local_cloud.function_name("TransferStatusFunction") in result.output


def _lines(stream: Any) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


@pytest.fixture
def follower(aws_env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "vaultpay_cli.main", "ops", "logs", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **aws_env},
            cwd=ROOT,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_logs_follow_prints_lines_written_after_it_started(
    follower: Callable[..., subprocess.Popen[str]], local_cloud: Any, saga_runs: SagaRuns
) -> None:
    process = follower("TransferStatusFunction", "--follow", "--since", "1s", "--interval", "0.3")
    errors = _lines(process.stderr)
    # Given the follower is polling
    deadline = time.monotonic() + 60
    note = ""
    while "Following" not in note:
        note = errors.get(timeout=max(0.1, deadline - time.monotonic()))
    output = _lines(process.stdout)
    # When the function runs again (a read-only `view`, of a transfer that does not exist)
    answer = local_cloud.client("lambda").invoke(
        FunctionName=local_cloud.function_name("TransferStatusFunction"),
        Payload=json.dumps({"op": "view", "state": {"transfer_id": saga_runs.failed}}).encode(),
    )
    request_id = answer["ResponseMetadata"]["RequestId"]
    # Then its START line appears
    deadline = time.monotonic() + 30
    seen: list[str] = []
    while not any(f"START RequestId: {request_id}" in line for line in seen):
        seen.append(output.get(timeout=max(0.1, deadline - time.monotonic())))
    # And Ctrl-C stops it cleanly
    process.send_signal(signal.SIGINT)
    assert process.wait(20) == 0
    assert len([line for line in seen if f"START RequestId: {request_id}" in line]) == 1


# ---- ops metrics ---------------------------------------------------------------------------------------


def test_metrics_runs_with_the_default_namespaces(aws_env: dict[str, str], local_cloud: Any) -> None:
    result = vaultpay("metrics")

    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    # Locally nothing turns EMF lines or executions into metrics: the command says so unless something
    # (another test) put some.
    assert "No CloudWatch metrics in VaultPay, AWS/States yet." in result.stdout or (
        "CloudWatch metrics (last 3 h" in result.stdout
    )


def test_metrics_says_clearly_when_there_are_none(aws_env: dict[str, str], local_cloud: Any) -> None:
    namespace = f"VaultPay/Empty{uuid.uuid4().hex[:8]}"

    result = vaultpay("metrics", "--namespace", namespace)

    assert result.exit_code == 0, result.output
    assert f"No CloudWatch metrics in {namespace} yet." in result.stdout
    assert "EMF" in result.stdout  # why, locally
    assert "PutMetricData" in result.stdout


def test_metrics_sums_what_was_put_per_metric_and_dimension(
    aws_env: dict[str, str], local_cloud: Any
) -> None:
    namespace = f"VaultPay/Test{uuid.uuid4().hex[:8]}"
    cloudwatch = local_cloud.client("cloudwatch")
    # Given three TransferCompleted counts for one service and one FundsReserved
    for value in (1, 2, 4):
        cloudwatch.put_metric_data(
            Namespace=namespace,
            MetricData=[
                {
                    "MetricName": "TransferCompleted",
                    "Dimensions": [{"Name": "service", "Value": "transfers"}],
                    "Value": value,
                    "Unit": "Count",
                }
            ],
        )
    cloudwatch.put_metric_data(
        Namespace=namespace, MetricData=[{"MetricName": "FundsReserved", "Value": 3, "Unit": "Count"}]
    )

    table = vaultpay("metrics", "--namespace", namespace, "--hours", "1")
    body = json.loads(vaultpay("metrics", "--namespace", namespace, "--hours", "1", "--json").stdout)

    assert table.exit_code == 0, table.output
    completed = _line_with(table.stdout, "TransferCompleted")
    assert "service=transfers" in completed
    assert " 7 " in completed  # the sum
    assert " 3 " in completed  # the samples
    rows = {row["metric"]: row for row in body["metrics"]}
    assert (rows["TransferCompleted"]["sum"], rows["TransferCompleted"]["samples"]) == (7, 3)
    assert rows["TransferCompleted"]["maximum"] == 4
    assert (rows["FundsReserved"]["sum"], rows["FundsReserved"]["dimensions"]) == (3, "")

"""localcloud.sfn_engine: execution logs as AWS writes them, and the states:startExecution integration."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from moto import mock_aws

from localcloud import sfn_engine

pytestmark = pytest.mark.component

GROUP = "/aws/vendedlogs/states/machine"
GROUP_ARN = f"arn:aws:logs:us-east-1:123456789012:log-group:{GROUP}:*"
DEFINITION = {
    "StartAt": "Check",
    "States": {
        "Check": {"Type": "Pass", "Result": {"ok": True}, "ResultPath": "$.check", "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}


def _machine(sfn: Any, name: str, level: str, machine_type: str = "EXPRESS") -> str:
    arn: str = sfn.create_state_machine(
        name=name,
        definition=json.dumps(DEFINITION),
        roleArn="arn:aws:iam::123456789012:role/states",
        type=machine_type,
        loggingConfiguration={
            "level": level,
            "includeExecutionData": False,
            "destinations": [{"cloudWatchLogsLogGroup": {"logGroupArn": GROUP_ARN}}],
        },
    )["stateMachineArn"]
    return arn


def _messages(logs: Any) -> list[dict[str, Any]]:
    found = logs.filter_log_events(logGroupName=GROUP)["events"]
    return [json.loads(event["message"]) for event in found]


def _wait_for(predicate: Any, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_every_event_of_an_express_execution_is_logged_without_its_data() -> None:
    sfn_engine.install()
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        logs = boto3.client("logs", region_name="us-east-1")
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        logs.create_log_group(logGroupName=GROUP)
        machine = _machine(sfn, "machine", "ALL")

        # When an execution runs with a secret in its input
        started = sfn.start_execution(stateMachineArn=machine, name="tr_1", input='{"secret": "s3cr3t"}')
        _wait_for(lambda: any(m["type"] == "ExecutionSucceeded" for m in _messages(logs)))

        # Then every history event is one message with AWS's fields, in order
        messages = _messages(logs)
        assert [m["type"] for m in messages] == [
            "ExecutionStarted",
            "PassStateEntered",
            "PassStateExited",
            "SucceedStateEntered",
            "SucceedStateExited",
            "ExecutionSucceeded",
        ]
        assert [int(m["id"]) for m in messages] == list(range(1, len(messages) + 1))
        assert {m["execution_arn"] for m in messages} == {started["executionArn"]}
        assert all(m["event_timestamp"].isdigit() for m in messages)
        assert messages[1]["details"]["name"] == "Check"
        # And without the execution's data (includeExecutionData: false)
        assert not any("s3cr3t" in json.dumps(m) for m in messages)
        streams = logs.describe_log_streams(logGroupName=GROUP)["logStreams"]
        assert [s["logStreamName"].split("/")[-1] for s in streams] == ["tr_1"]


def test_level_error_logs_only_failures_and_off_logs_nothing() -> None:
    sfn_engine.install()
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        logs = boto3.client("logs", region_name="us-east-1")
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        logs.create_log_group(logGroupName=GROUP)
        quiet = _machine(sfn, "quiet", "ERROR", "STANDARD")
        execution = sfn.start_execution(stateMachineArn=quiet, name="tr_2", input="{}")["executionArn"]
        _wait_for(lambda: sfn.describe_execution(executionArn=execution)["status"] == "SUCCEEDED")
        assert _messages(logs) == []


def test_a_task_starts_another_machine_and_a_second_start_of_the_same_name_is_caught() -> None:
    sfn_engine.install()
    child = {"StartAt": "Wait", "States": {"Wait": {"Type": "Pass", "End": True}}}
    parent = {
        "StartAt": "Start",
        "States": {
            "Start": {
                "Type": "Task",
                "Resource": "arn:aws:states:::states:startExecution",
                "Parameters": {
                    "StateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:child",
                    "Name.$": "$.transfer_id",
                    "Input": {
                        "saga.$": "$",
                        "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID.$": "$$.Execution.Id",
                    },
                },
                "ResultPath": "$.started",
                "Catch": [
                    {
                        "ErrorEquals": ["StepFunctions.ExecutionAlreadyExistsException"],
                        "ResultPath": "$.refused",
                        "Next": "AlreadyStarted",
                    }
                ],
                "End": True,
            },
            "AlreadyStarted": {"Type": "Pass", "End": True},
        },
    }
    role = "arn:aws:iam::123456789012:role/states"
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        child_arn = sfn.create_state_machine(name="child", definition=json.dumps(child), roleArn=role)[
            "stateMachineArn"
        ]
        parent_arn = sfn.create_state_machine(
            name="parent", definition=json.dumps(parent), roleArn=role, type="EXPRESS"
        )["stateMachineArn"]

        def run(name: str, body: dict[str, Any]) -> dict[str, Any]:
            arn = sfn.start_execution(stateMachineArn=parent_arn, name=name, input=json.dumps(body))[
                "executionArn"
            ]
            _wait_for(lambda: sfn.describe_execution(executionArn=arn)["status"] != "RUNNING")
            done = sfn.describe_execution(executionArn=arn)
            assert done["status"] == "SUCCEEDED", done
            return dict(json.loads(done["output"]))

        # When the saga starts its child, named after the transfer
        first = run("first", {"transfer_id": "tr_1", "n": 1})

        # Then the child runs with the saga's state, linked to its parent, and the task answers as AWS does
        child_execution = child_arn.replace(":stateMachine:", ":execution:") + ":tr_1"
        started = json.loads(sfn.describe_execution(executionArn=child_execution)["input"])
        assert started["saga"] == {"transfer_id": "tr_1", "n": 1}
        assert started["AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID"].endswith(":first")
        assert first["started"]["ExecutionArn"] == child_execution
        assert isinstance(first["started"]["StartDate"], str)
        # And a second start of that name (another input) is refused with the error a Catch can name
        second = run("second", {"transfer_id": "tr_1", "n": 2})
        assert second["refused"]["Error"] == "StepFunctions.ExecutionAlreadyExistsException"


def test_a_definition_is_parsed_once_for_all_its_executions(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    sfn_engine.install()
    parsed: list[str] = []
    original = AmazonStateLanguageParser.parse

    def counting(definition: str) -> Any:
        parsed.append(definition)
        return original(definition)

    monkeypatch.setattr(AmazonStateLanguageParser, "parse", staticmethod(counting))
    # A definition no other test runs (the cache is the process's)
    once = {"Type": "Pass", "Result": "parse-once", "End": True}
    definition = {"StartAt": "Once", "States": {"Once": once}}
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        machine = sfn.create_state_machine(
            name="once", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/states"
        )["stateMachineArn"]
        parsed.clear()  # creating the machine validates (parses) the definition
        arns = [
            sfn.start_execution(stateMachineArn=machine, name=f"run-{n}", input="{}")["executionArn"]
            for n in range(3)
        ]
        for arn in arns:
            _wait_for(lambda arn=arn: sfn.describe_execution(executionArn=arn)["status"] == "SUCCEEDED")

    # Three executions from one parse at most (none when an earlier run of this process cached it)
    assert len([d for d in parsed if "parse-once" in d]) <= 1

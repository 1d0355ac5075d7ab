"""The Lambda runtime's pure pieces: names, ARNs, the worker environment, REPORT lines, tails, API shapes."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from localcloud.lambda_api import function_configuration, with_qualifier
from localcloud.lambda_runtime import (
    TAIL_BYTES,
    RequestTooLarge,
    TooManyRequests,
    exit_reason,
    full_arn,
    function_name_from,
    report_line,
    tail_of,
    worker_environment,
)
from localcloud.spec import FunctionSpec

pytestmark = pytest.mark.unit

ARN = "arn:aws:lambda:us-east-1:000000000000:function:pay"


def a_spec(**changes: object) -> FunctionSpec:
    fields: dict[str, object] = {
        "logical_id": "PayFunction",
        "name": "pay",
        "handler": "app.handler",
        "code_dir": Path("/code/pay"),
        "layer_dirs": (),
        "runtime": "python3.13",
        "timeout_s": 3,
        "memory_mb": 256,
        "environment": {"TABLE": "accounts"},
    }
    fields.update(changes)
    return FunctionSpec(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "given",
    ["pay", "pay:live", ARN, ARN + ":$LATEST", "000000000000:function:pay", "000000000000:function:pay:7"],
)
def test_every_name_form_the_invoke_api_accepts_names_the_function(given: str) -> None:
    assert function_name_from(given) == "pay"


def test_the_invoked_arn_keeps_the_callers_qualifier() -> None:
    assert full_arn("pay") == ARN
    assert full_arn("pay:live") == ARN + ":live"
    assert full_arn("000000000000:function:pay") == ARN
    assert full_arn(ARN + ":7") == ARN + ":7"


def test_a_qualifier_parameter_is_added_only_to_an_unqualified_name() -> None:
    assert with_qualifier("pay", "live") == "pay:live"
    assert with_qualifier(ARN, "live") == ARN + ":live"
    assert with_qualifier(ARN + ":7", "live") == ARN + ":7"
    assert with_qualifier("pay", None) == "pay"


def test_the_worker_environment_is_minimal_plus_template_plus_reserved_variables() -> None:
    # Given a parent with a secret and a template that tries to override a reserved variable
    parent = {"PATH": "/usr/bin", "HOME": "/home/dev", "SECRET_X": "do-not-leak", "AWS_PROFILE": "prod"}
    spec = a_spec(environment={"TABLE": "accounts", "AWS_LAMBDA_FUNCTION_NAME": "spoofed"})

    # When
    env = worker_environment(spec, {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"}, "stream-1", parent)

    # Then
    assert "SECRET_X" not in env and "AWS_PROFILE" not in env
    assert env["PATH"] == "/usr/bin" and env["TZ"] == "UTC"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert env["TABLE"] == "accounts"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "pay"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/pay"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] == "stream-1"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.13"
    assert env["LAMBDA_TASK_ROOT"] == "/code/pay"
    assert env["_HANDLER"] == "app.handler"
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"


def test_a_template_endpoint_never_takes_a_worker_away_from_the_local_cloud() -> None:
    # Given a template that names another endpoint (LocalEndpointUrl, as set for SAM's container)
    spec = a_spec(environment={"AWS_ENDPOINT_URL": "http://host.docker.internal:4566"})

    # When
    env = worker_environment(spec, {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"}, "stream-1", {})

    # Then the worker calls the local cloud's edge
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"


def test_the_report_line_has_init_duration_only_on_a_cold_start() -> None:
    warm = report_line("r-1", duration_ms=1.234, memory_mb=256, max_memory_mb=40)
    cold = report_line("r-1", duration_ms=1.234, memory_mb=256, max_memory_mb=40, init_ms=150.5)

    assert warm == (
        "REPORT RequestId: r-1\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 256 MB\t"
        "Max Memory Used: 40 MB"
    )
    # The init phase is billed too (AWS, since August 2025).
    assert cold == (
        "REPORT RequestId: r-1\tDuration: 1.23 ms\tBilled Duration: 152 ms\tMemory Size: 256 MB\t"
        "Max Memory Used: 40 MB\tInit Duration: 150.50 ms"
    )


def test_a_failed_invoke_reports_its_status_and_error_type() -> None:
    line = report_line(
        "r", duration_ms=3, memory_mb=128, max_memory_mb=30, status="error", error_type="Runtime.ExitError"
    )

    assert line.endswith("\tStatus: error\tError Type: Runtime.ExitError")


def test_the_tail_is_the_last_4_kb_of_the_invocations_log() -> None:
    lines = ["START RequestId: r", *(f"line {i:05d}" for i in range(1000)), "END RequestId: r"]

    tail = base64.b64decode(tail_of(lines))

    assert len(tail) == TAIL_BYTES
    assert tail.endswith(b"line 00999\nEND RequestId: r\n")


def test_exit_reasons_read_like_aws() -> None:
    assert exit_reason(1) == "Runtime exited with error: exit status 1"
    assert exit_reason(-9) == "Runtime exited with error: signal: killed"
    assert exit_reason(0) == "Runtime exited without providing a reason"


def test_refusals_carry_the_aws_status_type_and_body() -> None:
    throttled = TooManyRequests("Rate Exceeded.")
    too_large = RequestTooLarge("Request must be smaller than 6291456 bytes for the InvokeFunction operation")

    assert (throttled.status, throttled.error_type) == (429, "TooManyRequestsException")
    assert throttled.body()["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert (too_large.status, too_large.error_type) == (413, "RequestEntityTooLargeException")
    assert too_large.body() == {"Type": "User", "message": too_large.message}


def test_the_function_configuration_has_what_list_functions_returns() -> None:
    config = function_configuration(a_spec(), deployed_at=0.0)

    assert config["FunctionName"] == "pay"
    assert config["FunctionArn"] == ARN
    assert config["MemorySize"] == 256 and config["Timeout"] == 3
    assert config["Environment"] == {"Variables": {"TABLE": "accounts"}}
    assert config["LastModified"] == "1970-01-01T00:00:00.000+0000"

"""The Lambda API on an aiohttp server, driven by a real boto3 client: invoke, errors, logs, listing."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from botocore.config import Config
from botocore.exceptions import ClientError

from localcloud.lambda_api import add_lambda_routes
from localcloud.lambda_runtime import LambdaRuntime
from localcloud.spec import FunctionSpec

pytestmark = pytest.mark.component

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lambda_runtime"
ARN = "arn:aws:lambda:us-east-1:000000000000:function:{}"


def a_function(name: str, **changes: Any) -> FunctionSpec:
    fields: dict[str, Any] = {
        "logical_id": "ProbeFunction",
        "name": name,
        "handler": "app.handler",
        "code_dir": FIXTURES / "probe",
        "layer_dirs": (),
        "runtime": "python3.13",
        "timeout_s": 2,
        "memory_mb": 512,
        "environment": {"GREETING": "hello"},
    }
    fields.update(changes)
    return FunctionSpec(**fields)


FUNCTIONS = {"probe": a_function("probe"), "solo": a_function("solo", reserved_concurrency=1)}


class Lambda:
    """A boto3 lambda client against the test server; its blocking calls run in a thread."""

    def __init__(self, endpoint: str, runtime: LambdaRuntime) -> None:
        self.runtime = runtime
        self.client = boto3.client(
            "lambda",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )

    async def __call__(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        def call() -> dict[str, Any]:
            response: dict[str, Any] = getattr(self.client, operation)(**kwargs)
            if "Payload" in response:
                response["Payload"] = response["Payload"].read()
            return response

        return await asyncio.to_thread(call)


@pytest.fixture
async def aws_lambda() -> AsyncIterator[Lambda]:
    runtime = LambdaRuntime(FUNCTIONS, base_env={}, event_retry_delay_s=0.05)
    app = web.Application()
    add_lambda_routes(app, runtime)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield Lambda(str(server.make_url("")).rstrip("/"), runtime)
    finally:
        await server.close()
        await runtime.close()


async def test_invoke_returns_the_functions_result(aws_lambda: Lambda) -> None:
    out = await aws_lambda("invoke", FunctionName="probe", Payload=json.dumps({"amount": 5}))

    assert out["StatusCode"] == 200
    assert "FunctionError" not in out
    assert out["ExecutedVersion"] == "$LATEST"
    body = json.loads(out["Payload"])
    assert body["event"] == {"amount": 5}
    assert out["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"] == body["context"]["aws_request_id"]


async def test_invoke_by_arn_with_a_qualifier_reaches_the_function(aws_lambda: Lambda) -> None:
    out = await aws_lambda("invoke", FunctionName=ARN.format("probe"), Qualifier="live", Payload=b"{}")

    assert json.loads(out["Payload"])["context"]["invoked_function_arn"] == ARN.format("probe") + ":live"


async def test_a_function_error_comes_back_as_function_error_unhandled(aws_lambda: Lambda) -> None:
    out = await aws_lambda(
        "invoke", FunctionName="probe", Payload=json.dumps({"action": "raise", "message": "no"})
    )

    assert out["StatusCode"] == 200
    assert out["FunctionError"] == "Unhandled"
    error = json.loads(out["Payload"])
    assert (error["errorType"], error["errorMessage"]) == ("PaymentDeclined", "no")


async def test_log_type_tail_returns_the_end_of_the_invocations_log(aws_lambda: Lambda) -> None:
    out = await aws_lambda(
        "invoke",
        FunctionName="probe",
        Payload=json.dumps({"action": "print", "lines": ["hi"]}),
        LogType="Tail",
    )

    log = base64.b64decode(out["LogResult"]).decode()
    request_id = out["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert f"START RequestId: {request_id} Version: $LATEST\nhi\n" in log
    assert f"\nREPORT RequestId: {request_id}\tDuration: " in log


async def test_the_client_context_reaches_the_handler(aws_lambda: Lambda) -> None:
    context = base64.b64encode(json.dumps({"custom": {"tenant": "t-1"}}).encode()).decode()

    out = await aws_lambda("invoke", FunctionName="probe", Payload=b"{}", ClientContext=context)

    assert json.loads(out["Payload"])["context"]["client_context"] == {"tenant": "t-1"}


async def test_an_unknown_function_raises_resource_not_found(aws_lambda: Lambda) -> None:
    with pytest.raises(aws_lambda.client.exceptions.ResourceNotFoundException) as raised:
        await aws_lambda("invoke", FunctionName=ARN.format("nope"), Payload=b"{}")

    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert error["Error"]["Message"] == f"Function not found: {ARN.format('nope')}"


async def test_event_and_dry_run_invokes_answer_202_and_204(aws_lambda: Lambda) -> None:
    event = await aws_lambda("invoke", FunctionName="probe", InvocationType="Event", Payload=b"{}")
    dry_run = await aws_lambda("invoke", FunctionName="probe", InvocationType="DryRun", Payload=b"{}")

    assert (event["StatusCode"], event["Payload"]) == (202, b"")
    assert dry_run["StatusCode"] == 204


async def test_a_payload_over_6_mb_is_refused_with_413_as_aws_does(aws_lambda: Lambda) -> None:
    with pytest.raises(ClientError) as raised:
        await aws_lambda("invoke", FunctionName="probe", Payload=json.dumps({"b": "x" * 6_300_000}))

    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert error["Error"]["Code"] == "RequestEntityTooLargeException"
    assert (
        error["Error"]["Message"]
        == "Request must be smaller than 6291456 bytes for the InvokeFunction operation"
    )


async def test_beyond_reserved_concurrency_the_client_is_throttled(aws_lambda: Lambda) -> None:
    # Given the one execution the function may have is busy
    busy = asyncio.ensure_future(
        aws_lambda("invoke", FunctionName="solo", Payload=json.dumps({"action": "sleep", "seconds": 1}))
    )
    assert await eventually(lambda: aws_lambda.runtime.stats()["solo"]["busy"] == 1)

    # When / Then
    with pytest.raises(aws_lambda.client.exceptions.TooManyRequestsException) as raised:
        await aws_lambda("invoke", FunctionName="solo", Payload=b"{}")
    assert raised.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert "FunctionError" not in await busy


async def eventually(check: Any, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return bool(check())


async def test_list_functions_returns_every_deployed_function(aws_lambda: Lambda) -> None:
    out = await aws_lambda("list_functions")

    assert [f["FunctionName"] for f in out["Functions"]] == ["probe", "solo"]
    probe = out["Functions"][0]
    assert probe["FunctionArn"] == ARN.format("probe")
    assert (probe["Runtime"], probe["Handler"], probe["MemorySize"], probe["Timeout"]) == (
        "python3.13",
        "app.handler",
        512,
        2,
    )


async def test_list_functions_pages_with_the_sdks_paginator(aws_lambda: Lambda) -> None:
    def all_names() -> list[str]:
        pages = aws_lambda.client.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 1})
        return [f["FunctionName"] for page in pages for f in page["Functions"]]

    assert await asyncio.to_thread(all_names) == ["probe", "solo"]


async def test_get_function_returns_the_configuration(aws_lambda: Lambda) -> None:
    out = await aws_lambda("get_function", FunctionName=ARN.format("solo"))
    config = await aws_lambda("get_function_configuration", FunctionName="probe")

    assert out["Configuration"]["FunctionName"] == "solo"
    assert out["Concurrency"] == {"ReservedConcurrentExecutions": 1}
    assert config["Environment"] == {"Variables": {"GREETING": "hello"}}


async def test_get_function_of_an_unknown_function_raises_resource_not_found(aws_lambda: Lambda) -> None:
    with pytest.raises(aws_lambda.client.exceptions.ResourceNotFoundException):
        await aws_lambda("get_function", FunctionName="nope")

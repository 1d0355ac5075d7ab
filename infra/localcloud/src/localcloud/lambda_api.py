"""The Lambda API on the edge: Invoke, ListFunctions and GetFunction, in the shape boto3's client expects."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from localcloud.lambda_runtime import MAX_SYNC_PAYLOAD, InvokeRejected, LambdaRuntime
from localcloud.spec import FunctionNotFound, FunctionSpec

log = logging.getLogger(__name__)

PREFIX = "/2015-03-31/functions"
RUNTIME_KEY = web.AppKey("lambda_runtime", LambdaRuntime)


def add_lambda_routes(app: web.Application, runtime: LambdaRuntime) -> None:
    """Mounts the Lambda API; add it before any catch-all route."""
    app[RUNTIME_KEY] = runtime
    app.router.add_post(PREFIX + "/{name}/invocations", _invoke)
    app.router.add_get(PREFIX + "/", _list_functions)
    app.router.add_get(PREFIX, _list_functions)
    app.router.add_get(PREFIX + "/{name}", _get_function)
    app.router.add_get(PREFIX + "/{name}/configuration", _get_function_configuration)


def aws_error(status: int, error_type: str, message: str, **extra: Any) -> web.Response:
    """An error in the Lambda API's shape: botocore reads the type from x-amzn-ErrorType."""
    return web.json_response(
        {"Type": "User", "message": message, **extra},
        status=status,
        headers={"x-amzn-ErrorType": error_type},
    )


def with_qualifier(name_or_arn: str, qualifier: str | None) -> str:
    """Adds the Qualifier query parameter to a function name or ARN that does not carry one already."""
    parts = name_or_arn.split(":")
    if name_or_arn.startswith("arn:"):
        bare = 7  # arn:aws:lambda:region:account:function:name
    elif len(parts) >= 3 and parts[1] == "function":
        bare = 3  # account:function:name
    else:
        bare = 1
    return f"{name_or_arn}:{qualifier}" if qualifier and len(parts) <= bare else name_or_arn


def _function_not_found(exc: FunctionNotFound) -> web.Response:
    return aws_error(404, "ResourceNotFoundException", str(exc))


def _decode_client_context(header: str | None) -> Mapping[str, Any] | None:
    """X-Amz-Client-Context: base64 of a JSON object, as the SDKs send it."""
    if not header:
        return None
    try:
        value = json.loads(base64.b64decode(header, validate=True))
    except (binascii.Error, ValueError):
        raise InvokeRejected("Client context must be a valid Base64-encoded JSON object.") from None
    if not isinstance(value, dict):
        raise InvokeRejected("Client context must be a valid Base64-encoded JSON object.")
    return value


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The request body, keeping at most limit + 1 bytes: enough for the runtime to answer 413.

    Read from the stream rather than with request.read(), so the app's client_max_size does not answer first
    with a 413 that is not in the AWS shape.
    """
    chunks: list[bytes] = []
    kept = 0
    while chunk := await request.content.readany():
        if kept <= limit:
            chunks.append(chunk[: limit + 1 - kept])
            kept += len(chunks[-1])
    return b"".join(chunks)


async def _invoke(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    # Percent-decoded already; often a full ARN. A qualifier runs $LATEST but shows in invoked_function_arn.
    name = with_qualifier(request.match_info["name"], request.query.get("Qualifier"))
    body = await _read_body(request, MAX_SYNC_PAYLOAD)
    invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
    try:
        client_context = _decode_client_context(request.headers.get("X-Amz-Client-Context"))
        result = await runtime.invoke(
            name,
            body,
            invocation_type=invocation_type,
            log_type=request.headers.get("X-Amz-Log-Type", "None"),
            client_context=client_context,
        )
    except FunctionNotFound as exc:
        return _function_not_found(exc)
    except InvokeRejected as exc:
        headers = {"x-amzn-ErrorType": exc.error_type}
        return web.json_response(exc.body(), status=exc.status, headers=headers)
    except Exception as exc:  # a local cloud bug: answer like AWS's own failures, so the SDK surfaces it
        log.exception("invoking %s failed", name)
        return aws_error(500, "ServiceException", f"The local Lambda runtime failed: {exc!r}", Type="Service")
    headers = {"x-amzn-RequestId": result.request_id}
    if invocation_type == "RequestResponse":
        headers["X-Amz-Executed-Version"] = "$LATEST"
    if result.function_error:
        headers["X-Amz-Function-Error"] = result.function_error
    if result.log_result:
        headers["X-Amz-Log-Result"] = result.log_result
    return web.Response(
        status=result.status, body=result.payload, headers=headers, content_type="application/json"
    )


def function_configuration(spec: FunctionSpec, deployed_at: float) -> dict[str, Any]:
    """FunctionConfiguration as ListFunctions and GetFunction return it (what the local cloud knows of it)."""
    modified = time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(deployed_at))
    return {
        "FunctionName": spec.name,
        "FunctionArn": spec.arn,
        "Runtime": spec.runtime,
        "Handler": spec.handler,
        "CodeSize": 0,
        "Description": "",
        "Timeout": spec.timeout_s,
        "MemorySize": spec.memory_mb,
        "LastModified": modified,
        "Version": "$LATEST",
        "Environment": {"Variables": dict(spec.environment)},
        "TracingConfig": {"Mode": "PassThrough"},
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
        "EphemeralStorage": {"Size": 512},
        "LoggingConfig": {"LogFormat": "Text", "LogGroup": spec.log_group_name},
    }


async def _list_functions(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    names = sorted(runtime.functions)
    marker = request.query.get("Marker")
    start = names.index(marker) if marker in names else 0
    try:
        max_items = max(1, min(int(request.query.get("MaxItems", "50")), 10_000))
    except ValueError:
        return aws_error(400, "InvalidParameterValueException", "MaxItems must be an integer.")
    page = names[start : start + max_items]
    specs = runtime.functions
    body: dict[str, Any] = {
        "Functions": [function_configuration(specs[n], runtime.deployed_at(n)) for n in page],
    }
    if start + max_items < len(names):
        body["NextMarker"] = names[start + max_items]
    return web.json_response(body)


async def _get_function(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    try:
        spec = runtime.function(request.match_info["name"])
    except FunctionNotFound as exc:
        return _function_not_found(exc)
    body: dict[str, Any] = {"Configuration": function_configuration(spec, runtime.deployed_at(spec.name))}
    if spec.reserved_concurrency is not None:
        body["Concurrency"] = {"ReservedConcurrentExecutions": spec.reserved_concurrency}
    return web.json_response(body)


async def _get_function_configuration(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    try:
        spec = runtime.function(request.match_info["name"])
    except FunctionNotFound as exc:
        return _function_not_found(exc)
    return web.json_response(function_configuration(spec, runtime.deployed_at(spec.name)))

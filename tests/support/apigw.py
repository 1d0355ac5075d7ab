"""API Gateway proxy events as the API emulator hands them to a function behind the authorizer."""

from __future__ import annotations

import json
import uuid
from typing import Any

# requestContext.authorizer as API Gateway hands a customer's Allow to the function (with its own keys).
CUSTOMER_DECISION: dict[str, Any] = {
    "user_id": "usr_01JD3F6Q",
    "role": "customer",
    "device_id": "device-4f1c2a",
    "correlation_id": "c0ffee00-0000-4000-8000-000000000002",
    "auth_error": "",
    "retry_after": 0,
    "principalId": "usr_01JD3F6Q",
    "integrationLatency": 0,
}


def request_event(
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
    resource: str | None = None,
    query: dict[str, str] | None = None,
    path_parameters: dict[str, str] | None = None,
    authorizer: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """A REST API proxy event as API Gateway sends it: a `body` string as it is, anything else as JSON;
    `authorizer` the context the authorizer added (none on a public route)."""
    headers = headers or {}
    context: dict[str, Any] = {
        "resourcePath": resource or path,
        "httpMethod": method,
        "path": f"/local{path}",
        "stage": "local",
        "requestId": request_id or uuid.uuid4().hex,
        "identity": {"sourceIp": "127.0.0.1"},
    }
    if authorizer is not None:
        context["authorizer"] = authorizer
    return {
        "resource": resource or path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": context,
        "body": body if body is None or isinstance(body, str) else json.dumps(body),
        "isBase64Encoded": False,
    }


def proxy_event(
    method: str,
    path: str,
    *,
    user_id: str,
    role: str = "customer",
    body: Any = None,
    resource: str | None = None,
    path_parameters: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """A customer's (or with `role`, an admin's) request on `test-device`, past the authorizer."""
    sent = {"Content-Type": "application/json", "X-Device-Id": "test-device", **(headers or {})}
    if idempotency_key is not None:
        sent["Idempotency-Key"] = idempotency_key
    return request_event(
        method,
        path,
        headers=sent,
        body=json.dumps(body) if body is not None else None,
        resource=resource,
        query=query,
        path_parameters=path_parameters,
        authorizer={
            "user_id": user_id,
            "role": role,
            "device_id": "test-device",
            "correlation_id": uuid.uuid4().hex,
            "auth_error": "",
        },
    )

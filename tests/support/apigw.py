"""API Gateway proxy events as the API emulator hands them to a function behind the authorizer."""

from __future__ import annotations

import json
import uuid
from typing import Any


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
    sent = {"Content-Type": "application/json", "X-Device-Id": "test-device", **(headers or {})}
    if idempotency_key is not None:
        sent["Idempotency-Key"] = idempotency_key
    return {
        "resource": resource or path,
        "path": path,
        "httpMethod": method,
        "headers": sent,
        "multiValueHeaders": {k: [v] for k, v in sent.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource or path,
            "httpMethod": method,
            "path": f"/local{path}",
            "stage": "local",
            "requestId": uuid.uuid4().hex,
            "identity": {"sourceIp": "127.0.0.1"},
            "authorizer": {
                "user_id": user_id,
                "role": role,
                "device_id": "test-device",
                "correlation_id": uuid.uuid4().hex,
                "auth_error": "",
            },
        },
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }

"""DocsFunction: GET /openapi.json serves the committed document, GET /docs a Swagger UI that needs no CDN."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support.apigw import proxy_event
from support.handlers import load_handler
from support.lambda_context import FakeLambdaContext

pytestmark = pytest.mark.component
ROOT = Path(__file__).resolve().parents[3]


LAMBDA_CONTEXT = FakeLambdaContext("vaultpay-local-DocsFunction")


@pytest.fixture(scope="module")
def docs_app() -> ModuleType:
    return load_handler("ops/docs")


def _get(docs_app: ModuleType, path: str) -> dict[str, Any]:
    event = proxy_event("GET", path, user_id="")
    event["requestContext"]["authorizer"] = None  # a public route: API Gateway runs no authorizer
    response: dict[str, Any] = docs_app.handler(event, LAMBDA_CONTEXT)
    return response


def _header(response: dict[str, Any], name: str) -> str:
    headers = {**(response.get("headers") or {}), **(response.get("multiValueHeaders") or {})}
    value = next(v for k, v in headers.items() if k.lower() == name.lower())
    return str(value[0] if isinstance(value, list) else value)


def test_openapi_json_is_the_committed_document(docs_app: ModuleType) -> None:
    response = _get(docs_app, "/openapi.json")
    assert response["statusCode"] == 200
    assert _header(response, "Content-Type").startswith("application/json")
    committed = json.loads((ROOT / "infra" / "openapi" / "openapi.json").read_text())
    assert json.loads(response["body"]) == committed
    assert _header(response, "X-Correlation-Id")


def test_docs_is_swagger_ui_with_every_asset_inline_and_no_outside_url(docs_app: ModuleType) -> None:
    response = _get(docs_app, "/docs")
    assert response["statusCode"] == 200
    assert _header(response, "Content-Type").startswith("text/html")
    page = response["body"]
    assert "SwaggerUIBundle" in page and 'url: "openapi.json"' in page
    # Nothing is loaded from anywhere: no external script, stylesheet, link or import.
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=", page, re.IGNORECASE)
    assert not re.search(r"@import", page)
    for cdn in ("unpkg.com", "jsdelivr", "cdnjs", "googleapis"):
        assert cdn not in page
    csp = _header(response, "Content-Security-Policy")
    assert "http" not in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp


def test_the_handler_module_imports_no_other_handler_or_aws_client() -> None:
    source = (ROOT / "functions" / "ops" / "docs" / "app.py").read_text()
    assert "bootstrap" not in source and "boto3" not in source and "infra.openapi" not in source


def test_an_unknown_path_is_a_problem_json_404(docs_app: ModuleType) -> None:
    response = _get(docs_app, "/docs/swagger.js")
    assert response["statusCode"] == 404
    assert json.loads(response["body"])["code"] == "not_found"

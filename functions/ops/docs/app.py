"""GET /openapi.json and GET /docs: the OpenAPI 3.1 document and Swagger UI over it, offline (no auth)."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
import base64
import functools
import hashlib
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from pydantic import ConfigDict, Field

from vaultpay.shared.http import api_handler, make_resolver
from vaultpay.shared.observability import get_tracer
from vaultpay.shared.openapi import ResponseModel, success

tracer = get_tracer()
app = make_resolver()


class DocumentInfo(ResponseModel):
    """The document's `info` object: its title and the deployed version, and more the standard allows."""

    model_config = ConfigDict(defer_build=True, extra="allow")

    title: str
    version: str


class OpenApiDocument(ResponseModel):
    """This API's OpenAPI 3.1 document (the OpenAPI specification defines each member)."""

    openapi: str = Field(pattern="^3[.]1[.][0-9]+$")
    info: DocumentInfo
    servers: list[dict[str, Any]]
    tags: list[dict[str, Any]]
    paths: dict[str, dict[str, Any]]
    components: dict[str, dict[str, Any]]


# Built ahead of time by infra/openapi/build.py and shipped beside this module (see the Makefile): serving
# it imports no other handler, and the function needs no AWS permission at all.
DOCUMENT = Path(__file__).with_name("openapi.json")
# The page fetches the document relative to itself, so it works under any API Gateway stage prefix.
DOCUMENT_URL = "openapi.json"
CACHE = "public, max-age=300"

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>VaultPay API</title>
<style>{css}</style>
</head>
<body>
<div id="swagger-ui"></div>
<script>{js}</script>
<script>{init}</script>
</body>
</html>
"""
_INIT = (
    'window.ui = SwaggerUIBundle({url: "' + DOCUMENT_URL + '", dom_id: "#swagger-ui", deepLinking: true, '
    "presets: [SwaggerUIBundle.presets.apis], layout: 'BaseLayout', validatorUrl: null});"
)


@functools.cache
def _document() -> str:
    return DOCUMENT.read_text(encoding="utf-8")


@functools.cache
def _page() -> tuple[str, str]:
    """The Swagger UI page with its JS and CSS inlined (no CDN, no asset route), and its CSP.

    The assets are the swagger-ui-dist files Powertools ships for its own `enable_swagger`: they arrive with
    the deps layer, pinned with Powertools, and the page makes no request but the one for the document.
    """
    from aws_lambda_powertools.event_handler.openapi import swagger_ui

    assets = Path(swagger_ui.__file__).parent
    js = (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8")
    css = (assets / "swagger-ui.min.css").read_text(encoding="utf-8")
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in (js, _INIT)
    )
    # Only these two scripts run, only the document is fetched, and no other site may frame the page.
    csp = (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; img-src data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
    return _PAGE.format(css=css, js=js, init=_INIT), csp


@app.get(
    "/openapi.json",
    responses=success(
        200,
        "The OpenAPI 3.1 document of this API.",
        {
            "openapi": "3.1.0",
            "info": {"title": "VaultPay", "version": "0.1.0"},
            "servers": [{"url": "."}],
            "tags": [{"name": "ops"}],
            "paths": {"/v1/health": {"get": {"responses": {"200": {"description": "Healthy."}}}}},
            "components": {"schemas": {}},
        },
        model=OpenApiDocument,
    ),
)
@tracer.capture_method(capture_response=False)
def openapi_document() -> Response[str]:
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=_document(),
        headers={"Cache-Control": CACHE},
    )


@app.get(
    "/docs",
    responses={
        200: {
            "description": "Swagger UI over `/openapi.json`, with no outside asset.",
            "content": {"text/html": {"schema": {"type": "string"}}},
        }
    },
)
@tracer.capture_method(capture_response=False)
def swagger_ui_page() -> Response[str]:
    page, csp = _page()
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=page,
        headers={
            "Cache-Control": CACHE,
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
        },
    )


handler = api_handler(app)

"""infra/openapi: the committed document is current, valid OpenAPI 3.1 and covers exactly the API routes."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support.handlers import load_module

pytestmark = pytest.mark.component
ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "infra" / "openapi" / "openapi.json"
# docs/api.md: the routes that require Idempotency-Key (those that exist yet are checked).
IDEMPOTENT_ROUTES = {("post", "/v1/accounts"), ("post", "/v1/transfers"), ("post", "/v1/admin/deposits")}


@pytest.fixture(scope="module")
def build() -> ModuleType:
    # dataclasses resolve their module through sys.modules
    return load_module(ROOT / "infra/openapi/build.py", "vaultpay_openapi_build", register=True)


@pytest.fixture(scope="module")
def document(build: ModuleType) -> dict[str, Any]:
    built: dict[str, Any] = build.build_document()
    return built


def _template_routes() -> dict[tuple[str, str], bool]:
    """(method, path) -> public, for every Api event on VaultPayApi, read straight from the template."""
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((ROOT / "template.yaml").read_text())
    routes = {}
    for resource in template["Resources"].values():
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            props = event.get("Properties", {})
            if event["Type"] == "Api" and props.get("RestApiId") == {"Ref": "VaultPayApi"}:
                public = (props.get("Auth") or {}).get("Authorizer") == "NONE"
                routes[(props["Method"].lower(), props["Path"])] = public
    return routes


def _operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m, p): op for p, ops in document["paths"].items() for m, op in ops.items()}


def test_the_committed_document_is_the_one_the_handlers_build(
    build: ModuleType, document: dict[str, Any]
) -> None:
    # Given the handlers and template as they are, when the document is built, then it is the committed one
    assert COMMITTED.read_text(encoding="utf-8") == build.render(document), "stale: run `make openapi`"


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    from openapi_spec_validator import OpenAPIV31SpecValidator, validate

    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)
    assert document["info"]["title"] == "VaultPay"


def test_every_template_route_is_an_operation_and_every_operation_a_template_route(
    document: dict[str, Any],
) -> None:
    assert set(_operations(document)) == set(_template_routes())


def test_every_operation_documents_its_errors_as_problem_json(document: dict[str, Any]) -> None:
    for route, op in _operations(document).items():
        errors = {status: r for status, r in op["responses"].items() if status[0] in "45"}
        assert errors, route
        assert any(s.startswith("2") for s in op["responses"]), route
        for status, response in errors.items():
            problem = response["content"].get("application/problem+json")
            if route == ("get", "/v1/health") and status == "503":
                continue  # the health report itself, as application/json
            assert problem is not None, (route, status)
            assert problem["schema"] == {"$ref": "#/components/schemas/Problem"}, (route, status)
            for example in problem.get("examples", {}).values():
                assert example["value"]["status"] == int(status), (route, status)


def test_protected_routes_require_the_token_and_device_and_public_ones_nothing(
    document: dict[str, Any],
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert schemes["deviceId"] == {
        **schemes["deviceId"],
        "type": "apiKey",
        "in": "header",
        "name": "X-Device-Id",
    }
    operations = _operations(document)
    for route, public in _template_routes().items():
        op = operations[route]
        if public:
            assert op["security"] == [], route
        else:
            assert op["security"] == [{"bearerAuth": [], "deviceId": []}], route
            assert {"400", "401", "429"} <= set(op["responses"]), route
            if route[1].startswith("/v1/admin"):
                assert "403" in op["responses"], route


def test_idempotency_key_routes_take_the_header_and_say_when_they_replay(document: dict[str, Any]) -> None:
    operations = _operations(document)
    present = IDEMPOTENT_ROUTES & set(operations)
    assert {("post", "/v1/accounts"), ("post", "/v1/admin/deposits")} <= present
    for route, op in operations.items():
        takes_key = {"$ref": "#/components/parameters/IdempotencyKey"} in op["parameters"]
        assert takes_key == (route in IDEMPOTENT_ROUTES), route
        if takes_key:
            success = [r for s, r in op["responses"].items() if s.startswith("2")]
            assert all("Idempotent-Replayed" in r["headers"] for r in success), route
            examples = op["responses"]["422"]["content"]["application/problem+json"]["examples"]
            assert "idempotency_key_reused" in examples, route
            assert (
                "request_in_progress"
                in op["responses"]["409"]["content"]["application/problem+json"]["examples"]
            )


def test_the_public_auth_routes_that_bind_a_device_require_x_device_id(document: dict[str, Any]) -> None:
    operations = _operations(document)
    for path in ("/v1/auth/login", "/v1/auth/mfa/verify", "/v1/auth/refresh"):
        assert {"$ref": "#/components/parameters/DeviceId"} in operations[("post", path)]["parameters"], path
    assert {"$ref": "#/components/parameters/DeviceId"} not in operations[("post", "/v1/auth/register")][
        "parameters"
    ]


def test_the_problem_schema_accepts_what_the_resolver_really_sends(
    build: ModuleType, document: dict[str, Any]
) -> None:
    import jsonschema
    from aws_lambda_powertools.event_handler import Response
    from support.apigw import proxy_event

    from vaultpay.shared.errors import RateLimited, TransientError
    from vaultpay.shared.http import make_resolver

    app = make_resolver()

    @app.post("/v1/things")
    def create() -> Response[str]:
        raise RateLimited("slow down", retry_after=3)

    @app.get("/v1/things")
    def listing() -> Response[str]:
        raise TransientError("DynamoDB said ProvisionedThroughputExceeded on arn:aws:dynamodb:...")

    # A real handler's request validation answers before it touches AWS.
    (accounts,) = [
        f for f in build.http_functions(build.load_template()) if f.logical_id == "CreateAccountFunction"
    ]
    open_account = build.load_handler(accounts)
    invalid = proxy_event(
        "POST", "/v1/accounts", user_id="u1", body={"type": "GOLD", "x": 1}, idempotency_key="k"
    )
    malformed = {**invalid, "body": "{not json"}
    sent = [
        open_account.app.resolve(invalid, {}),
        open_account.app.resolve(malformed, {}),
        app.resolve(proxy_event("POST", "/v1/things", user_id="u1"), {}),
        app.resolve(proxy_event("GET", "/v1/things", user_id="u1"), {}),
    ]
    schema = document["components"]["schemas"]["Problem"]
    for response in sent:
        body = json.loads(response["body"])
        jsonschema.Draft202012Validator(schema).validate(body)
        assert set(body) <= set(schema["properties"]), body
    assert [r["statusCode"] for r in sent] == [422, 400, 429, 503]
    assert json.loads(sent[0]["body"])["errors"]


def test_clashing_component_names_are_kept_apart_and_their_refs_follow(build: ModuleType) -> None:
    # Given two functions whose different request models share a name
    merged: dict[str, Any] = {}
    first = {"Req": {"type": "object", "properties": {"a": {"type": "string"}}}}
    second = {
        "Req": {"type": "object", "properties": {"b": {"$ref": "#/components/schemas/Inner"}}},
        "Inner": {"type": "integer"},
    }
    # When both are merged
    assert build.merge_schemas(merged, first, "auth") == {}
    renames = build.merge_schemas(merged, second, "fraud")
    # Then the second keeps its own, renamed, and identical schemas are shared
    assert renames == {"Req": "fraud.Req"}
    assert merged["Req"] == first["Req"]
    assert merged["fraud.Req"]["properties"]["b"] == {"$ref": "#/components/schemas/Inner"}
    assert build.merge_schemas(merged, {"Inner": {"type": "integer"}}, "audit") == {}


def test_a_template_route_without_a_handler_route_fails_the_build(build: ModuleType, tmp_path: Path) -> None:
    # Given a template that routes a path its handler does not serve
    text = (ROOT / "template.yaml").read_text().replace("Path: /v1/me\n", "Path: /v1/me/not-served\n", 1)
    template = tmp_path / "template.yaml"
    template.write_text(text)
    for folder in ("functions", "layers"):
        (tmp_path / folder).symlink_to(ROOT / folder)
    # When the document is built, then the build names the route instead of leaving it out
    with pytest.raises(build.BuildError, match="GET /v1/me/not-served"):
        build.build_document(template)


def _success_bodies(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, media type object) for every 2xx JSON response of the document."""
    return [
        (f"{method.upper()} {path} {status}", media)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
        for status, response in op["responses"].items()
        if status.startswith("2")
        for content_type, media in response.get("content", {}).items()
        if content_type == "application/json"
    ]


def _resolved(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].removeprefix("#/components/schemas/")]
    return schema


def test_every_json_success_response_has_a_schema_with_properties(document: dict[str, Any]) -> None:
    # Given every 2xx JSON answer of the API, then none is a bare object a client cannot be generated from
    bodies = _success_bodies(document)
    assert bodies
    for where, media in bodies:
        schema = _resolved(document, media["schema"])
        if schema.get("type") == "null":
            continue  # a 204's empty body, as Powertools declares it
        assert schema.get("type") == "object", where
        assert schema.get("properties"), f"{where}: a bare object without properties"
        assert schema.get("required"), f"{where}: no required field"


def test_every_success_example_is_valid_against_its_schema(document: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator

    for where, media in _success_bodies(document):
        validator = Draft202012Validator(
            {**media["schema"], "components": document["components"]},
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        examples = media.get("examples", {})
        assert examples or _resolved(document, media["schema"]).get("type") == "null", where
        for name, example in examples.items():
            errors = [e.message for e in validator.iter_errors(example["value"])]
            assert not errors, f"{where} example {name}: {errors}"

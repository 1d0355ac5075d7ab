"""Builds infra/openapi/openapi.json: one OpenAPI 3.1 document merged from every HTTP function's resolver.

The routes come from template.yaml (every function with an `Api` event on VaultPayApi) and their schemas
from each handler's Powertools resolver, so nothing here lists a route by hand. What the code cannot say in a
resolver (who may call a route, which errors every route of a kind can return, which headers apply) is
derived here from the template and from the shared modules that implement it.

    python -m infra.openapi.build            # rewrite the committed document (`make openapi`)
    python -m infra.openapi.build --check    # exit 1 if the committed document is stale
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import inspect
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
OUTPUT = Path(__file__).with_name("openapi.json")
API_ID = "VaultPayApi"
OPENAPI_VERSION = "3.1.0"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

BEARER = "bearerAuth"
DEVICE = "deviceId"
# Powertools' own 422 body and its parts: VaultPay answers validation errors with the Problem schema.
POWERTOOLS_SCHEMAS = frozenset({"HTTPValidationError", "ValidationError", "ResponseValidationError"})
# A handler that reads the device id itself (the public auth routes, which have no authorizer to do it).
READS_DEVICE_ID = re.compile(r"\b(device_id_from_event|request_origin)\b")
# The Powertools default summary ("GET /v1/me") is replaced by the template's description of the function.
DESCRIPTION_PREFIX = re.compile(r"^(GET|PUT|POST|DELETE|PATCH|HEAD|OPTIONS)\b.*? - ")

TAG_DESCRIPTIONS = {
    "auth": "Registration, login with TOTP MFA, tokens, devices and the signing keys.",
    "accounts": "Accounts, balances and statements; admin deposits.",
    "transfers": "Money transfers, run as a saga.",
    "fraud": "Fraud alerts and manual reviews (admin).",
    "audit": "The append-only, hash-chained audit log (admin).",
    "webhooks": "Signed webhook deliveries of the caller's own events, and the events feed.",
    "ops": "Health and this API's own documentation.",
}

DOCUMENT_DESCRIPTION = """\
The VaultPay payments API. The binding contract is docs/api.md; this document is generated from the handlers.

- Bodies are JSON. Unknown fields in a request body are rejected (422).
- A body is read one way only, before any route: a key twice in one object, nesting deeper than 32 levels,
  a number longer than 32 characters or `NaN`/`Infinity` is 422 `validation_failed`; a body over 64 KiB is
  413 `payload_too_large`.
- Money is an integer count of minor units (paise for INR): `125050` is ₹1,250.50; 1 ≤ amount ≤ 10^12.
- Time stamps are RFC 3339 in UTC with `Z`. IDs are opaque strings.
- Lists take `limit` (1..100, default 20) and `cursor`, and answer `{"items": [...], "next_cursor": ...}`.
- Query parameters a route does not document are ignored.
- Protected routes need `Authorization: Bearer <access token>` and the `X-Device-Id` the token was issued to.
- Errors are RFC 9457 problem details (`application/problem+json`, the `Problem` schema) with a stable `code`.
- Every response carries `X-Correlation-Id` (the client's, or a new one).
"""


class BuildError(Exception):
    """The template and the handlers disagree, or a handler cannot be loaded: the document is not built."""


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """One `Api` event of a function: the route API Gateway sends to it."""

    method: str  # lower case, as OpenAPI keys operations
    path: str
    public: bool  # `Auth: Authorizer: NONE`


@dataclass(frozen=True, slots=True)
class TemplateFunction:
    """An `AWS::Serverless::Function` of template.yaml: its handler module, the environment it imports with,
    and the routes of VaultPayApi it serves (none for a function invoked by a stream, queue or schedule)."""

    logical_id: str
    code_dir: Path
    module_name: str  # the Handler's module, as the Lambda runtime imports it from code_dir
    module_file: Path
    description: str
    environment: Mapping[str, str]
    calls_aws: bool  # it has IAM policies, so a backing service can fail it (503)
    routes: tuple[ApiRoute, ...]

    @property
    def domain(self) -> str:
        relative = self.code_dir.relative_to(ROOT / "functions")
        return relative.parts[0]


# ---- the template -------------------------------------------------------------------------------------


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """template.yaml with its short-form intrinsics (`!Ref`, `!GetAtt`) read as CloudFormation dicts."""
    from samtranslator.yaml_helper import yaml_parse

    return dict(yaml_parse(path.read_text(encoding="utf-8")))


def http_functions(template: Mapping[str, Any], base_dir: Path = ROOT) -> list[TemplateFunction]:
    """Every function with at least one `Api` event on VaultPayApi, in logical-id order."""
    return [function for function in template_functions(template, base_dir) if function.routes]


def template_functions(template: Mapping[str, Any], base_dir: Path = ROOT) -> list[TemplateFunction]:
    """Every `AWS::Serverless::Function` of the template, in logical-id order."""
    globals_env = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    defaults = {name: p.get("Default") for name, p in (template.get("Parameters") or {}).items()}

    def harmless(name: str, value: Any) -> str:
        # A parameter's default where there is one (a log level must be one); intrinsics that name
        # resources (tables, ARNs) only matter at run time, so a placeholder lets the module import.
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and isinstance(defaults.get(value.get("Ref")), str):
            return str(defaults[value["Ref"]])
        return f"openapi-build-{name.lower()}"

    found = []
    for logical_id, resource in sorted(template.get("Resources", {}).items()):
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties", {})
        routes = []
        for event in (props.get("Events") or {}).values():
            event_props = event.get("Properties", {})
            if event.get("Type") != "Api" or event_props.get("RestApiId") != {"Ref": API_ID}:
                continue
            authorizer = (event_props.get("Auth") or {}).get("Authorizer")
            routes.append(
                ApiRoute(
                    method=str(event_props["Method"]).lower(),
                    path=str(event_props["Path"]),
                    public=authorizer == "NONE",
                )
            )
        module_name, _, _attr = str(props["Handler"]).rpartition(".")
        code_dir = (base_dir / str(props["CodeUri"])).resolve()
        variables = {**globals_env, **(props.get("Environment") or {}).get("Variables", {})}
        found.append(
            TemplateFunction(
                logical_id=logical_id,
                code_dir=code_dir,
                module_name=module_name,
                module_file=code_dir / (module_name.replace(".", "/") + ".py"),
                description=str(props.get("Description", "")),
                environment={name: harmless(name, value) for name, value in variables.items()},
                calls_aws=bool(props.get("Policies")),
                routes=tuple(sorted(routes, key=lambda r: (r.path, r.method))),
            )
        )
    return found


# ---- loading a handler --------------------------------------------------------------------------------


def import_variables(function: TemplateFunction) -> dict[str, str]:
    """The function's environment with harmless values, and AWS pointed at a closed local port so that an
    accidental call at import fails at once instead of reaching a real account."""
    return {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "openapi-build",
        "AWS_SECRET_ACCESS_KEY": "openapi-build",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_DISABLED": "1",
        **function.environment,
    }


@contextlib.contextmanager
def _import_environment(function: TemplateFunction) -> Iterator[None]:
    """This process with `import_variables(function)` set and the function's code first on sys.path."""
    saved_environ = dict(os.environ)
    saved_path = list(sys.path)
    os.environ.update(import_variables(function))
    sys.path.insert(0, str(function.code_dir))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved_environ)
        sys.path[:] = saved_path


def load_handler(function: TemplateFunction) -> ModuleType:
    """The function's handler module, imported under a name of its own (every handler module is `app`)."""
    name = f"_vaultpay_openapi_{function.logical_id}"
    spec = importlib.util.spec_from_file_location(name, function.module_file)
    if spec is None or spec.loader is None:
        raise BuildError(f"{function.logical_id}: cannot load {function.module_file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with _import_environment(function):
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise BuildError(
                f"{function.logical_id}: importing {function.module_file} failed: {exc}"
            ) from exc
    return module


def resolver_of(function: TemplateFunction, module: ModuleType) -> Any:
    """The one Powertools REST resolver a handler module defines."""
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver

    resolvers = {id(v): v for v in vars(module).values() if isinstance(v, APIGatewayRestResolver)}
    if len(resolvers) != 1:
        raise BuildError(
            f"{function.logical_id}: expected one APIGatewayRestResolver, found {len(resolvers)}"
        )
    return next(iter(resolvers.values()))


def uses_idempotency_key(function: TemplateFunction, module: ModuleType, route: Any) -> bool:
    """A route takes `Idempotency-Key` when its handler answers through vaultpay.shared.idempotency, or its
    function is given the idempotency table that module needs. A module with several routes, not all of
    them idempotent, names the ones that are in `IDEMPOTENT_ROUTES` ({(method, path)})."""
    from vaultpay.shared import idempotency

    calls = any(value is idempotency.idempotent_response for value in vars(module).values())
    if not (calls or idempotency.TABLE_VARIABLE in function.environment):
        return False
    declared = getattr(module, "IDEMPOTENT_ROUTES", None)
    return declared is None or (route.method.lower(), route.path) in declared


# ---- merging --------------------------------------------------------------------------------------------


def _rewrite_refs(node: Any, renames: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/components/schemas/"):
                name = value.removeprefix("#/components/schemas/")
                value = "#/components/schemas/" + renames.get(name, name)
            out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


def merge_schemas(merged: dict[str, Any], fragment: Mapping[str, Any], owner: str) -> dict[str, str]:
    """Adds a function's component schemas to `merged`. An identical schema is shared; a different schema
    under a name already taken is kept as `<owner>.<name>`. Returns the renames its `$ref`s need."""
    renames: dict[str, str] = {}
    for name, schema in fragment.items():
        if name in POWERTOOLS_SCHEMAS:
            continue
        if name in merged and merged[name] != schema:
            renames[name] = f"{owner}.{name}"
    for name, schema in fragment.items():
        if name in POWERTOOLS_SCHEMAS:
            continue
        merged.setdefault(renames.get(name, name), _rewrite_refs(schema, renames))
    return renames


def _response(operation: dict[str, Any], status: int, description: str) -> dict[str, Any]:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    return responses.setdefault(str(status), {"description": description})  # type: ignore[no-any-return]


def add_problem(
    operation: dict[str, Any], status: int, code: str, detail: str, *, field: str | None = None
) -> None:
    """Documents that the operation may answer `status` with the problem `code` (merged with any other)."""
    from vaultpay.shared.http import PROBLEM_JSON
    from vaultpay.shared.openapi import PROBLEM_REF, problem_example

    response = _response(operation, status, "")
    content = response.setdefault("content", {})
    media = content.setdefault(PROBLEM_JSON, {"schema": {"$ref": PROBLEM_REF}})
    examples = media.setdefault("examples", {})
    if code in examples:
        return
    examples[code] = problem_example(status, code, detail, field=field)
    line = f"`{code}`: {detail}"
    response["description"] = f"{response['description']}; {line}" if response["description"] else line


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def enrich_operation(
    operation: dict[str, Any],
    *,
    function: TemplateFunction,
    route: ApiRoute,
    module: ModuleType,
    idempotent: bool,
) -> dict[str, Any]:
    """Adds what docs/api.md says of every route of this kind to one operation of a handler's schema."""
    from vaultpay.auth.authorizer import ROLE_RULES
    from vaultpay.shared.http import CORRELATION_HEADER, PROBLEM_JSON
    from vaultpay.shared.idempotency import REPLAYED_HEADER
    from vaultpay.shared.openapi import PROBLEM_REF

    op = copy.deepcopy(operation)
    method, path = route.method.upper(), route.path
    if not op.get("tags"):
        op["tags"] = [function.domain]
    if op.get("summary") in (None, "", f"{method} {path}"):
        op["summary"] = _summary(function.description) or f"{method} {path}"
    if not op.get("description") and module.__doc__:
        op["description"] = module.__doc__.strip()
    responses: dict[str, Any] = op.setdefault("responses", {})
    # Powertools' generated 422 describes its own error body, which VaultPay never sends.
    generated_422 = responses.get("422", {}).get("content", {}).get("application/json", {})
    if generated_422.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
        del responses["422"]

    parameters: list[dict[str, Any]] = op.setdefault("parameters", [])
    for parameter in parameters:
        if "schema" in parameter:
            parameter["schema"] = _without_null(parameter["schema"])
    has_input = any(p.get("in") in ("path", "query") for p in parameters if "in" in p)
    parameters.append(_ref("parameters", "CorrelationId"))
    if idempotent:
        parameters.append(_ref("parameters", "IdempotencyKey"))

    if route.public:
        op["security"] = []
        if READS_DEVICE_ID.search(inspect.getsource(module)):
            parameters.append(_ref("parameters", "DeviceId"))
            add_problem(op, 400, "device_id_required", "The X-Device-Id header is missing or malformed.")
    else:
        op["security"] = [{BEARER: [], DEVICE: []}]
        add_problem(op, 400, "device_id_required", "The X-Device-Id header is missing or malformed.")
        add_problem(op, 401, "unauthorized", "The access token is missing, expired, forged or revoked.")
        add_problem(op, 401, "device_mismatch", "X-Device-Id is not the device the token was issued to.")
        add_problem(op, 401, "token_revoked", "The token's session has ended (signed out, or refresh reuse).")
        if any(path.startswith(prefix) for prefix, _roles in ROLE_RULES):
            add_problem(op, 403, "forbidden", "The caller's role may not use this route.")
    # The stage's throttle (template.yaml: ThrottlingRateLimit/BurstLimit, gateway response THROTTLED) answers
    # before any route, public or not; protected routes add the per-user API-call limit their functions count.
    add_problem(op, 429, "rate_limited", "Too many requests; retry after the Retry-After interval.")
    if "requestBody" in op:
        add_problem(op, 400, "malformed_json", "The request body is not valid JSON.")
        add_problem(op, 413, "payload_too_large", "The request body is larger than 64 KiB.")
        add_problem(op, 415, "unsupported_media_type", "Send the request body as application/json.")
        add_problem(op, 422, "validation_failed", "The request is not valid.", field="amount")
    elif has_input:
        add_problem(op, 422, "validation_failed", "The request is not valid.", field="limit")
    if "{" in path:
        add_problem(op, 404, "not_found", "No such resource, or it is not the caller's.")
    if idempotent:
        add_problem(
            op, 400, "idempotency_key_required", "The Idempotency-Key header is missing or malformed."
        )
        add_problem(op, 409, "request_in_progress", "A request with this key is still being processed.")
        add_problem(op, 422, "idempotency_key_reused", "This key was used with a different request body.")
    if function.calls_aws and "503" not in responses:
        add_problem(op, 503, "service_unavailable", "A backing service is briefly unavailable; retry later.")
    # Any route can fail unexpectedly; never for bad input, and never with a trace or an internal name.
    add_problem(op, 500, "internal_error", "An unexpected error occurred. Quote the correlation id.")

    for status, response in responses.items():
        headers = response.setdefault("headers", {})
        headers[CORRELATION_HEADER] = _ref("headers", "CorrelationId")
        if status == "429":
            headers["Retry-After"] = _ref("headers", "RetryAfter")
        if idempotent and status.startswith("2"):
            headers[REPLAYED_HEADER] = _ref("headers", "IdempotentReplayed")
        # A bare error response declared by a handler still gets the error envelope.
        if status[0] in "45" and "content" not in response:
            response["content"] = {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}}
    op["responses"] = {status: responses[status] for status in sorted(responses)}
    return op


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without Powertools' `anyOf: [..., {"type": "null"}]` for an optional one: a query
    string or header cannot carry a JSON null (an absent parameter is the None), so the null branch only
    misleads clients and test generators into sending values the API would take as text."""
    branches = schema.get("anyOf")
    if not isinstance(branches, list):
        return schema
    kept = [b for b in branches if b != {"type": "null"}]
    if len(kept) != 1 or len(kept) == len(branches):
        return schema
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**kept[0], **rest}


def _summary(description: str) -> str:
    text = DESCRIPTION_PREFIX.sub("", description).strip().rstrip(".")
    text = re.sub(r"\s*\([^()]*\)$", "", text)
    return text[:1].upper() + text[1:]


def _components() -> dict[str, Any]:
    from vaultpay.shared.http import CORRELATION_HEADER
    from vaultpay.shared.idempotency import IDEMPOTENCY_HEADER
    from vaultpay.shared.openapi import PROBLEM_SCHEMA, PROBLEM_SCHEMA_BODY

    printable = {"type": "string", "minLength": 1, "pattern": "^[\\x20-\\x7e]+$"}
    return {
        "schemas": {PROBLEM_SCHEMA: PROBLEM_SCHEMA_BODY},
        "securitySchemes": {
            BEARER: {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": (
                    "The access token from `POST /v1/auth/mfa/verify` or `POST /v1/auth/refresh` "
                    "(ES256 or EdDSA, 15 minutes; public keys at `/.well-known/jwks.json`)."
                ),
            },
            DEVICE: {
                "type": "apiKey",
                "in": "header",
                "name": "X-Device-Id",
                "description": (
                    "The client's device fingerprint (1..128 printable ASCII). Must equal the token's "
                    "`did` claim: a missing one is 400 `device_id_required`, another device's 401 "
                    "`device_mismatch`."
                ),
            },
        },
        "parameters": {
            "CorrelationId": {
                "name": CORRELATION_HEADER,
                "in": "header",
                "required": False,
                "description": (
                    "Traces the request through logs, the saga, events and audit records. 1..128 visible "
                    "ASCII characters (no space) are kept and echoed; any other value is replaced by a new "
                    "id, never refused over a tracing header."
                ),
                # Any value is accepted (vaultpay.shared.http replaces an unusable one), so the schema
                # constrains nothing: a client is never refused for it.
                "schema": {"type": "string", "examples": ["c2b0e08d-f13f-41af-a3da-aac5e599abbf"]},
            },
            "IdempotencyKey": {
                "name": IDEMPOTENCY_HEADER,
                "in": "header",
                "required": True,
                "description": (
                    "Scoped to the caller and kept at least 24 h. The same key with the same body returns "
                    "the first response again (with `Idempotent-Replayed: true`) and does nothing twice."
                ),
                "schema": {**printable, "maxLength": 255},
                "example": "7c0e6d1a-2f4b-4e8a-9b3c-5d6e7f8a9b0c",
            },
            "DeviceId": {
                "name": "X-Device-Id",
                "in": "header",
                "required": True,
                "description": "The client's device fingerprint; the session is bound to it.",
                "schema": {**printable, "maxLength": 128},
                "example": "ios-3f9a2c",
            },
        },
        "headers": {
            "CorrelationId": {
                "description": "The request's correlation id: the client's `X-Correlation-Id`, or a new one.",
                "schema": {"type": "string"},
            },
            "RetryAfter": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer", "minimum": 1},
            },
            "IdempotentReplayed": {
                "description": f"`true` when this is the stored answer to an earlier request with this "
                f"`{IDEMPOTENCY_HEADER}` and body.",
                "schema": {"type": "string", "enum": ["true"]},
            },
        },
    }


def response_model_schemas(models: Mapping[str, Any]) -> dict[str, Any]:
    """The component schemas of the response models a handler declared through `success(model=...)`, the
    models they nest included (pydantic's `$defs`, referenced as components like the models themselves)."""
    from pydantic.json_schema import GenerateJsonSchema

    from vaultpay.shared.openapi import SCHEMA_REF_TEMPLATE

    class WithoutDefaults(GenerateJsonSchema):
        # A response has no defaults: an optional key is absent, and a `"default": null` would read as one.
        def default_schema(self, schema: Any) -> Any:
            return self.generate_inner(schema["schema"])

    found: dict[str, Any] = {}
    for name, model in models.items():
        schema = model.model_json_schema(ref_template=SCHEMA_REF_TEMPLATE, schema_generator=WithoutDefaults)
        for nested_name, nested in schema.pop("$defs", {}).items():
            found[nested_name] = nested
        found[name] = schema
    return found


def build_document(template_path: Path = TEMPLATE) -> dict[str, Any]:
    """The merged OpenAPI 3.1 document of every route of VaultPayApi in the template."""
    import vaultpay
    from vaultpay.shared.openapi import declared_response_models, forget_response_models

    functions = http_functions(load_template(template_path), template_path.parent)
    components = _components()
    schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    tags: set[str] = set()
    for function in functions:
        forget_response_models()
        module = load_handler(function)
        try:
            resolver = resolver_of(function, module)
            fragment = json.loads(
                resolver.get_openapi_json_schema(title="VaultPay", openapi_version=OPENAPI_VERSION)
            )
            fragment_schemas = {
                **fragment.get("components", {}).get("schemas", {}),
                **response_model_schemas(declared_response_models()),
            }
            renames = merge_schemas(schemas, fragment_schemas, function.domain)
            fragment_paths = _rewrite_refs(fragment.get("paths", {}), renames)
            for route in function.routes:
                idempotent = uses_idempotency_key(function, module, route)
                operation = fragment_paths.get(route.path, {}).get(route.method)
                if operation is None:
                    raise BuildError(
                        f"{function.logical_id}: the template routes {route.method.upper()} {route.path} "
                        f"to {function.module_file.relative_to(ROOT)}, whose resolver has no such route"
                    )
                if route.method in paths.get(route.path, {}):
                    raise BuildError(f"{route.method.upper()} {route.path} is routed to two functions")
                enriched = enrich_operation(
                    operation, function=function, route=route, module=module, idempotent=idempotent
                )
                paths.setdefault(route.path, {})[route.method] = enriched
                tags.update(enriched["tags"])
        finally:
            sys.modules.pop(module.__name__, None)
    components["schemas"].update(schemas)
    components["schemas"] = dict(sorted(components["schemas"].items()))
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "VaultPay",
            "version": vaultpay.__version__,
            "summary": "Bank-grade serverless payments API.",
            "description": DOCUMENT_DESCRIPTION,
        },
        "servers": [
            {"url": ".", "description": "The deployment serving this document"},
            {"url": "http://127.0.0.1:3000", "description": "The local cloud (`make run`)"},
        ],
        "tags": [
            {"name": t, "description": TAG_DESCRIPTIONS[t]} if t in TAG_DESCRIPTIONS else {"name": t}
            for t in sorted(tags)
        ],
        "paths": {path: {m: paths[path][m] for m in METHODS if m in paths[path]} for path in sorted(paths)},
        "components": components,
    }


def render(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if --output is not up to date")
    args = parser.parse_args(argv)
    text = render(build_document())
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run `make openapi`", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

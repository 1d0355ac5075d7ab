"""What a route tells the OpenAPI document about its responses: success examples and problem+json errors.

Handlers pass these to their route decorator's `responses=`; infra/openapi/build.py merges every function's
schema into one document and adds the errors every route of a kind can return (authorizer, body, key...).
Plain dicts, typed as powertools' OpenAPIResponse (what `responses=` takes, imported for the type checker
alone). A success body's schema comes from a `ResponseModel`: its class is only declared at import (pydantic
builds nothing until asked, `defer_build`), and the builder alone turns it into JSON Schema, so a response
model costs a cold start next to nothing and is never used to validate at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from vaultpay.shared.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    TransientError,
    Unauthorized,
    ValidationFailed,
)
from vaultpay.shared.http import PROBLEM_JSON, PROBLEM_TYPE_BASE
from vaultpay.shared.kernel import MAX_AMOUNT, MIN_AMOUNT

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse, OpenAPIResponseHeader

PROBLEM_SCHEMA = "Problem"
PROBLEM_REF = "#/components/schemas/" + PROBLEM_SCHEMA
EXAMPLE_CORRELATION_ID = "3f2b8c1e-5a4d-4c7b-9e0f-1a2b3c4d5e6f"

# The titles problem() sends are the error classes' own, so the examples cannot say otherwise.
_TITLES = {
    cls.status: cls.title
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, Conflict, ValidationFailed, RateLimited)
} | {TransientError.status: TransientError.title, 415: "Unsupported media type"}

# The RFC 9457 envelope that vaultpay.shared.http.problem() writes (a test validates real output against it).
PROBLEM_SCHEMA_BODY: dict[str, Any] = {
    "type": "object",
    "title": PROBLEM_SCHEMA,
    "description": (
        "An RFC 9457 problem details document, sent as `application/problem+json`. `code` is the stable, "
        "machine-readable reason; `errors` appears only on validation failures. No stack trace, internal "
        "name or secret ever appears in it."
    ),
    "required": ["type", "title", "detail", "code", "correlation_id"],
    "properties": {
        "type": {"type": "string", "format": "uri", "description": f"`{PROBLEM_TYPE_BASE}<code>`"},
        "title": {"type": "string", "description": "Short summary of the problem's kind."},
        "status": {
            "type": "integer",
            "minimum": 400,
            "maximum": 599,
            "description": "The HTTP status (left out only by the gateway's catch-all 4xx answer).",
        },
        "detail": {"type": "string", "description": "What went wrong, written for the client."},
        "code": {"type": "string", "pattern": "^[a-z0-9_]*$", "description": "Stable reason code."},
        "correlation_id": {
            "type": "string",
            "description": "Also in the `X-Correlation-Id` header; quote it when reporting a problem.",
        },
        "errors": {
            "type": "array",
            "description": "The invalid fields (422 `validation_failed` only).",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {
                    "field": {"type": "string", "examples": ["amount"]},
                    "message": {"type": "string", "examples": ["Input should be greater than or equal to 1"]},
                },
            },
        },
    },
}


SCHEMA_REF_TEMPLATE = "#/components/schemas/{model}"


class ResponseModel(BaseModel):
    """The documented shape of a success body. Handlers keep answering with their views' `to_json()`; the
    model only describes it, so it forbids unknown fields (a test validates real bodies against it)."""

    model_config = ConfigDict(defer_build=True, extra="forbid")


# Field types every domain's response models share (docs/api.md: conventions).
Currency = Annotated[str, Field(pattern="^[A-Z]{3}$", description="ISO 4217 code.", examples=["INR"])]
Timestamp = Annotated[
    str,
    Field(
        description="RFC 3339, UTC, with `Z`.",
        examples=["2026-11-28T10:15:30.123Z"],
        json_schema_extra={"format": "date-time"},
    ),
]
Amount = Annotated[int, Field(ge=MIN_AMOUNT, le=MAX_AMOUNT, description="Minor units (paise for INR).")]
NextCursor = Annotated[
    str | None, Field(description="Pass as `cursor` for the next page; null on the last page.")
]


# The models `success()` has been given since the last `forget_response_models()`, by component name, for
# infra/openapi/build.py to render into components/schemas.
_declared_models: dict[str, type[ResponseModel]] = {}


def declared_response_models() -> dict[str, type[ResponseModel]]:
    return dict(_declared_models)


def forget_response_models() -> None:
    _declared_models.clear()


# The token answer of MFA verify and refresh (vaultpay.auth.service.TokenPair.body, docs/api.md).
TOKEN_PAIR_EXAMPLE = {
    "access_token": "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJ1c3JfMSJ9.c2ln",
    "refresh_token": "rt_Zk9wQ2x4bE5hV1V3",
    "token_type": "Bearer",
    "expires_in": 900,
    "refresh_expires_in": 604800,
}


def problem_example(status: int, code: str, detail: str, *, field: str | None = None) -> dict[str, Any]:
    """An OpenAPI Example object holding the problem document VaultPay sends for `code`."""
    value: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": _TITLES.get(status) or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "correlation_id": EXAMPLE_CORRELATION_ID,
    }
    if field is not None:
        value["errors"] = [{"field": field, "message": "is not valid"}]
    return {"summary": f"{code}: {detail}", "value": value}


def problems(status: int, details: Mapping[str, str]) -> dict[int, OpenAPIResponse]:
    """`responses=` entry for the codes a route raises itself: `problems(409, {"email_taken": "..."})`."""
    examples = {code: problem_example(status, code, detail) for code, detail in details.items()}
    return {
        status: {
            "description": "; ".join(f"`{code}`: {detail}" for code, detail in details.items()),
            "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}, "examples": examples}},
        }
    }


def success(
    status: int,
    description: str,
    example: Any = None,
    *,
    headers: dict[str, OpenAPIResponseHeader] | None = None,
    model: type[ResponseModel] | None = None,
    schema: Mapping[str, Any] | None = None,
) -> dict[int, OpenAPIResponse]:
    """`responses=` entry for a route's success answer, with an example body (none for a 204). The body is
    described by `model` (a `$ref` to its component schema) or, where a route has no model, by `schema`."""
    response: OpenAPIResponse = {"description": description}
    if example is not None:
        if model is not None:
            _declared_models[model.__name__] = model
            body_schema: dict[str, Any] = {"$ref": SCHEMA_REF_TEMPLATE.format(model=model.__name__)}
        elif schema is not None:
            body_schema = dict(schema)
        else:
            # A bare object is no contract: no client can be generated from it, no answer checked against it.
            raise TypeError(f"the {status} response's body needs a model (or a schema) to describe it")
        response["content"] = {
            "application/json": {"schema": body_schema, "examples": {"example": {"value": example}}}
        }
    if headers:
        response["headers"] = headers
    return {status: response}

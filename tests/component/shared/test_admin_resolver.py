"""The admin-only resolver: a caller who is not an admin is answered 403 before any body is validated, and an
admin's invalid body gets the contract's 400/422, on a resolver of its own and on the real admin functions."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from types import ModuleType
from typing import Annotated, Any

import pytest
from aws_lambda_powertools.event_handler import Response, content_types
from pydantic import Field
from support.apigw import proxy_event
from support.handlers import load_handler

from vaultpay.shared.http import PROBLEM_JSON, RequestModel, make_admin_resolver, principal

pytestmark = pytest.mark.component

_handler = functools.cache(load_handler)


class Note(RequestModel):
    text: Annotated[str, Field(min_length=1, max_length=5)]


def _app() -> Any:
    app = make_admin_resolver()

    @app.post("/v1/admin/notes")
    def post_note(body: Note) -> Response[dict[str, Any]]:
        return Response(
            status_code=201,
            content_type=content_types.APPLICATION_JSON,
            body={"text": body.text, "by": principal(app).user_id},
        )

    return app


def _answer(response: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    headers = {k.lower(): v[0] for k, v in (response.get("multiValueHeaders") or {}).items()}
    headers |= {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    return response["statusCode"], json.loads(response["body"]), str(headers.get("content-type"))


def _note(body: Any, *, role: str, raw: str | None = None, content_type: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": content_type} if content_type else None
    event = proxy_event(
        "POST", "/v1/admin/notes", user_id="usr_caller", role=role, body=body, headers=headers
    )
    if raw is not None:
        event["body"] = raw
    return event


BAD_BODIES: list[tuple[Any, str | None, str | None]] = [
    ({"text": ""}, None, None),  # too short
    ({"text": "x", "role": "admin"}, None, None),  # an unknown field
    ([1, 2], None, None),  # not an object
    (None, "{not json", None),  # malformed JSON
    (None, '{"text": "a", "text": "b"}', None),  # a duplicate key
    (None, "text=x", "application/x-www-form-urlencoded"),  # a form
]


@pytest.mark.parametrize(("body", "raw", "content_type"), BAD_BODIES)
def test_a_customer_with_an_invalid_body_gets_403_and_learns_nothing_of_the_body(
    body: Any, raw: str | None, content_type: str | None
) -> None:
    # Given a customer's request whose body is wrong in some way
    event = _note(body, role="customer", raw=raw, content_type=content_type)
    # When the admin-only resolver answers it
    status, problem, media_type = _answer(_app().resolve(event, None))
    # Then it is the contract's 403, with nothing about the body in it
    assert (status, media_type) == (403, PROBLEM_JSON)
    assert problem == {
        "type": "https://vaultpay.dev/problems/forbidden",
        "title": "Forbidden",
        "status": 403,
        "detail": "Only an admin may do this.",
        "code": "forbidden",
        "correlation_id": problem["correlation_id"],
    }


def test_a_request_without_a_caller_is_401_before_its_body_is_looked_at() -> None:
    event = _note({"text": ""}, role="admin")
    event["requestContext"]["authorizer"] = {}
    status, problem, _ = _answer(_app().resolve(event, None))
    assert (status, problem["code"]) == (401, "unauthorized")


def test_an_authorizer_soft_deny_still_comes_first() -> None:
    event = _note({"text": ""}, role="customer")
    event["requestContext"]["authorizer"]["auth_error"] = "device_mismatch"
    status, problem, _ = _answer(_app().resolve(event, None))
    assert (status, problem["code"]) == (401, "device_mismatch")


@pytest.mark.parametrize(
    ("body", "raw", "status", "code", "errors"),
    [
        ({"text": "x", "role": "admin"}, None, 422, "validation_failed", [("role", "is not allowed")]),
        ({}, None, 422, "validation_failed", [("text", "is required")]),
        ([1, 2], None, 422, "validation_failed", [("body", "must be a JSON object")]),
        (None, "{not json", 400, "malformed_json", []),
        (None, '{"text": "a", "text": "b"}', 422, "duplicate_key", None),
    ],
)
def test_an_admin_with_an_invalid_body_gets_the_contracts_400_or_422(
    body: Any, raw: str | None, status: int, code: str, errors: list[tuple[str, str]] | None
) -> None:
    answered, problem, media_type = _answer(_app().resolve(_note(body, role="admin", raw=raw), None))
    assert (answered, media_type) == (status, PROBLEM_JSON), problem
    if code != "duplicate_key":  # strict_json names this one; only its status is this test's concern
        assert problem["code"] == code
    if errors is not None:
        assert [(e["field"], e["message"]) for e in problem.get("errors", [])] == errors


def test_an_admin_with_a_valid_body_reaches_the_route() -> None:
    status, body, _ = _answer(_app().resolve(_note({"text": "hello"}, role="admin"), None))
    assert (status, body) == (201, {"text": "hello", "by": "usr_caller"})


# ---- the admin functions ---------------------------------------------------------------------------------


def _on(template: str, name: str, prefix: str) -> Callable[..., dict[str, Any]]:
    """An event builder for the admin route `template`, its path parameter `name` a fresh `<prefix>_` id."""

    def event(body: Any, *, role: str) -> dict[str, Any]:
        value = f"{prefix}_{uuid.uuid4().hex}"
        return proxy_event(
            "POST",
            template.replace("{" + name + "}", value),
            user_id="usr_admin",
            role=role,
            body=body,
            resource=template,
            path_parameters={name: value},
        )

    return event


_review = _on("/v1/admin/fraud/reviews/{transfer_id}", "transfer_id", "tr")
_decide_deposit = _on("/v1/admin/deposits/{deposit_id}/approve", "deposit_id", "dep")
_disable = _on("/v1/admin/users/{user_id}/disable", "user_id", "usr")


def _deposit(body: Any, *, role: str) -> dict[str, Any]:
    return proxy_event(
        "POST", "/v1/admin/deposits", user_id="usr_admin", role=role, body=body, idempotency_key="k-1"
    )


ROUTES = [
    ("fraud/review", _review, {"decision": "MAYBE", "note": ""}),
    ("accounts/admin_deposit", _deposit, {"account_id": "acc_x", "amount": 1.5, "currency": "inr"}),
    ("accounts/admin_deposit", _decide_deposit, {"reason": ""}),
    ("auth/admin_users", _disable, {"reason": "", "role": "admin"}),
]


def _call(function: str, event: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    module: ModuleType = _handler(function)
    return _answer(module.app.resolve(event, None))


@pytest.mark.parametrize(("function", "event", "body"), ROUTES)
def test_each_admin_function_answers_a_customer_with_a_bad_body_403(
    function: str, event: Any, body: dict[str, Any]
) -> None:
    status, problem, _ = _call(function, event(body, role="customer"))
    assert (status, problem["code"]) == (403, "forbidden")
    assert "errors" not in problem


@pytest.mark.parametrize(("function", "event", "body"), ROUTES)
def test_each_admin_function_answers_an_admin_with_a_bad_body_422(
    function: str, event: Any, body: dict[str, Any]
) -> None:
    status, problem, _ = _call(function, event(body, role="admin"))
    assert (status, problem["code"]) == (422, "validation_failed")
    assert problem["errors"]


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"decision": "approve", "note": "x"}, [("decision", "must be APPROVE or DECLINE")]),
        ({"decision": ["APPROVE"], "note": "x"}, [("decision", "must be APPROVE or DECLINE")]),
        ({"decision": "APPROVE"}, [("note", "is required")]),
        ({"decision": "APPROVE", "note": ""}, [("note", "must be text of 1..500 characters")]),
        ({"decision": "APPROVE", "note": "x" * 501}, [("note", "must be text of 1..500 characters")]),
        ({"decision": "APPROVE", "note": 5}, [("note", "must be text of 1..500 characters")]),
        ({"decision": "APPROVE", "note": "   "}, [("note", "must be printable text, not blank")]),
        ({"decision": "APPROVE", "note": "a\x07b"}, [("note", "must be printable text, not blank")]),
        ({"decision": "APPROVE", "note": "x", "reviewer": "usr_o"}, [("reviewer", "is not allowed")]),
        (["APPROVE"], [("body", "must be a JSON object")]),
    ],
)
def test_the_review_body_keeps_the_contracts_messages(body: Any, errors: list[tuple[str, str]]) -> None:
    # The messages the service's hand-parser gave, now the body model's
    status, problem, _ = _call("fraud/review", _review(body, role="admin"))
    assert (status, problem["code"], problem["detail"]) == (
        422,
        "validation_failed",
        "The request is not valid.",
    )
    assert [(e["field"], e["message"]) for e in problem["errors"]] == errors


def test_a_review_note_may_span_lines() -> None:
    from vaultpay.shared.http import RequestModel as Base

    review = _handler("fraud/review")
    decision = review.ReviewDecision.model_validate({"decision": "DECLINE", "note": "called\n\tno answer"})
    assert isinstance(decision, Base) and decision.note == "called\n\tno answer"

"""The shared resolver: problem+json errors (RFC 9457), request validation and the correlation id."""

import base64
import json
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from support.apigw import request_event

from vaultpay.shared.errors import (
    Conflict,
    FieldError,
    NotFound,
    RateLimited,
    TransientError,
    ValidationFailed,
)
from vaultpay.shared.http import CORRELATION_HEADER, PROBLEM_JSON, RequestModel, make_resolver

pytestmark = pytest.mark.unit

REQUEST_ID = "5b3e3a0e-6f1d-4b8e-9a53-2f0f1c0d9e71"


class CreateThing(RequestModel):
    name: str
    amount: int


def _app() -> APIGatewayRestResolver:
    app = make_resolver()

    @app.get("/v1/things/<thing_id>")
    def get_thing(thing_id: str) -> dict[str, Any]:
        if thing_id == "mine":
            return {"id": thing_id}
        raise NotFound(f"No thing {thing_id}.")

    @app.post("/v1/things")
    def create_thing(thing: CreateThing) -> dict[str, Any]:
        return {"name": thing.name, "amount": thing.amount}

    @app.get("/v1/conflict")
    def conflict() -> dict[str, Any]:
        raise Conflict("That email address is already registered.", code="email_taken")

    @app.get("/v1/invalid")
    def invalid() -> dict[str, Any]:
        raise ValidationFailed(
            "Currency not supported.",
            code="currency_not_supported",
            errors=[FieldError("currency", "must be one of: INR")],
        )

    @app.get("/v1/limited")
    def limited() -> dict[str, Any]:
        raise RateLimited("Too many login attempts.", retry_after=30)

    @app.get("/v1/transient")
    def transient() -> dict[str, Any]:
        raise TransientError("ProvisionedThroughputExceeded on table vaultpay-prod-accounts")

    @app.get("/v1/boom")
    def boom() -> dict[str, Any]:
        raise RuntimeError("KeyError in vaultpay/accounts/store.py: arn:aws:dynamodb:...:table/secret")

    return app


def _event(
    method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", **(headers or {})}
    return request_event(method, path, headers=headers, body=body, request_id=REQUEST_ID)


def _call(event: dict[str, Any]) -> tuple[int, dict[str, list[str]], dict[str, Any]]:
    response = _app().resolve(event, None)  # type: ignore[arg-type]
    return response["statusCode"], response["multiValueHeaders"], json.loads(response["body"])


def _assert_problem(headers: dict[str, list[str]], body: dict[str, Any], *, status: int, code: str) -> None:
    assert headers["Content-Type"] == [PROBLEM_JSON]
    assert body["type"] == f"https://vaultpay.dev/problems/{code}"
    assert body["status"] == status
    assert body["code"] == code
    assert body["title"]
    assert body["detail"]
    assert body["correlation_id"] == headers[CORRELATION_HEADER][0]


def test_a_domain_error_becomes_a_problem_with_its_status_code_and_message() -> None:
    # When a route raises NotFound
    status, headers, body = _call(_event("GET", "/v1/things/theirs"))
    # Then the client gets an RFC 9457 problem with the error's own status, code and message
    assert status == 404
    _assert_problem(headers, body, status=404, code="not_found")
    assert body["title"] == "Not found"
    assert body["detail"] == "No thing theirs."
    assert "errors" not in body


def test_a_specific_code_refines_the_error_class() -> None:
    status, headers, body = _call(_event("GET", "/v1/conflict"))
    assert status == 409
    _assert_problem(headers, body, status=409, code="email_taken")


def test_a_domain_validation_error_lists_its_fields() -> None:
    status, headers, body = _call(_event("GET", "/v1/invalid"))
    assert status == 422
    _assert_problem(headers, body, status=422, code="currency_not_supported")
    assert body["errors"] == [{"field": "currency", "message": "must be one of: INR"}]


def test_rate_limited_tells_the_client_when_to_retry() -> None:
    status, headers, body = _call(_event("GET", "/v1/limited"))
    assert status == 429
    _assert_problem(headers, body, status=429, code="rate_limited")
    assert headers["Retry-After"] == ["30"]


def test_an_unknown_body_field_is_rejected_with_422_naming_the_field() -> None:
    # When the body carries a field the operation does not define
    event = _event("POST", "/v1/things", body={"name": "a", "amount": 5, "role": "admin"})
    status, headers, body = _call(event)
    # Then the request is refused as invalid, naming that field, without pydantic's internals
    assert status == 422
    _assert_problem(headers, body, status=422, code="validation_failed")
    assert body["errors"] == [{"field": "role", "message": "is not allowed"}]


def test_missing_and_mistyped_fields_are_listed_one_by_one() -> None:
    status, _headers, body = _call(_event("POST", "/v1/things", body={"amount": "many"}))
    assert status == 422
    fields = {error["field"]: error["message"] for error in body["errors"]}
    assert fields["name"] == "is required"
    assert "amount" in fields
    assert "CreateThing" not in json.dumps(body)


def test_a_body_that_is_not_json_is_a_bad_request() -> None:
    status, headers, body = _call(_event("POST", "/v1/things", body="{not json"))
    assert status == 400
    _assert_problem(headers, body, status=400, code="malformed_json")


def test_a_body_that_is_not_utf8_is_a_bad_request_not_a_500() -> None:
    # Given bytes that are not UTF-8, which API Gateway hands over base64-encoded (found by schemathesis)
    for content_type in ("application/json", "application/json; charset=utf-8", None):
        event = _event("POST", "/v1/things", body=base64.b64encode(b"\xe1\xb3\x8f \x16\xff").decode())
        event["isBase64Encoded"] = True
        if content_type is None:
            del event["headers"]["Content-Type"], event["multiValueHeaders"]["Content-Type"]
        else:
            event["headers"]["Content-Type"] = content_type
            event["multiValueHeaders"]["Content-Type"] = [content_type]
        status, headers, body = _call(event)
        # Then it is refused as malformed JSON, as any other body that is not JSON
        assert status == 400, (content_type, body)
        _assert_problem(headers, body, status=400, code="malformed_json")


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"],
)
def test_a_form_body_is_an_unsupported_media_type(content_type: str) -> None:
    # Found by schemathesis: multipart without a boundary was a 500, and a form could pass for JSON
    for body in ('{"name": "a", "amount": 5}', "name=a&amount=5", None):
        event = _event("POST", "/v1/things", body=body, headers={"Content-Type": content_type})
        status, headers, problem = _call(event)
        assert status == 415, (content_type, body, problem)
        _assert_problem(headers, problem, status=415, code="unsupported_media_type")


def test_a_stray_form_content_type_on_a_get_without_a_body_is_ignored() -> None:
    event = _event("GET", "/v1/things/mine", headers={"Content-Type": "application/x-www-form-urlencoded"})
    status, _headers, body = _call(event)
    assert status == 200
    assert body == {"id": "mine"}


def test_a_base64_encoded_utf8_body_still_reaches_the_route() -> None:
    event = _event("POST", "/v1/things", body=base64.b64encode(b'{"name": "\xc3\xa9", "amount": 5}').decode())
    event["isBase64Encoded"] = True
    status, _headers, body = _call(event)
    assert status == 200
    assert body == {"name": "\u00e9", "amount": 5}


def test_a_valid_body_reaches_the_route() -> None:
    status, headers, body = _call(_event("POST", "/v1/things", body={"name": "a", "amount": 5}))
    assert status == 200
    assert body == {"name": "a", "amount": 5}
    assert headers[CORRELATION_HEADER] == [REQUEST_ID]


def test_an_unexpected_exception_is_a_500_that_reveals_nothing() -> None:
    # When a route fails with an exception nobody anticipated
    status, headers, body = _call(_event("GET", "/v1/boom"))
    # Then the client sees a generic 500 problem: no exception text, type, path or ARN
    assert status == 500
    _assert_problem(headers, body, status=500, code="internal_error")
    text = json.dumps(body)
    for leak in ("KeyError", "RuntimeError", "store.py", "arn:aws", "secret"):
        assert leak not in text


def test_an_infrastructure_error_keeps_its_message_out_of_the_response() -> None:
    status, headers, body = _call(_event("GET", "/v1/transient"))
    assert status == 503
    _assert_problem(headers, body, status=503, code="service_unavailable")
    assert "vaultpay-prod-accounts" not in json.dumps(body)


def test_an_unknown_route_is_a_404_problem() -> None:
    status, headers, body = _call(_event("GET", "/v1/nowhere"))
    assert status == 404
    _assert_problem(headers, body, status=404, code="not_found")


def test_the_callers_correlation_id_is_echoed_on_success_and_on_errors() -> None:
    given = {CORRELATION_HEADER: "client-trace-42"}
    for path in ("/v1/things/mine", "/v1/things/theirs", "/v1/boom"):
        _status, headers, _body = _call(_event("GET", path, headers=given))
        assert headers[CORRELATION_HEADER] == ["client-trace-42"], path


def test_the_correlation_id_header_is_matched_case_insensitively() -> None:
    _status, headers, _body = _call(_event("GET", "/v1/things/mine", headers={"x-correlation-id": "abc"}))
    assert headers[CORRELATION_HEADER] == ["abc"]


def test_without_a_correlation_id_the_api_gateway_request_id_is_used() -> None:
    _status, headers, body = _call(_event("POST", "/v1/things", body={"name": "a", "role": "x"}))
    assert headers[CORRELATION_HEADER] == [REQUEST_ID]
    assert body["correlation_id"] == REQUEST_ID


def test_without_any_id_a_new_one_is_made() -> None:
    event = _event("GET", "/v1/things/mine")
    del event["requestContext"]["requestId"]
    _status, headers, _body = _call(event)
    assert len(headers[CORRELATION_HEADER][0]) == 36  # a UUID


def test_an_unusable_correlation_id_is_replaced_not_echoed() -> None:
    for bad in ("x" * 129, "has space", "new\nline"):
        _status, headers, _body = _call(_event("GET", "/v1/things/mine", headers={CORRELATION_HEADER: bad}))
        assert headers[CORRELATION_HEADER] == [REQUEST_ID]


def test_a_warm_resolver_decides_the_correlation_id_afresh_for_each_request() -> None:
    # Given one resolver serving two requests, as a warm Lambda does
    app = _app()
    first = app.resolve(_event("GET", "/v1/things/mine", headers={CORRELATION_HEADER: "first"}), None)  # type: ignore[arg-type]
    # When the second request brings no id of its own
    second = app.resolve(_event("GET", "/v1/things/theirs"), None)  # type: ignore[arg-type]
    # Then it does not inherit the first one's
    assert first["multiValueHeaders"][CORRELATION_HEADER] == ["first"]
    assert second["multiValueHeaders"][CORRELATION_HEADER] == [REQUEST_ID]
    assert json.loads(second["body"])["correlation_id"] == REQUEST_ID

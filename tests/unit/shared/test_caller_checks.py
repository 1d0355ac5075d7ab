"""What a decision cached by the token cannot decide, checked by the function on every request: the device
binding (and its event) and the per-user API-call count."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from support.apigw import CUSTOMER_DECISION, request_event

from vaultpay.shared import caller_checks
from vaultpay.shared.caller_checks import (
    API_CALLS,
    API_CALLS_SCOPE,
    DEVICE_MISMATCH,
    decided_for_another_request,
)
from vaultpay.shared.errors import TransientError
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.http import CORRELATION_HEADER, make_resolver, principal
from vaultpay.shared.ratelimit import FakeCounterStore, RateLimiter, window_key

pytestmark = pytest.mark.unit

THIS_REQUEST = "5b3e3a0e-6f1d-4b8e-9a53-2f0f1c0d9e71"
EARLIER_REQUEST = "0d7c1a52-2b8e-4f6e-8c1f-6a0e9b3d2c10"
NOW = 1_764_000_000.0
DEVICE = "device-4f1c2a"
DECISION = CUSTOMER_DECISION


@pytest.fixture
def counters(monkeypatch: pytest.MonkeyPatch) -> FakeCounterStore:
    store = FakeCounterStore()
    monkeypatch.setattr(caller_checks, "api_call_limiter", lambda: RateLimiter(store))
    monkeypatch.setattr(caller_checks.kernel, "now", lambda: NOW)
    return store


@pytest.fixture
def reported(monkeypatch: pytest.MonkeyPatch) -> list[DomainEvent]:
    """The device-mismatch events the function writes to the auth table's outbox."""
    events: list[DomainEvent] = []

    class Outbox:
        name = "auth"

        def call(self, operation: str, **request: Any) -> None:
            assert operation == "PutItem"
            assert request["ConditionExpression"] == "attribute_not_exists(pk)"
            item = request["Item"]
            events.append(
                DomainEvent(
                    id=item["event_id"]["S"],
                    type=item["type"]["S"],
                    source=item["source"]["S"],
                    subject=item["subject"]["S"],
                    correlation_id=item["correlation_id"]["S"],
                    actor=item["actor"]["S"] if "actor" in item else None,
                    data=json.loads(item["data"]["S"]),
                )
            )

    monkeypatch.setattr(caller_checks, "device_mismatch_outbox", lambda: Outbox())
    return events


def _app() -> APIGatewayRestResolver:
    app = make_resolver()

    @app.get("/v1/me")
    def me() -> dict[str, Any]:
        return {"cid": principal(app).correlation_id}

    return app


def _call(
    decided_for: str, device_id: str | None = DEVICE, **decision: Any
) -> tuple[int, dict[str, list[str]], dict[str, Any]]:
    authorizer = {**DECISION, "request_id": decided_for, **decision}
    headers = {"X-Device-Id": device_id} if device_id is not None else {}
    event = request_event("GET", "/v1/me", headers=headers, authorizer=authorizer, request_id=THIS_REQUEST)
    response = _app().resolve(event, None)  # type: ignore[arg-type]
    return response["statusCode"], response["multiValueHeaders"], json.loads(response["body"])


def test_a_decision_names_the_request_it_was_made_for() -> None:
    context = {"requestId": THIS_REQUEST, "authorizer": {"request_id": EARLIER_REQUEST}}
    assert decided_for_another_request({"requestContext": context})
    context["authorizer"]["request_id"] = THIS_REQUEST
    assert not decided_for_another_request({"requestContext": context})
    # A decision that names no request (a hand-made event) was made for this one
    assert not decided_for_another_request({"requestContext": {"requestId": THIS_REQUEST, "authorizer": {}}})


@pytest.mark.parametrize("decided_for", [THIS_REQUEST, EARLIER_REQUEST])
def test_each_request_is_counted_once_whether_its_decision_was_cached_or_not(
    counters: FakeCounterStore, decided_for: str
) -> None:
    status, _, _ = _call(decided_for)
    assert status == 200
    assert list(counters.counts.values()) == [1]
    (key,) = counters.counts
    assert key.startswith("RL#api#") and key.endswith("#usr_01JD3F6Q")


def test_a_decision_that_names_no_request_is_not_counted(counters: FakeCounterStore) -> None:
    # A hand-made event or a direct invoke: no API Gateway request to count
    event = request_event("GET", "/v1/me", authorizer=DECISION, request_id=THIS_REQUEST)
    assert _app().resolve(event, None)["statusCode"] == 200  # type: ignore[arg-type]
    assert counters.counts == {}


def test_a_user_over_the_limit_is_limited_on_a_cached_decision(counters: FakeCounterStore) -> None:
    # Given the user's window already holds the limit
    key, _, expires_at = window_key(API_CALLS_SCOPE, DECISION["user_id"], NOW, API_CALLS.period_s)
    counters.counts[key], counters.expiries[key] = API_CALLS.limit, expires_at
    # When one more request is answered from the cache
    status, headers, body = _call(EARLIER_REQUEST)
    # Then it is refused before the route runs, with the window's end as Retry-After
    assert (status, body["code"]) == (429, "rate_limited")
    assert headers["Retry-After"] == [str(60 - int(NOW) % 60)]


@pytest.mark.parametrize("decided_for", [THIS_REQUEST, EARLIER_REQUEST])
@pytest.mark.parametrize("device_id", [None, "", "x" * 129, "caf\u00e9", "tab\there"])
def test_a_missing_or_malformed_device_id_is_device_id_required_and_not_counted(
    counters: FakeCounterStore, reported: list[DomainEvent], decided_for: str, device_id: str | None
) -> None:
    # Given an allowed token, cached or not, on a request without a usable X-Device-Id
    status, _, body = _call(decided_for, device_id=device_id)
    # Then the contract's 400, before any route, and nothing counted or reported
    assert (status, body["code"]) == (400, "device_id_required")
    assert counters.counts == {}
    assert reported == []


def test_two_device_id_headers_are_device_id_required(counters: FakeCounterStore) -> None:
    authorizer = {**DECISION, "request_id": THIS_REQUEST}
    event = request_event("GET", "/v1/me", authorizer=authorizer, request_id=THIS_REQUEST)
    event["multiValueHeaders"]["X-Device-Id"] = [DEVICE, "other"]
    event["headers"]["X-Device-Id"] = "other"
    response = _app().resolve(event, None)  # type: ignore[arg-type]
    assert json.loads(response["body"])["code"] == "device_id_required"


@pytest.mark.parametrize("decided_for", [THIS_REQUEST, EARLIER_REQUEST])
def test_another_device_is_device_mismatch_reported_to_the_fraud_engine_and_not_counted(
    counters: FakeCounterStore, reported: list[DomainEvent], decided_for: str
) -> None:
    # Given DEVICE's token (its decision cached by the token, or made for this request) from another device
    status, headers, body = _call(decided_for, device_id="attacker-phone")
    # Then the contract's 401, and the same event the authorizer raised before the cache
    assert (status, body["code"]) == (401, "device_mismatch")
    (event,) = reported
    assert (event.type, event.source, event.subject, event.actor) == (
        DEVICE_MISMATCH,
        "/vaultpay/auth",
        DECISION["user_id"],
        None,
    )
    assert event.correlation_id == headers[CORRELATION_HEADER][0] == THIS_REQUEST
    assert event.data == {
        "user_id": DECISION["user_id"],
        "token_device_id": DEVICE,
        "presented_device_id": "attacker-phone",
        "method": "GET",
        "resource": "/v1/me",
        "source_ip": "127.0.0.1",
    }
    # And a thief's requests do not use up the owner's quota
    assert counters.counts == {}


def test_a_mismatch_whose_event_cannot_be_written_is_refused_503(
    counters: FakeCounterStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Down:
        name = "auth"

        def call(self, operation: str, **request: Any) -> None:
            raise TransientError("the auth table is unavailable")

    monkeypatch.setattr(caller_checks, "device_mismatch_outbox", lambda: Down())
    status, _, body = _call(THIS_REQUEST, device_id="attacker-phone")
    assert status == 503
    assert "auth" not in body["detail"]


def test_the_checks_device_id_rule_is_the_auth_models() -> None:
    # Its own copy (shared imports no domain) must not drift from the model's
    from vaultpay.auth import model

    assert caller_checks.DEVICE_MISMATCH == model.DEVICE_MISMATCH
    assert caller_checks.DEVICE_MISMATCH_SOURCE == model.EVENT_SOURCE
    for device_id in ["d", "x" * 128, "x" * 129, "", "caf\u00e9", "tab\there", " spaced ok "]:
        assert bool(caller_checks.DEVICE_ID.fullmatch(device_id)) == model.is_device_id(device_id), device_id


@pytest.mark.parametrize(
    ("auth_error", "status"),
    [("token_revoked", 401), ("device_mismatch", 401), ("device_id_required", 400), ("rate_limited", 429)],
)
def test_soft_denies_in_the_decision_stand_and_nothing_is_counted(
    counters: FakeCounterStore, auth_error: str, status: int
) -> None:
    # token_revoked is this authorizer's; the others an earlier release's (a deploy runs both a while)
    got, _, body = _call(EARLIER_REQUEST, auth_error=auth_error)
    assert (got, body["code"]) == (status, auth_error)
    assert counters.counts == {}


def test_a_cached_decision_does_not_lend_its_correlation_id_to_later_requests(
    counters: FakeCounterStore,
) -> None:
    _, headers, body = _call(EARLIER_REQUEST)
    # The earlier request's id is not this one's: the function derives its own (API Gateway's request id)
    assert body["cid"] == THIS_REQUEST
    assert headers[CORRELATION_HEADER] == [THIS_REQUEST]


def test_a_reads_count_runs_beside_its_route_and_a_refusal_replaces_the_answer(
    counters: FakeCounterStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a count that takes a while and a user whose window is full
    import threading

    key, _, expires_at = window_key(API_CALLS_SCOPE, DECISION["user_id"], NOW, API_CALLS.period_s)
    counters.counts[key], counters.expiries[key] = API_CALLS.limit, expires_at
    counting, routed = threading.Event(), threading.Event()
    real = counters.increment

    def slow_increment(key: str, expires_at: int) -> int:
        counting.set()
        assert routed.wait(5), "the route did not run while the count was in flight"
        return real(key, expires_at)

    monkeypatch.setattr(counters, "increment", slow_increment)
    app = make_resolver()

    @app.get("/v1/me")
    def me() -> dict[str, Any]:
        routed.set()  # the route runs while the count is still in flight
        return {"ok": True}

    # When a GET is answered
    event = request_event(
        "GET", "/v1/me", headers={"X-Device-Id": DEVICE}, authorizer={**DECISION, "request_id": THIS_REQUEST}
    )
    response = app.resolve(event, None)  # type: ignore[arg-type]
    # Then the count's refusal is the answer: the read's body never leaves
    assert counting.is_set()
    assert (response["statusCode"], json.loads(response["body"])["code"]) == (429, "rate_limited")


def test_a_writes_count_is_settled_before_its_route_runs(counters: FakeCounterStore) -> None:
    # Given a user whose window is full
    key, _, expires_at = window_key(API_CALLS_SCOPE, DECISION["user_id"], NOW, API_CALLS.period_s)
    counters.counts[key], counters.expiries[key] = API_CALLS.limit, expires_at
    app = make_resolver()
    ran: list[str] = []

    @app.post("/v1/accounts")
    def create() -> dict[str, Any]:
        ran.append("route")
        return {"ok": True}

    # When they POST
    event = request_event(
        "POST",
        "/v1/accounts",
        headers={"X-Device-Id": DEVICE},
        body={},
        authorizer={**DECISION, "request_id": THIS_REQUEST},
    )
    response = app.resolve(event, None)  # type: ignore[arg-type]
    # Then nothing of the route ran
    assert response["statusCode"] == 429
    assert ran == []

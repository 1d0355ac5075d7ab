"""Idempotency-Key against DynamoDB Local: replay, reuse with another body, in-flight 409, errors not kept."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from support.lambda_context import FakeLambdaContext
from support.tables import create_table

from vaultpay.shared.errors import Conflict, ValidationFailed, VaultPayError
from vaultpay.shared.http import RequestModel
from vaultpay.shared.idempotency import (
    EXPIRES_AFTER_S,
    IDEMPOTENCY_HEADER,
    REPLAYED_HEADER,
    Outcome,
    idempotency_scope,
    run_idempotent,
)

pytestmark = pytest.mark.component


LAMBDA_CONTEXT = FakeLambdaContext("vaultpay-test-CreateAccountFunction", remaining_ms=10_000)


class Crash(BaseException):
    """What a Lambda timeout or a killed process looks like to the code: no `except Exception` runs."""


def _client(endpoint: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


@pytest.fixture(scope="module")
def table(dynamodb_endpoint: str) -> str:
    """template.yaml's AccountsIdempotencyTable: key `id`, TTL attribute `expiration`."""
    return create_table(_client(dynamodb_endpoint), "AccountsIdempotencyTable", "vaultpay-test-idempotency")


@pytest.fixture(scope="module")
def store(dynamodb_endpoint: str, table: str) -> Any:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    return DynamoDBPersistenceLayer(table_name=table, boto3_client=_client(dynamodb_endpoint))


class Counter:
    """An operation that counts its runs and answers a new resource each time."""

    def __init__(self, status_code: int = 201) -> None:
        self.runs = 0
        self.status_code = status_code
        self.lock = threading.Lock()

    def __call__(self) -> Outcome:
        with self.lock:
            self.runs += 1
        return Outcome(self.status_code, {"account_id": f"acc_{uuid.uuid4().hex}", "balance": {"ledger": 0}})


def _scope(user: str = "usr_1", key: str | None = None, route: str = "/v1/accounts") -> str:
    return idempotency_scope("POST", route, user, key or uuid.uuid4().hex)


def _run(
    store: Any, scope: str, body: dict[str, Any], operation: Callable[[], Outcome], **kw: Any
) -> Outcome:
    kw.setdefault("lambda_context", LAMBDA_CONTEXT)
    return run_idempotent(scope=scope, payload=body, operation=operation, persistence=store, **kw)


def test_the_same_key_and_body_replays_the_first_response_and_runs_once(store: Any) -> None:
    # Given a first request that opened an account
    operation, scope, body = Counter(), _scope(), {"type": "SAVINGS", "currency": "INR"}
    first = _run(store, scope, body, operation)
    # When the client retries it with the same key and body
    again = _run(store, scope, {"currency": "INR", "type": "SAVINGS"}, operation)
    # Then it gets the same status and body back, marked as a replay, and nothing ran twice
    assert (first.status_code, first.replayed) == (201, False)
    assert (again.status_code, again.body, again.replayed) == (201, first.body, True)
    assert operation.runs == 1


def test_the_same_key_with_another_body_is_idempotency_key_reused(store: Any) -> None:
    operation, scope = Counter(), _scope()
    _run(store, scope, {"type": "SAVINGS", "currency": "INR"}, operation)
    with pytest.raises(ValidationFailed) as refused:
        _run(store, scope, {"type": "CURRENT", "currency": "INR"}, operation)
    assert (refused.value.code, refused.value.status) == ("idempotency_key_reused", 422)
    assert operation.runs == 1


def test_keys_are_scoped_to_the_user_and_the_route(store: Any) -> None:
    operation, key, body = Counter(), uuid.uuid4().hex, {"type": "SAVINGS", "currency": "INR"}
    mine = _run(store, _scope("usr_1", key), body, operation)
    theirs = _run(store, _scope("usr_2", key), body, operation)
    other_route = _run(store, _scope("usr_1", key, route="/v1/admin/deposits"), body, operation)
    assert not theirs.replayed and not other_route.replayed
    assert len({mine.body["account_id"], theirs.body["account_id"], other_route.body["account_id"]}) == 3
    assert operation.runs == 3


def test_an_error_is_not_kept_so_a_retry_runs_again(store: Any) -> None:
    # Given a first attempt that the domain refused
    scope, body, calls = _scope(), {"type": "SAVINGS", "currency": "USD"}, []

    def refuse() -> Outcome:
        calls.append("refused")
        raise ValidationFailed("The currency is not supported.", code="currency_not_supported")

    with pytest.raises(ValidationFailed):
        _run(store, scope, body, refuse)
    # When the same request is retried (say, after the currency was enabled)
    operation = Counter()
    retried = _run(store, scope, body, operation)
    # Then it ran again, and its success is what is kept from now on
    assert (retried.replayed, operation.runs, calls) == (False, 1, ["refused"])
    assert _run(store, scope, body, operation).replayed


def test_a_request_in_flight_makes_the_same_key_409_and_another_body_422(store: Any) -> None:
    # Given a first request whose operation is still running
    scope, body = _scope(), {"type": "SAVINGS", "currency": "INR"}
    started, finish = threading.Event(), threading.Event()
    results: list[Any] = []

    def slow() -> Outcome:
        started.set()
        assert finish.wait(10)
        return Outcome(201, {"account_id": "acc_slow"})

    first = threading.Thread(target=lambda: results.append(_run(store, scope, body, slow)))
    first.start()
    assert started.wait(10)
    try:
        # When the same key arrives again meanwhile, with the same body and with another one
        with pytest.raises(Conflict) as in_flight:
            _run(store, scope, body, Counter())
        with pytest.raises(ValidationFailed) as reused:
            _run(store, scope, {"type": "CURRENT", "currency": "INR"}, Counter())
    finally:
        finish.set()
        first.join(10)
    # Then: 409 request_in_progress, 422 idempotency_key_reused; the first completes; a retry replays it
    assert (in_flight.value.code, in_flight.value.status) == ("request_in_progress", 409)
    assert reused.value.code == "idempotency_key_reused"
    assert [r.body for r in results] == [{"account_id": "acc_slow"}]
    replay = _run(store, scope, body, Counter())
    assert (replay.replayed, replay.body) == (True, {"account_id": "acc_slow"})


def test_many_requests_with_one_key_at_once_run_the_operation_once(store: Any) -> None:
    # Given eight clients retrying the same request at the same instant
    scope, body, operation = _scope(), {"type": "SAVINGS", "currency": "INR"}, Counter()
    barrier = threading.Barrier(8)
    results: list[Any] = [None] * 8

    def slow_operation() -> Outcome:
        time.sleep(0.2)  # long enough that the others arrive while it runs
        return operation()

    def client(index: int) -> None:
        barrier.wait()
        try:
            results[index] = _run(store, scope, body, slow_operation)
        except VaultPayError as exc:
            results[index] = exc

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # Then exactly one ran it; every other one was told it is in progress (or got the replay)
    assert operation.runs == 1
    ran = [r for r in results if isinstance(r, Outcome) and not r.replayed]
    others = [r for r in results if not (isinstance(r, Outcome) and not r.replayed)]
    assert len(ran) == 1
    for other in others:
        if isinstance(other, Outcome):
            assert other.body == ran[0].body
        else:
            assert isinstance(other, Conflict) and other.code == "request_in_progress", other


def test_a_request_that_died_mid_way_does_not_block_its_retry_beyond_its_timeout(store: Any) -> None:
    # Given a first attempt that crashed (a timeout: no cleanup ran) with 1 ms of its invocation left
    scope, body = _scope(), {"type": "SAVINGS", "currency": "INR"}

    def crash() -> Outcome:
        raise Crash

    with pytest.raises(Crash):
        _run(store, scope, body, crash, lambda_context=replace(LAMBDA_CONTEXT, remaining_ms=1))
    time.sleep(0.05)
    # When the client retries after that invocation would have timed out
    operation = Counter()
    retried = _run(store, scope, body, operation)
    # Then the retry runs instead of being told 409 for a day
    assert (retried.replayed, operation.runs) == (False, 1)


def test_unstored_fields_stay_out_of_the_table_and_are_restored_on_replay(
    store: Any, dynamodb_endpoint: str, table: str
) -> None:
    # Given a response carrying a full account number, which must not be kept in clear
    number, key = "123456789012", f"key-{uuid.uuid4().hex}"
    scope, body = _scope("usr_secretive", key), {"type": "SAVINGS", "currency": "INR"}

    def opened() -> Outcome:
        return Outcome(201, {"account_id": "acc_1", "account_number": number, "status": "ACTIVE"})

    def restore(stored: Any) -> dict[str, Any]:
        return {"account_id": stored["account_id"], "account_number": number, **stored}

    first = _run(store, scope, body, opened, unstored=("account_number",), restore=restore)
    replay = _run(store, scope, body, opened, unstored=("account_number",), restore=restore)
    # Then the client sees the number both times, while the table holds neither it, the key nor the user
    assert first.body == replay.body == {"account_id": "acc_1", "account_number": number, "status": "ACTIVE"}
    assert replay.replayed
    items = _client(dynamodb_endpoint).scan(TableName=table)["Items"]
    dump = json.dumps(items)
    for secret in (number, key, "usr_secretive"):
        assert secret not in dump


def test_records_are_kept_for_at_least_24_hours(store: Any, dynamodb_endpoint: str, table: str) -> None:
    scope = _scope()
    before = time.time()
    _run(store, scope, {"type": "SAVINGS"}, Counter())
    expirations = [
        int(item["expiration"]["N"]) for item in _client(dynamodb_endpoint).scan(TableName=table)["Items"]
    ]
    assert EXPIRES_AFTER_S >= 24 * 3600
    assert max(expirations) >= before + 24 * 3600 - 1


# ---- through the resolver: the header, the status and the replay header ------------------------------------


class Body(RequestModel):
    type: str


@pytest.fixture
def resolver_env(dynamodb_endpoint: str, table: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from vaultpay import bootstrap

    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("IDEMPOTENCY_TABLE", table)
    bootstrap.reset()
    yield
    bootstrap.reset()


def _app(operation: Counter) -> Any:
    from vaultpay.shared.http import make_resolver, principal
    from vaultpay.shared.idempotency import idempotent_response

    app = make_resolver()

    @app.post("/v1/things")
    def create(body: Body) -> Any:
        return idempotent_response(app, user_id=principal(app).user_id, payload=body, operation=operation)

    return app


def _event(body: Any, headers: dict[str, str]) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", **headers}
    return {
        "resource": "/v1/things",
        "path": "/v1/things",
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "requestContext": {
            "requestId": "req-1",
            "resourcePath": "/v1/things",
            "httpMethod": "POST",
            "authorizer": {
                "user_id": "usr_1",
                "role": "customer",
                "device_id": "d-1",
                "correlation_id": "c-1",
            },
        },
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def _header(response: dict[str, Any], name: str) -> str | None:
    headers = {**(response.get("headers") or {}), **(response.get("multiValueHeaders") or {})}
    value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return value[0] if isinstance(value, list) else value


def test_a_replay_over_http_has_the_first_status_and_body_and_the_replayed_header(resolver_env: None) -> None:
    operation = Counter()
    app = _app(operation)
    headers = {IDEMPOTENCY_HEADER: f"k-{uuid.uuid4().hex}"}
    first = app.resolve(_event({"type": "a"}, headers), LAMBDA_CONTEXT)
    again = app.resolve(_event({"type": "a"}, headers), LAMBDA_CONTEXT)
    assert first["statusCode"] == again["statusCode"] == 201
    assert json.loads(first["body"]) == json.loads(again["body"])
    assert _header(first, REPLAYED_HEADER) is None
    assert _header(again, REPLAYED_HEADER) == "true"
    assert _header(again, "Cache-Control") == "no-store"
    assert operation.runs == 1
    reused = app.resolve(_event({"type": "b"}, headers), LAMBDA_CONTEXT)
    assert reused["statusCode"] == 422
    assert json.loads(reused["body"])["code"] == "idempotency_key_reused"


@pytest.mark.parametrize(
    "headers",
    [{}, {IDEMPOTENCY_HEADER: ""}, {IDEMPOTENCY_HEADER: "k" * 256}, {IDEMPOTENCY_HEADER: "clé"}],
    ids=["missing", "empty", "too-long", "not-ascii"],
)
def test_a_missing_or_malformed_key_is_400_and_runs_nothing(
    resolver_env: None, headers: dict[str, str]
) -> None:
    operation = Counter()
    response = _app(operation).resolve(_event({"type": "a"}, headers), LAMBDA_CONTEXT)
    problem = json.loads(response["body"])
    assert (response["statusCode"], problem["code"]) == (400, "idempotency_key_required")
    assert "Idempotency-Key" in problem["detail"]
    assert operation.runs == 0

"""The webhook routes, the consumer's recording and the delivery sweeper on moto's DynamoDB and KMS: the
contract's answers, the secret sealed in KMS and shown once, the ten-endpoint limit, another user's webhook
as 404, hostile bodies as 422, and a signed delivery to a receiver on 127.0.0.1 (never anywhere else)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
from support.apigw import proxy_event
from support.handlers import load_handler
from support.lambda_context import FakeLambdaContext
from support.tables import create_table
from support.webhooks import Receiver, completed_event

from vaultpay.webhooks.model import verify_signature

pytestmark = pytest.mark.component
TABLE = "vaultpay-test-WebhooksTable"
CONTEXT = FakeLambdaContext("vaultpay-test-webhooks", remaining_ms=30_000)
PROBLEM_JSON = "application/problem+json"


def _reset() -> None:
    from vaultpay import bootstrap

    bootstrap.reset()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's DynamoDB (the webhooks table) and KMS (the secrets' key), the local stage allowing loopback."""
    from moto import mock_aws

    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(name)
    with mock_aws():
        key = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["Arn"]
        for name, value in {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "WEBHOOKS_TABLE": TABLE,
            "WEBHOOK_SECRET_KEY_ID": key,
            "WEBHOOK_ALLOW_LOOPBACK": "true",
            "WEBHOOK_TIME_SCALE": "60",
            "STAGE": "local",
            "POWERTOOLS_METRICS_NAMESPACE": "VaultPayTest",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }.items():
            monkeypatch.setenv(name, value)
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "WebhooksTable", TABLE)
        _reset()
        yield client
        _reset()


@pytest.fixture
def manage(aws: Any) -> ModuleType:
    module: ModuleType = load_handler("webhooks/manage")
    return module


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


def _call(
    module: ModuleType, method: str, path: str, user: str = "usr_alice", **kwargs: Any
) -> dict[str, Any]:
    resource = kwargs.pop("resource", path)
    response: dict[str, Any] = module.handler(
        proxy_event(method, path, user_id=user, resource=resource, **kwargs), CONTEXT
    )
    return response


def _register(manage: ModuleType, url: str, user: str = "usr_alice", events: Any = None) -> dict[str, Any]:
    body = {"url": url, "events": events or ["vaultpay.transaction.*"], "description": "ops"}
    return _call(manage, "POST", "/v1/webhooks", user, body=body)


def _one(
    manage: ModuleType, method: str, webhook_id: str, user: str = "usr_alice", suffix: str = ""
) -> dict[str, Any]:
    return _call(
        manage,
        method,
        f"/v1/webhooks/{webhook_id}{suffix}",
        user,
        resource="/v1/webhooks/{webhook_id}" + suffix,
        path_parameters={"webhook_id": webhook_id},
    )


def test_registering_answers_201_with_the_secret_once_and_seals_it_in_kms(
    manage: ModuleType, aws: Any
) -> None:
    created = _register(manage, "http://127.0.0.1:9/hooks")
    assert created["statusCode"] == 201, created
    body = json.loads(created["body"])
    assert body["status"] == "ENABLED" and body["secret"].startswith("whsec_")
    assert set(body) == {"webhook_id", "url", "events", "description", "status", "secret", "created_at"}
    stored = aws.get_item(
        TableName=TABLE, Key={"pk": {"S": "USER#usr_alice"}, "sk": {"S": f"WEBHOOK#{body['webhook_id']}"}}
    )["Item"]
    assert body["secret"] not in json.dumps(stored) and stored["secret_enc"]["S"].startswith("fc1.")
    shown = json.loads(_one(manage, "GET", body["webhook_id"])["body"])
    assert "secret" not in shown and shown["url"] == "http://127.0.0.1:9/hooks"
    listed = json.loads(_call(manage, "GET", "/v1/webhooks")["body"])
    assert [w["webhook_id"] for w in listed["items"]] == [body["webhook_id"]] and listed[
        "next_cursor"
    ] is None


def test_another_users_webhook_is_404_on_every_route(manage: ModuleType) -> None:
    webhook_id = json.loads(_register(manage, "http://127.0.0.1:9/x")["body"])["webhook_id"]
    for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/rotate-secret")):
        answer = _one(manage, method, webhook_id, user="usr_mallory", suffix=suffix)
        assert answer["statusCode"] == 404 and json.loads(answer["body"])["code"] == "webhook_not_found"
    assert _one(manage, "GET", webhook_id)["statusCode"] == 200


def test_delete_answers_204_then_404_and_frees_a_place(manage: ModuleType) -> None:
    ids = [json.loads(_register(manage, "http://127.0.0.1:9/x")["body"])["webhook_id"] for _ in range(10)]
    refused = _register(manage, "http://127.0.0.1:9/x")
    assert refused["statusCode"] == 409 and json.loads(refused["body"])["code"] == "webhook_limit_reached"
    assert _one(manage, "DELETE", ids[0])["statusCode"] == 204
    assert _one(manage, "DELETE", ids[0])["statusCode"] == 404
    assert _register(manage, "http://127.0.0.1:9/x")["statusCode"] == 201


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "https://169.254.169.254/latest/meta-data", "events": ["*"]}, "webhook_url_not_allowed"),
        ({"url": "https://[::ffff:10.0.0.1]/", "events": ["*"]}, "webhook_url_not_allowed"),
        ({"url": "ftp://hooks.example.com/", "events": ["*"]}, "webhook_url_not_allowed"),
        ({"url": "http://127.0.0.1/no-port", "events": ["*"]}, "webhook_url_not_allowed"),
        ({"url": "http://127.0.0.1:9/", "events": ["vaultpay.fraud.result"]}, "validation_failed"),
        ({"url": "http://127.0.0.1:9/", "events": []}, "validation_failed"),
        ({"url": "http://127.0.0.1:9/", "events": ["*"], "secret": "mine"}, "validation_failed"),
        ({"url": "http://127.0.0.1:9/", "events": "*"}, "validation_failed"),
    ],
)
def test_a_hostile_registration_is_422_never_stored(
    manage: ModuleType, body: dict[str, Any], code: str
) -> None:
    answer = _call(manage, "POST", "/v1/webhooks", body=body)
    assert answer["statusCode"] == 422, answer
    assert PROBLEM_JSON in json.dumps(answer.get("multiValueHeaders") or answer.get("headers"))
    assert json.loads(answer["body"])["code"] == code
    assert json.loads(_call(manage, "GET", "/v1/webhooks")["body"])["items"] == []


def test_rotation_answers_a_new_secret_and_both_sign_a_delivery(
    manage: ModuleType, receiver: Receiver
) -> None:
    created = json.loads(_register(manage, receiver.url)["body"])
    rotated = _one(manage, "POST", created["webhook_id"], suffix="/rotate-secret")
    assert rotated["statusCode"] == 200
    new_secret = json.loads(rotated["body"])["secret"]
    assert new_secret != created["secret"]
    _record_and_send(completed_event())
    [(_, headers, body, _)] = receiver.received
    now = int(time.time())
    assert verify_signature(headers["VaultPay-Signature"], created["secret"], body, now=now)
    assert verify_signature(headers["VaultPay-Signature"], new_secret, body, now=now)


def _record_and_send(event: dict[str, Any]) -> dict[str, Any]:
    from vaultpay.bootstrap.webhooks import delivery_service

    delivery_service().record(event)
    sweeper = load_handler("webhooks/sweeper")
    report: dict[str, Any] = sweeper.handler({"source": "aws.events"}, CONTEXT)
    return report


def test_a_delivery_is_signed_and_listed_and_a_failure_is_retried(
    manage: ModuleType, receiver: Receiver
) -> None:
    created = json.loads(_register(manage, receiver.url)["body"])
    event = completed_event()
    report = _record_and_send(event)
    assert report["succeeded"] == 1, report
    [(_, headers, body, _)] = receiver.received
    assert headers["VaultPay-Event-Id"] == event["id"] and headers["Content-Type"] == "application/json"
    assert verify_signature(headers["VaultPay-Signature"], created["secret"], body, now=int(time.time()))
    deliveries = load_handler("webhooks/deliveries")
    path = f"/v1/webhooks/{created['webhook_id']}/deliveries"

    def listed() -> list[dict[str, Any]]:
        params = {"webhook_id": created["webhook_id"]}
        event = proxy_event(
            "GET",
            path,
            user_id="usr_alice",
            resource="/v1/webhooks/{webhook_id}/deliveries",
            path_parameters=params,
        )
        items: list[dict[str, Any]] = json.loads(deliveries.handler(event, CONTEXT)["body"])["items"]
        return items

    [item] = listed()
    assert item["status"] == "SUCCEEDED" and item["attempts"] == 1 and item["last_status_code"] == 204
    # A failing receiver: the attempt is recorded and the delivery stays PENDING with a next attempt
    receiver.status = 500
    _record_and_send(completed_event())
    pending = [i for i in listed() if i["status"] == "PENDING"]
    assert len(pending) == 1 and pending[0]["last_status_code"] == 500 and pending[0]["next_attempt_at"]
    # Redelivering another user's delivery is 404; the owner's is 202
    redeliver = f"{path}/{item['delivery_id']}/redeliver"
    params = {"webhook_id": created["webhook_id"], "delivery_id": item["delivery_id"]}
    resource = "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"
    mine = deliveries.handler(
        proxy_event("POST", redeliver, user_id="usr_alice", resource=resource, path_parameters=params),
        CONTEXT,
    )
    theirs = deliveries.handler(
        proxy_event("POST", redeliver, user_id="usr_bob", resource=resource, path_parameters=params), CONTEXT
    )
    assert mine["statusCode"] == 202 and json.loads(mine["body"])["status"] == "PENDING"
    assert theirs["statusCode"] == 404


def test_the_feed_answers_the_callers_events_oldest_first(manage: ModuleType) -> None:
    from vaultpay.bootstrap.webhooks import delivery_service

    events = sorted((completed_event() for _ in range(3)), key=lambda e: e["id"])
    for event in events:
        delivery_service().record(event)
    feed = load_handler("webhooks/feed")
    page = feed.handler(proxy_event("GET", "/v1/events", user_id="usr_alice", query={"limit": "2"}), CONTEXT)
    body = json.loads(page["body"])
    assert [e["id"] for e in body["items"]] == [e["id"] for e in events[:2]] and body[
        "next_cursor"
    ] == events[1]["id"]
    rest = feed.handler(
        proxy_event(
            "GET", "/v1/events", user_id="usr_alice", query={"after": body["next_cursor"], "limit": "2"}
        ),
        CONTEXT,
    )
    assert [e["id"] for e in json.loads(rest["body"])["items"]] == [events[2]["id"]]
    other = feed.handler(proxy_event("GET", "/v1/events", user_id="usr_bob"), CONTEXT)
    assert json.loads(other["body"])["items"] == []
    bad = feed.handler(proxy_event("GET", "/v1/events", user_id="usr_alice", query={"after": "x"}), CONTEXT)
    assert bad["statusCode"] == 422 and json.loads(bad["body"])["code"] == "invalid_cursor"


def test_an_event_recorded_twice_makes_one_delivery(manage: ModuleType) -> None:
    from vaultpay.bootstrap.webhooks import delivery_service

    _register(manage, "http://127.0.0.1:9/x")
    event = completed_event()
    # A JetStream redelivery of the same event: the delivery exists, nothing is added
    assert delivery_service().record(event) == 1
    assert delivery_service().record(event) == 0

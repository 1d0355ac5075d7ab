"""FraudConsumeFunction against nats-server (JetStream, the fraud-workers consumer) and DynamoDB Local."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from support.handlers import load_handler
from support.lambda_context import FakeLambdaContext
from support.tables import create_table

from localcloud import services
from vaultpay.fraud.consumer import DURABLE, STREAM
from vaultpay.fraud.model import AmountHistory
from vaultpay.fraud.records import Review, ReviewStatus
from vaultpay.fraud.store import DynamoFraudStore
from vaultpay.shared.events import DomainEvent

pytestmark = pytest.mark.component
ROOT = Path(__file__).resolve().parents[3]
USER = "usr_dave"


LAMBDA_CONTEXT = FakeLambdaContext("vaultpay-test-FraudConsumeFunction", remaining_ms=50_000)


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port, monitor_port = services.free_port(), services.free_port()
    process = services.nats_server(port, monitor_port, tmp_path_factory.mktemp("fraud-nats"))
    process.start()
    try:
        process.wait_ready()
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.stop()


async def setup_stream(url: str) -> None:
    """A fresh VAULTPAY stream with fraud-workers as infra/nats/jetstream.json declares it (quicker acks)."""
    declared = next(
        c
        for c in json.loads((ROOT / "infra" / "nats" / "jetstream.json").read_text())["consumers"]
        if c["durable_name"] == DURABLE
    )
    nc = await nats.connect(url)
    js = nc.jetstream()
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_stream(STREAM)
    await js.add_stream(StreamConfig(name=STREAM, subjects=["vaultpay.>"], duplicate_window=120))
    await js.add_consumer(
        STREAM,
        ConsumerConfig(
            durable_name=DURABLE,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=1.0,
            max_deliver=3,
            filter_subjects=declared["filter_subjects"],
        ),
    )
    await nc.close()


async def publish(url: str, messages: list[tuple[str, bytes, str]]) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    for subject, payload, msg_id in messages:
        await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})
    await nc.close()


async def consumer_state(url: str) -> tuple[int, int]:
    nc = await nats.connect(url)
    info = await nc.jetstream().consumer_info(STREAM, DURABLE)
    await nc.close()
    return info.num_pending or 0, info.num_ack_pending or 0


def reset_caches() -> None:
    from vaultpay import bootstrap
    from vaultpay.bootstrap import fraud
    from vaultpay.events.jetstream import run_blocking

    if fraud.jetstream.cache_info().currsize:
        run_blocking(fraud.jetstream().close())
    bootstrap.reset()


@pytest.fixture
def consume(
    nats_url: str, dynamodb_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ModuleType, DynamoFraudStore]]:
    asyncio.run(setup_stream(nats_url))
    table = f"t-{uuid.uuid4().hex[:8]}-FraudTable"
    client = boto3.session.Session().client(
        "dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
    )  # fmt: skip
    create_table(client, "FraudTable", table)
    for name, value in {
        "FRAUD_TABLE": table,
        "NATS_URL": nats_url,
        "STAGE": "local",
        "AWS_ENDPOINT_URL": dynamodb_endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "POWERTOOLS_METRICS_NAMESPACE": "VaultPayTest",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    reset_caches()
    module = load_handler("fraud/consume")
    try:
        yield module, DynamoFraudStore(client, table)
    finally:
        reset_caches()


def cloudevent(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    return DomainEvent(
        type=event_type, source="/vaultpay/test", subject="x", data=data, correlation_id="corr", actor=USER
    ).cloudevent()


def test_logins_and_completed_transfers_reach_the_profile_once_and_everything_is_acked(
    consume: tuple[ModuleType, DynamoFraudStore], nats_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    app, store = consume
    # Given a login, two completed transfers (one published twice under another message id, as a replay
    # would), an account event the profile ignores, a declined transfer whose review waits, and a poison pill
    store.await_review(
        Review(
            transfer_id=f"tr_{'a' * 32}",
            user_id=USER,
            status=ReviewStatus.WAITING,
            created_at="2026-11-28T12:00:00.000Z",
            correlation_id="corr",
            task_token="secret-token",
        )
    )
    login = cloudevent("vaultpay.auth.login.succeeded", {"user_id": USER, "role": "customer",
                       "device_id": "daves-phone", "new_device": True, "family_id": "fam_1"})  # fmt: skip
    done = [
        cloudevent("vaultpay.transaction.completed", {"transfer_id": f"tr_{n:032x}", "user_id": USER,
                   "source_account_id": "acc_src", "destination_account_id": "acc_dst", "amount": amount,
                   "currency": "INR"})
        for n, amount in ((1, 250_000), (2, 10**12))
    ]  # fmt: skip
    other = cloudevent("vaultpay.account.created", {"account_id": "acc_1"})
    declined = cloudevent(
        "vaultpay.transaction.declined",
        {"transfer_id": f"tr_{'a' * 32}", "user_id": USER, "failure_reason": "review_timeout",
         "amount": 1, "currency": "INR"},
    )  # fmt: skip
    messages = [(e["type"], json.dumps(e).encode(), e["id"]) for e in (login, *done, other, declined)]
    messages.append((done[0]["type"], json.dumps(done[0]).encode(), "replayed-" + done[0]["id"]))
    messages.append(("vaultpay.transaction.completed", b"\xff not json", "poison"))
    asyncio.run(publish(nats_url, messages))
    # When the scheduled function runs
    report = app.handler({"source": "aws.events"}, LAMBDA_CONTEXT)
    # Then each event was applied once, in integers
    profile = store.get_profile(USER, "acc_dst")
    assert profile.history == AmountHistory.of([250_000, 10**12])
    assert profile.payee_known
    assert profile.first_seen_at("daves-phone") is not None
    review = store.get_review(f"tr_{'a' * 32}")
    assert review is not None and (review.status, review.task_token) == (ReviewStatus.CLOSED, None)
    assert (report["applied"], report["duplicates"], report["ignored"]) == (4, 1, 1)
    assert report["rejected"] == 3  # the poison pill, nak'd until max_deliver
    # And nothing waits for an ack; the device id never reached a log line
    assert asyncio.run(consumer_state(nats_url)) == (0, 0)
    assert "daves-phone" not in capfd.readouterr().out

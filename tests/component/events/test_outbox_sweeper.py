"""The sweeper end to end: a real nats-server, moto DynamoDB with the OutboxPending index, the handler."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws
from support.handlers import load_handler
from support.tables import create_table

from vaultpay.events.jetstream_config import apply_jetstream_config
from vaultpay.events.sweeper import rfc3339
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.outbox import PENDING
from vaultpay.shared.outbox_model import outbox_item

pytestmark = pytest.mark.component
TABLE = "vaultpay-sweeper-test"


@pytest.fixture(scope="module", autouse=True)
def applied(kit: Any) -> list[str]:
    return asyncio.run(apply_jetstream_config(kit.server.url, kit.config))


@pytest.fixture
def sweeper_app(nats: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    from vaultpay import bootstrap
    from vaultpay.bootstrap import events
    from vaultpay.events.jetstream import run_blocking

    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "NATS_CREDENTIALS_SECRET_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("NATS_URL", nats.url)
    monkeypatch.setenv("OUTBOX_TABLES", TABLE)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "relay")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "VaultPay")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    bootstrap.reset()
    module = load_handler("events/sweeper")
    with mock_aws():
        # AuthTable (template.yaml), with the sparse OutboxPending index the sweeper reads
        create_table(boto3.client("dynamodb", region_name="us-east-1"), "AuthTable", TABLE)
        try:
            yield module
        finally:
            run_blocking(events.nats_connection().close())
            bootstrap.reset()


def test_an_item_written_while_nats_was_down_is_published_once_by_the_sweeper(
    sweeper_app: ModuleType, kit: Any
) -> None:
    # Given an outbox item written ten minutes ago that the relay never published (NATS was down), and a
    # fresh one the rescue may still be handling, both marked pending by the rescue
    event_type = f"vaultpay.tests.swept_{uuid.uuid4().hex[:8]}"

    def event(n: int, age_s: float) -> DomainEvent:
        return DomainEvent(
            type=event_type,
            source="/vaultpay/tests",
            subject=f"usr_{n}",
            data={"user_id": f"usr_{n}"},
            correlation_id=f"corr-{n}",
            time=rfc3339(time.time() - age_s),
        )

    stranded, fresh = event(1, 600), event(2, 10)
    for e in (stranded, fresh):
        item = outbox_item(TABLE, e)
        item.pending = PENDING  # as the rescue of a given-up relay batch leaves it
        item.save()
    # When the scheduled sweeper runs, and runs again
    first = sweeper_app.handler({"source": "aws.events"}, kit.context())
    second = sweeper_app.handler({"source": "aws.events"}, kit.context())
    # Then the stranded event is on JetStream exactly once, and the fresh one was left for the relay
    assert first["published"] == 1 and first["marked"] == 1 and first["failed"] == 0
    assert second["found"] == 0 and second["published"] == 0
    assert kit.count(event_type) == 1
    # And the stranded item's pending marker is gone (it left the sparse index); the fresh one keeps it
    client = boto3.client("dynamodb", region_name="us-east-1")

    def item(e: DomainEvent) -> dict[str, Any]:
        key = {"pk": {"S": f"OUTBOX#{e.id}"}, "sk": {"S": "OUTBOX"}}
        return dict(client.get_item(TableName=TABLE, Key=key)["Item"])

    assert "pending" not in item(stranded) and item(stranded)["published"] == {"BOOL": True}
    assert item(fresh)["pending"] == {"S": "1"}

    async def stored(js: Any) -> Any:
        message = await js.get_last_msg("VAULTPAY", event_type)
        return message.headers

    assert kit.js(stored)["Nats-Msg-Id"] == stranded.id

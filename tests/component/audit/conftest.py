"""Real emulators for the audit component tests: DynamoDB Local, nats-server with JetStream, fresh tables."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from support.lambda_context import FakeLambdaContext
from support.tables import create_table

from localcloud import services
from vaultpay.audit.consumer import DURABLE, STREAM
from vaultpay.audit.store import DynamoDBAuditStore

ACK_WAIT_S = 1.0
MAX_DELIVER = 3
ADVISORY = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{STREAM}.{DURABLE}"
DLQ_STREAM = "VAULTPAY_DLQ_TEST"


def dynamodb_client(endpoint: str) -> Any:
    from botocore.config import Config

    from vaultpay_cli.target import local_client

    return local_client("dynamodb", endpoint, config=Config())


@dataclass
class AuditTable:
    """A fresh audit table (template.yaml's AuditTable) and a store over it."""

    endpoint: str
    name: str = field(default_factory=lambda: f"t-{uuid.uuid4().hex[:10]}-AuditTable")

    def __post_init__(self) -> None:
        self.client = dynamodb_client(self.endpoint)
        create_table(self.client, "AuditTable", self.name)

    def store(self) -> DynamoDBAuditStore:
        """A store of its own, as a separate Lambda container would have."""
        return DynamoDBAuditStore(dynamodb_client(self.endpoint), self.name)

    def items(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {"TableName": self.name}
        while True:
            response = self.client.scan(**request)
            items.extend(response["Items"])
            if "LastEvaluatedKey" not in response:
                return items
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]


@pytest.fixture
def audit_table(dynamodb_endpoint: str) -> AuditTable:
    return AuditTable(dynamodb_endpoint)


@dataclass
class Nats:
    url: str
    monitor: str


@pytest.fixture(scope="session")
def nats_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nats]:
    port, monitor_port = services.free_port(), services.free_port()
    process = services.nats_server(port, monitor_port, tmp_path_factory.mktemp("audit-nats"))
    process.start()
    try:
        process.wait_ready()
        yield Nats(f"nats://127.0.0.1:{port}", f"http://127.0.0.1:{monitor_port}")
    finally:
        process.stop()


async def setup_stream(url: str) -> None:
    """A fresh VAULTPAY stream with the audit-workers consumer, and a dead-letter stream of advisories."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    for name in (STREAM, DLQ_STREAM):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(name)
    await js.add_stream(StreamConfig(name=STREAM, subjects=["vaultpay.>"], duplicate_window=120))
    # The dead-letter stream of the real config is fed the same way: it captures the advisories.
    await js.add_stream(StreamConfig(name=DLQ_STREAM, subjects=[ADVISORY]))
    await js.add_consumer(
        STREAM,
        ConsumerConfig(
            durable_name=DURABLE,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT_S,
            max_deliver=MAX_DELIVER,
            filter_subject="vaultpay.>",
        ),
    )
    await nc.close()


async def publish(url: str, payloads: Sequence[tuple[str, bytes, str]]) -> list[int]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    sequences = []
    for subject, payload, msg_id in payloads:
        ack = await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})
        sequences.append(ack.seq)
    await nc.close()
    return sequences


def reset_audit_caches() -> None:
    """Everything a warm container caches starts over: settings, clients, the service, the connection."""
    from vaultpay import bootstrap
    from vaultpay.bootstrap import audit
    from vaultpay.events.jetstream import run_blocking

    if audit.jetstream.cache_info().currsize:
        run_blocking(audit.jetstream().close())
    bootstrap.reset()


LAMBDA_CONTEXT = FakeLambdaContext("vaultpay-test-audit", remaining_ms=60_000)

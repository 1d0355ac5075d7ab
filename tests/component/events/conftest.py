"""A real nats-server with JetStream per test module (free ports, a temp store), and helpers to drive it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
from boto3.dynamodb.types import TypeSerializer
from support.handlers import load_handler
from support.lambda_context import FakeLambdaContext

from localcloud.services import ManagedProcess, free_port, nats_server
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.outbox import outbox_attributes

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "infra" / "nats" / "jetstream.json"
T = TypeVar("T")


class NatsServer:
    """One nats-server process; stop() and start() again keep its port and its JetStream store."""

    def __init__(self, state_dir: Path) -> None:
        self.port = free_port()
        self.monitor_port = free_port()
        self.state_dir = state_dir
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = nats_server(self.port, self.monitor_port, self.state_dir)
        self.process.start()
        self.process.wait_ready()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def running(self) -> bool:
        return self.process is not None and self.process.running()


@pytest.fixture(scope="module")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """This module's nats-server, stopped at the end of the module (no process outlives its tests)."""
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Kit:
    """What the event tests share (importlib mode keeps test modules from importing each other)."""

    config = CONFIG

    def __init__(self, server: NatsServer) -> None:
        self.server = server

    def js(self, work: Callable[[Any], Awaitable[T]]) -> T:
        return with_jetstream(self.server.url, work)

    def count(self, subject: str) -> int:
        return subject_count(self.server.url, subject)

    record = staticmethod(lambda event, seq: outbox_record(event, seq))
    event = staticmethod(lambda event_type, n: domain_event(event_type, n))
    context = staticmethod(lambda: LAMBDA_CONTEXT)


@pytest.fixture(scope="module")
def kit(nats: NatsServer) -> Kit:
    return Kit(nats)


def with_jetstream(url: str, work: Callable[[Any], Awaitable[T]]) -> T:
    """Runs `work(js)` on a connection of its own (tests are synchronous: the relay has its own loop)."""
    import nats as nats_py

    async def main() -> T:
        client = await nats_py.connect(url, allow_reconnect=False, max_reconnect_attempts=1)
        try:
            return await work(client.jetstream())
        finally:
            await client.close()

    return asyncio.run(main())


def subject_count(url: str, subject: str) -> int:
    """Messages stored in VAULTPAY under exactly this subject."""

    async def count(js: Any) -> int:
        info = await js.stream_info("VAULTPAY", subjects_filter=subject)
        return int((info.state.subjects or {}).get(subject, 0))

    return with_jetstream(url, count)


def outbox_record(event: DomainEvent, seq: int) -> dict[str, Any]:
    """The stream record Lambda delivers for the event's outbox item."""
    serializer = TypeSerializer()
    image = {k: serializer.serialize(v) for k, v in outbox_attributes(event, now=1_795_860_930).items()}
    return {
        "eventID": f"evt-{seq}",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/vaultpay-test/stream/2026",
        "dynamodb": {
            "Keys": {"pk": image["pk"], "sk": image["sk"]},
            "NewImage": image,
            "SequenceNumber": f"{seq:021d}",
            "SizeBytes": len(json.dumps(image)),
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


def domain_event(event_type: str, n: int) -> DomainEvent:
    return DomainEvent(
        type=event_type,
        source="/vaultpay/tests",
        subject=f"acc_{n}",
        data={"account_id": f"acc_{n}", "amount": 100 * n, "currency": "INR"},
        correlation_id=f"corr-{n}",
        actor="usr_test",
    )


LAMBDA_CONTEXT = FakeLambdaContext("vaultpay-test-RelayFunction", remaining_ms=30_000)


@pytest.fixture(scope="module")
def relay_app(nats: NatsServer) -> Iterator[ModuleType]:
    """The relay handler wired to this module's server, with a fresh process-wide connection."""
    from vaultpay import bootstrap
    from vaultpay.bootstrap import events
    from vaultpay.events.jetstream import run_blocking

    with pytest.MonkeyPatch.context() as env:
        env.setenv("NATS_URL", nats.url)
        env.delenv("NATS_CREDENTIALS_SECRET_ARN", raising=False)
        env.setenv("POWERTOOLS_SERVICE_NAME", "relay")
        env.setenv("POWERTOOLS_METRICS_NAMESPACE", "VaultPay")
        env.setenv("POWERTOOLS_TRACE_DISABLED", "true")
        bootstrap.reset()
        try:
            yield load_handler("events/relay")
        finally:
            run_blocking(events.nats_connection().close())
            bootstrap.reset()

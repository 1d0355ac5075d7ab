"""The health function's NATS check against a real nats-server: the event bus report JetStream answers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support.logs import RecordingLog

from vaultpay.events.jetstream_config import apply_jetstream_config
from vaultpay.ops.checks import NatsCheck
from vaultpay.ops.health import HealthService

pytestmark = pytest.mark.component


def test_the_check_fails_without_the_event_stream_and_reports_its_single_node_once_it_exists(
    kit: Any,
) -> None:
    log = RecordingLog()
    service = HealthService([NatsCheck(kit.server.url, timeout_s=1.0)], version="t", timeout_s=3.0, log=log)
    # Given a server with JetStream but no VAULTPAY stream yet: the check is an error, with no report
    missing = service.run()
    assert missing.checks == {"nats": "error"} and "event_bus" not in missing.to_body()
    assert [extra["check"] for _, extra in log.warnings] == ["nats"]
    # When the stream is created as the deployment does
    asyncio.run(apply_jetstream_config(kit.server.url, kit.config))
    # Then the single node (named vaultpay-local by the test server) leads the stream's one replica
    report = service.run()
    assert report.http_status == 200
    assert report.to_body()["event_bus"] == {
        "stream": "VAULTPAY",
        "leader": "vaultpay-local",
        "replicas": 1,
        "replicas_current": 1,
        "nodes_up": 1,
    }

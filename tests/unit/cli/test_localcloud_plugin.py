"""VaultPay's plugin for the local cloud (vaultpay_cli.localcloud_plugin): the ops console on the edge, and no
JetStream work when the repository has no JetStream configuration."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from localcloud.plugins import NatsReady
from localcloud.spec import FunctionSpec
from vaultpay_cli.localcloud_plugin import VaultPayPlugin

pytestmark = pytest.mark.unit


class FakeCloud:
    """What a plugin reads of the running local cloud (localcloud.plugins.RunningCloud)."""

    def __init__(self) -> None:
        self.reported: list[tuple[str, str, str]] = []

    @property
    def edge_url(self) -> str:
        return "http://127.0.0.1:4566"

    def status(self) -> dict[str, Any]:
        return {"lambda": {}, "streams": [], "stacks": []}

    def functions(self) -> dict[str, FunctionSpec]:
        return {}

    @property
    def report(self) -> Any:
        return lambda piece, url, state: self.reported.append((piece, url, state))


def test_the_ops_console_is_mounted_on_the_edge_and_announced(tmp_path: Path) -> None:
    # Given an edge app being built and VaultPay's plugin
    app, cloud = web.Application(), FakeCloud()
    # When the plugin mounts its routes
    VaultPayPlugin(tmp_path).mount_edge(app, cloud)
    # Then the console's page and API are routed, and the start-up report names its URL
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert {"/_ops", "/_ops/", "/_ops/api/transfers", "/_ops/api/metrics"} <= paths
    assert cloud.reported == [
        ("Ops console", "http://127.0.0.1:4566/_ops/", "transfers, executions, logs, alerts")
    ]


def test_nothing_is_applied_to_nats_without_a_jetstream_configuration(tmp_path: Path) -> None:
    # Given a repository root without infra/nats/jetstream.json, and NATS URLs nothing listens on
    reported: list[tuple[str, str, str]] = []
    ready = NatsReady(
        urls=["tls://127.0.0.1:1"], nodes=1, operator={}, report=lambda *line: reported.append(line)
    )
    # When NATS is ready
    asyncio.run(VaultPayPlugin(tmp_path).nats_ready(ready))
    # Then no connection was attempted and nothing was reported
    assert reported == []

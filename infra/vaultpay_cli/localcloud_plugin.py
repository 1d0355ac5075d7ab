"""VaultPay's part of the local cloud (localcloud.plugins): its JetStream streams, the ops console."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from localcloud.plugins import NatsReady, Plugin, RunningCloud

if TYPE_CHECKING:
    from aiohttp import web


class VaultPayPlugin(Plugin):
    """What `vaultpay local up` plugs into the local cloud it starts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.jetstream_config = root / "infra" / "nats" / "jetstream.json"

    async def nats_ready(self, nats: NatsReady) -> None:
        """Streams and consumers as code (infra/nats/jetstream.json), the same file a deploy applies."""
        if not self.jetstream_config.exists():
            return
        from vaultpay.events.jetstream_config import apply_jetstream_config

        done = await apply_jetstream_config(
            nats.urls, self.jetstream_config, nodes=nats.nodes, **nats.operator
        )
        nats.report("JetStream", str(self.jetstream_config.relative_to(self.root)), "; ".join(done))

    def mount_edge(self, app: web.Application, cloud: RunningCloud) -> None:
        """The ops console, /_ops/ on the edge (vaultpay_cli.console)."""
        from vaultpay_cli.console import OpsConsole, add_ops_routes

        add_ops_routes(app, OpsConsole(cloud))
        cloud.report("Ops console", cloud.edge_url + "/_ops/", "transfers, executions, logs, alerts")

"""The one hook through which a product plugs into the local cloud: set up NATS, add routes to the edge.

The local cloud knows nothing of the product that runs on it. Whoever builds the `LocalCloud` (a product's
launcher) passes its plugins in: `LocalCloud(config, plugins=[MyPlugin()])`. Plugins live in the local cloud's
process, beside the edge, so an object passed in is all the wiring there is: the other processes the local
cloud starts (Lambda workers, moto, DynamoDB Local, nats-server) never run product code of its choosing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from aiohttp import web

    from localcloud.spec import FunctionSpec

Reporter = Callable[[str, str, str], None]  # (piece, url, state), a line of the launcher's start-up report


class RunningCloud(Protocol):
    """What a plugin may read of the running local cloud (localcloud.cloud.LocalCloud)."""

    @property
    def edge_url(self) -> str: ...

    def status(self) -> dict[str, Any]: ...

    def functions(self) -> dict[str, FunctionSpec]: ...

    @property
    def report(self) -> Reporter: ...


@dataclass(frozen=True)
class NatsReady:
    """The NATS nodes, up and reachable, and how to log in to them as the operator (TLS, user, password)."""

    urls: list[str]
    nodes: int
    operator: dict[str, Any]  # keyword arguments for `nats.connect`
    report: Reporter


class Plugin:
    """A product's part of the local cloud; override what it needs, the rest does nothing."""

    async def nats_ready(self, nats: NatsReady) -> None:
        """Called once every NATS node is ready, before any template is deployed (streams, consumers)."""

    def mount_edge(self, app: web.Application, cloud: RunningCloud) -> None:
        """Adds routes to the edge before it serves; they take precedence over the AWS catch-all."""

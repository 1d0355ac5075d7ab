"""Health check adapters: DynamoDB, Step Functions and NATS, each probed with the cheapest call it answers
(for NATS, the event stream's info: it proves JetStream answers and tells who leads the stream's replicas)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vaultpay.ops.health import CheckFailed

# The event stream whose cluster the NATS check reports (the health user may read this stream's info only).
EVENTS_STREAM = "VAULTPAY"


@functools.cache
def _blocking_pool() -> ThreadPoolExecutor:
    # boto3 blocks, so its calls run in threads. Not asyncio.to_thread: asyncio.run() joins the default
    # executor on exit, so one hung call would hold the response past its timeout. A pool of our own is
    # never joined; botocore's own connect/read timeouts end a stuck thread soon after.
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="health-check")


async def _call_blocking(function: Any, /, **kwargs: Any) -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(_blocking_pool(), functools.partial(function, **kwargs))


class DynamoDBCheck:
    """DynamoDB answers ListTables (needs only dynamodb:ListTables, no table's data)."""

    name = "dynamodb"

    def __init__(self, client: Any) -> None:
        self._client = client

    async def run(self) -> None:
        await _call_blocking(self._client.list_tables, Limit=1)


class StepFunctionsCheck:
    """Step Functions answers ListStateMachines (needs only states:ListStateMachines)."""

    name = "stepfunctions"

    def __init__(self, client: Any) -> None:
        self._client = client

    async def run(self) -> None:
        await _call_blocking(self._client.list_state_machines, maxResults=1)


async def _ignore_error(_exc: Exception) -> None:
    # nats-py logs every connection error through this callback; the health service reports the failure.
    return None


def event_bus_report(info: Any, *, server_name: str | None = None) -> dict[str, object]:
    """What JetStream's StreamInfo says of the stream's replicas, as the health report shows it.

    A clustered stream's info names its leader and lists the other peers (the leader is never among them),
    each `current` (caught up with the leader) or not and `offline` or not. A stream without cluster info is
    on a single node, which answered, so it leads: `server_name` (from the server's INFO) names it.
    Raises CheckFailed, with the report, when the stream has no leader: JetStream then accepts no writes.
    """
    cluster = getattr(info, "cluster", None)
    if cluster is None:
        return {
            "stream": info.config.name,
            "leader": server_name or None,
            "replicas": 1,
            "replicas_current": 1,
            "nodes_up": 1,
        }
    peers = list(cluster.replicas or ())
    leader = cluster.leader or None
    led = 1 if leader is not None else 0
    report: dict[str, object] = {
        "stream": info.config.name,
        "leader": leader,
        "replicas": info.config.num_replicas or led + len(peers),
        "replicas_current": led + sum(1 for peer in peers if peer.current),
        "nodes_up": led + sum(1 for peer in peers if not peer.offline),
    }
    if leader is None:
        raise CheckFailed(f"stream {report['stream']} has no leader", details=report)
    # A lagging or offline replica leaves the check ok: the leader and a quorum still take writes, and the
    # numbers show what is missing.
    return report


class NatsCheck:
    """NATS accepts a connection and JetStream answers for the event stream: the report says who leads it,
    how many replicas it should have, how many are current and how many of its nodes are up."""

    name = "nats"
    details_key = "event_bus"

    def __init__(
        self,
        servers: str | Sequence[str],
        *,
        timeout_s: float,
        connect_options: Callable[[], Mapping[str, Any]] | None = None,
        stream: str = EVENTS_STREAM,
    ) -> None:
        """`connect_options`: the health function's own login and TLS (read at each check: a rotated
        password reaches the next one)."""
        self._servers = [servers] if isinstance(servers, str) else list(servers)
        # nats-py takes whole seconds.
        self._timeout = max(1, round(timeout_s))
        self._connect_options = connect_options
        self._stream = stream

    async def run(self) -> dict[str, object]:
        from vaultpay.events.jetstream import open_connection, server_info

        options = dict(self._connect_options()) if self._connect_options is not None else {}
        client = await open_connection(
            self._servers, name="vaultpay-health", timeout_s=self._timeout, error_cb=_ignore_error, **options
        )
        try:
            # The stream info request is itself the round trip a PING would be: no flush before it.
            info = await client.jetstream(timeout=self._timeout).stream_info(self._stream)
            server_name = (server_info(client) or {}).get("server_name")
            return event_bus_report(info, server_name=server_name if isinstance(server_name, str) else None)
        finally:
            await client.close()

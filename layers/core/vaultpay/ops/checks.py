"""Health check adapters: DynamoDB, Step Functions and NATS, each probed with the cheapest call it answers."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any


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


class NatsCheck:
    """NATS accepts a connection and answers a PING (flush) within the timeout."""

    name = "nats"

    def __init__(
        self,
        servers: str | Sequence[str],
        *,
        timeout_s: float,
        connect_options: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        """`connect_options`: the health function's own login and TLS (read at each check: a rotated
        password reaches the next one)."""
        self._servers = [servers] if isinstance(servers, str) else list(servers)
        # nats-py takes whole seconds.
        self._timeout = max(1, round(timeout_s))
        self._connect_options = connect_options

    async def run(self) -> None:
        import nats

        options = dict(self._connect_options()) if self._connect_options is not None else {}
        client = await nats.connect(
            self._servers,
            name="vaultpay-health",
            connect_timeout=self._timeout,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=_ignore_error,
            **options,
        )
        try:
            await client.flush(timeout=self._timeout)
        finally:
            await client.close()

"""The relay's Publisher on NATS JetStream: publish_async for the whole batch, then wait for every PubAck."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from vaultpay.events.jetstream import NatsConnection
from vaultpay.events.relay import OutboundMessage, Published, PublishResult
from vaultpay.shared.errors import TransientError

# How long a batch waits for its PubAcks once the last message is written. JetStream acknowledges in
# milliseconds; anything slower is an outage, and the stream mapping's retry handles it.
DEFAULT_ACK_TIMEOUT_S = 5.0


class JetStreamPublisher:
    """Publishes over the process's kept connection; a lost connection fails what is still unacknowledged
    at once instead of waiting out the timeout, and is replaced on the next batch."""

    def __init__(self, connection: NatsConnection, *, ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S) -> None:
        self._connection = connection
        self._ack_timeout_s = ack_timeout_s

    async def publish(self, messages: Sequence[OutboundMessage]) -> Sequence[PublishResult]:
        if not messages:
            return []
        try:
            js = await self._connection.jetstream()
        except TransientError as exc:
            return [TransientError(str(exc)) for _ in messages]
        lost = self._connection.lost
        futures: list[asyncio.Future[Any]] = []
        write_error: Exception | None = None
        for message in messages:
            try:
                futures.append(
                    await js.publish_async(message.subject, message.payload, headers=dict(message.headers))
                )
            except Exception as exc:  # the connection closed under us, or the client refused the message
                write_error = exc
                break
        await self._wait(futures, lost)
        results: list[PublishResult] = [self._result(future, lost) for future in futures]
        if write_error is not None:
            reason = f"not sent: {type(write_error).__name__}"
            results += [TransientError(reason) for _ in range(len(messages) - len(futures))]
        if lost.is_set() or write_error is not None:
            await self._connection.reset()
        else:
            self._connection.touch()
        return results

    async def _wait(self, futures: list[asyncio.Future[Any]], lost: asyncio.Event) -> None:
        if not futures:
            return
        acks: asyncio.Future[Any] = asyncio.gather(*futures, return_exceptions=True)
        lost_waiter: asyncio.Future[Any] = asyncio.ensure_future(lost.wait())
        try:
            await asyncio.wait(
                {acks, lost_waiter}, timeout=self._ack_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            lost_waiter.cancel()
            if not acks.done():
                # Cancels the futures still waiting; nats-py then forgets them and frees their slots.
                acks.cancel()
            await asyncio.gather(acks, lost_waiter, return_exceptions=True)

    def _result(self, future: asyncio.Future[Any], lost: asyncio.Event) -> PublishResult:
        if future.cancelled():
            if lost.is_set():
                return TransientError("the NATS connection was lost before the PubAck")
            return TransientError(f"no PubAck within {self._ack_timeout_s:g} s")
        error = future.exception()
        if error is not None:
            # E.g. no stream captures the subject (a configuration fault that retries will not mend, so it
            # ends in the on-failure queue), or the stream is full and refuses new messages.
            description = getattr(error, "description", None)
            detail = f"{type(error).__name__}: {description}" if description else type(error).__name__
            return TransientError(f"JetStream refused the message ({detail})")
        ack = future.result()
        return Published(stream=str(ack.stream), seq=int(ack.seq), duplicate=bool(ack.duplicate))

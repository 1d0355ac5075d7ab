"""A JetStream publisher for tests without a server: acks every message (or refuses all while `down`), and
recognises a repeated Nats-Msg-Id as a duplicate, as the stream's de-duplication window does."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from vaultpay.events.relay import MSG_ID_HEADER, OutboundMessage, Published, PublishResult
from vaultpay.shared.errors import TransientError


class FakeJetStream:
    def __init__(self, *, down: bool = False, stored: Iterable[str] = ()) -> None:
        self.down = down
        self.stored: list[str] = list(stored)  # message ids, in the order the stream stored them

    async def publish(self, messages: Sequence[OutboundMessage]) -> Sequence[PublishResult]:
        results: list[PublishResult] = []
        for message in messages:
            msg_id = message.headers[MSG_ID_HEADER]
            if self.down:
                results.append(TransientError("nats down"))
            elif msg_id in self.stored:
                results.append(Published("VAULTPAY", self.stored.index(msg_id) + 1, duplicate=True))
            else:
                self.stored.append(msg_id)
                results.append(Published("VAULTPAY", len(self.stored), duplicate=False))
        return results

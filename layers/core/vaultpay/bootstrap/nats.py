"""A function's NATS connection, as its own NATS user, from its settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vaultpay.bootstrap.settings import NatsServer
    from vaultpay.events.jetstream import NatsConnection


def nats_connection(settings: NatsServer, *, name: str) -> NatsConnection:
    """A connection (opened lazily, at its first use) to NATS_URL with NATS_TLS_CA, logging in as the user in
    NATS_CREDENTIALS_SECRET_ARN (which may do only what the function needs: publish for the relay, read its
    durable for a consumer). `name` shows in the server's connection list."""
    from vaultpay.events.jetstream import NatsConnection
    from vaultpay.shared.observability import get_logger

    return NatsConnection.from_environ(settings.nats_environ, name=name, log=get_logger())

"""The relay's connection to a nats-server that requires a password: it logs in; a wrong one is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcloud.services import ManagedProcess, free_port, nats_server_binary, port_open
from vaultpay.events.jetstream import NatsConnection, SecretCredentials, run_blocking
from vaultpay.shared.errors import TransientError
from vaultpay.shared.secrets import SecretCache

pytestmark = pytest.mark.component
USER, PASSWORD = "relay", "correct-horse-battery-staple"


@pytest.fixture(scope="module")
def secured_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port, monitor = free_port(), free_port()
    log = Path(tmp_path_factory.mktemp("nats-auth")) / "nats.log"
    process = ManagedProcess(
        name="NATS with a password",
        argv=[
            *(nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor)),
            *("--user", USER, "--pass", PASSWORD),
        ],
        log_file=log,
        ready=lambda: port_open(port),
    )
    process.start()
    try:
        process.wait_ready()
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.stop()


class FakeSecretsManager:
    def __init__(self, value: str) -> None:
        self.value = value
        self.reads = 0

    def get_secret_value(self, SecretId: str, VersionStage: str) -> dict[str, str]:
        self.reads += 1
        return {"SecretString": self.value}


def _connection(url: str, secrets: FakeSecretsManager) -> NatsConnection:
    return NatsConnection(
        [url], name="test-relay", credentials=SecretCredentials(SecretCache(secrets), "arn:x")
    )


def test_the_connection_logs_in_with_the_secrets_user_and_password(secured_url: str) -> None:
    secrets = FakeSecretsManager(json.dumps({"user": USER, "password": PASSWORD}))
    connection = _connection(secured_url, secrets)

    async def ping() -> bool:
        client = await connection.client()
        await client.flush(timeout=2)
        connected = bool(client.is_connected)
        await connection.close()
        return connected

    assert run_blocking(ping())


def test_a_refused_login_is_transient_says_why_and_reads_the_secret_again_next_time(secured_url: str) -> None:
    secrets = FakeSecretsManager(json.dumps({"user": USER, "password": "an-old-password"}))
    connection = _connection(secured_url, secrets)
    with pytest.raises(TransientError, match="refused the credentials") as caught:
        run_blocking(connection.client())
    assert "an-old-password" not in str(caught.value) and secured_url not in str(caught.value)
    # The secret was rotated meanwhile: the next attempt reads it again instead of the cached old value.
    secrets.value = json.dumps({"user": USER, "password": PASSWORD})

    async def connect_and_close() -> None:
        await connection.client()
        await connection.close()

    run_blocking(connect_and_close())
    assert secrets.reads == 2

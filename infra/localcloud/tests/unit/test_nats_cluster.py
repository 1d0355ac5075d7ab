"""The local NATS cluster's plan and configuration (localcloud.nats_cluster), without starting a server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from localcloud.nats_cluster import NatsCluster
from localcloud.nats_security import NatsSecurity
from localcloud.services import LocalCloudError

pytestmark = pytest.mark.unit


def plan(state_dir: Path, size: int, port: int = 4222, monitor_port: int = 8222) -> NatsCluster:
    return NatsCluster.plan(
        NatsSecurity(state_dir), state_dir, size=size, port=port, monitor_port=monitor_port
    )


def test_three_nodes_count_their_ports_up_from_the_defaults(tmp_path: Path) -> None:
    cluster = plan(tmp_path, 3)
    assert [n.name for n in cluster.nodes] == [f"vaultpay-local-{i}" for i in (1, 2, 3)]
    assert [(n.port, n.monitor_port, n.route_port) for n in cluster.nodes] == [
        (4222, 8222, 6222),
        (4223, 8223, 6223),
        (4224, 8224, 6224),
    ]
    assert cluster.url == "tls://127.0.0.1:4222,tls://127.0.0.1:4223,tls://127.0.0.1:4224"
    assert cluster.ports()["nats_route-3"] == 6224
    # Each node keeps a store of its own, apart from a single node's
    stores = {n.store_dir for n in cluster.nodes}
    assert len(stores) == 3 and tmp_path / "jetstream" not in stores


def test_a_single_node_keeps_the_names_and_store_it_always_had(tmp_path: Path) -> None:
    [node] = plan(tmp_path, 1).nodes
    assert (node.name, node.key, node.route_port, node.store_dir) == (
        "vaultpay-local",
        "nats",
        None,
        tmp_path / "jetstream",
    )


@pytest.mark.parametrize("size", [0, 2, 4, 7])
def test_only_a_quorum_size_is_a_cluster(tmp_path: Path, size: int) -> None:
    with pytest.raises(LocalCloudError, match="1, 3 or 5"):
        plan(tmp_path, size)


def test_a_state_dir_refuses_the_other_topology_unless_it_keeps_nothing(tmp_path: Path) -> None:
    plan(tmp_path, 1).check_topology(persist=True)
    with pytest.raises(LocalCloudError, match=r"--nats-cluster 1.*--fresh"):
        plan(tmp_path, 3).check_topology(persist=True)
    plan(tmp_path, 1).check_topology(persist=True)  # as before: fine
    plan(tmp_path, 3).check_topology(persist=False)  # --in-memory: nothing is kept, nothing to protect


def test_a_state_dir_from_before_the_marker_counts_as_a_single_node(tmp_path: Path) -> None:
    (tmp_path / "jetstream" / "jetstream").mkdir(parents=True)
    with pytest.raises(LocalCloudError, match="1 NATS node"):
        plan(tmp_path, 3).check_topology(persist=True)


def test_each_node_routes_to_every_node_over_mutual_tls_with_a_ca_of_their_own(tmp_path: Path) -> None:
    cluster = plan(tmp_path, 3, port=0, monitor_port=0)
    cluster.build()
    security = cluster.security
    route_ports = sorted(n.route_port for n in cluster.nodes if n.route_port is not None)
    for node in cluster.nodes:
        config = json.loads((security.dir / f"{node.name}.conf").read_text())
        assert config["server_name"] == node.name
        assert config["listen"] == f"127.0.0.1:{node.port}"
        assert config["tls"]["cert_file"] == str(security.cert_file)  # clients: TLS only
        routes = config["cluster"]
        assert routes["name"] == "vaultpay-local" and routes["listen"] == f"127.0.0.1:{node.route_port}"
        assert sorted(int(r.rsplit(":", 1)[1]) for r in routes["routes"]) == route_ports
        assert routes["tls"]["ca_file"] == str(security.route_ca_file)
        assert config["jetstream"]["store_dir"] == str(node.store_dir)
    # The route certificate serves both ends of a route; the clients' CA signed none of it
    route = x509.load_pem_x509_certificate(security.route_cert_file.read_bytes())
    usages = route.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)
    client_ca = x509.load_pem_x509_certificate(security.ca_file.read_bytes())
    assert route.issuer != client_ca.subject
    assert oct(security.route_key_file.stat().st_mode & 0o777) == "0o600"


def test_the_server_certificate_names_the_host_as_a_container_sees_it_and_is_kept_across_starts(
    tmp_path: Path,
) -> None:
    # Given a first start
    from localcloud.nats_security import certificate_names

    security = NatsSecurity(tmp_path)
    security.ensure()
    first = security.ca_pem()

    # Then SAM's containers (Docker Desktop) may dial a node by host.docker.internal, and this machine by
    # its loopback names
    assert {"localhost", "127.0.0.1", "host.docker.internal"} <= certificate_names(security.cert_file)
    # And a second start keeps the same CA (every client and function trusts it)
    security.ensure()
    assert security.ca_pem() == first


def test_certificates_from_before_the_container_name_are_made_again(tmp_path: Path) -> None:
    # Given a state folder whose server certificate names only localhost (as made before)
    from cryptography import x509 as x509_
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from localcloud.nats_security import certificate_names

    security = NatsSecurity(tmp_path)
    security.ensure()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509_.Name([x509_.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    import datetime

    now = datetime.datetime.now(datetime.UTC)
    old = (
        x509_.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509_.SubjectAlternativeName([x509_.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    security.cert_file.write_bytes(old.public_bytes(serialization.Encoding.PEM))
    before = security.ca_pem()

    # When the local cloud starts again
    security.ensure()

    # Then it has a certificate with every name, from a new CA
    assert "host.docker.internal" in certificate_names(security.cert_file)
    assert security.ca_pem() != before

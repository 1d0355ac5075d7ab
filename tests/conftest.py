"""Shared fixtures: the repository root and one local cloud for every component and e2e test that asks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cloud import RunningCloud

from localcloud import services

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_TEMPLATE = ROOT / "tests" / "fixtures" / "localcloud" / "template.yaml"


# One emulator per test module that asks for it (a module's tables and streams start empty).
@pytest.fixture(scope="module")
def dynamodb_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = services.free_port()
    process = services.dynamodb_local(port, tmp_path_factory.mktemp("dynamodb"))
    process.start()
    try:
        process.wait_ready()
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = services.free_port()
    process = services.moto_server(port, port, tmp_path_factory.mktemp("moto"))
    process.start()
    try:
        process.wait_ready()
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


@pytest.fixture(scope="session")
def local_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCloud]:
    """The project's template plus the local cloud's own test template, on free ports of its own, with NATS
    as a three-node cluster."""
    from support.cloud import CloudProcess

    cloud = CloudProcess(
        tmp_path_factory.mktemp("localcloud"),
        "--in-memory",
        # NATS as in production: a three-node JetStream cluster, three replicas (the bank test kills a node).
        "--nats-cluster", "3",
        "--template", str(ROOT / "template.yaml"), "--template", str(FIXTURE_TEMPLATE),
        # A signed-out session's tokens end within this (test_sessions.py waits for it).
        "--parameter", "SessionCheckSeconds=2",
    )  # fmt: skip
    state = cloud.start()
    try:
        yield RunningCloud(state, cloud.state_dir)
    finally:
        cloud.stop()

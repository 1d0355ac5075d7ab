"""Shared fixtures: the repository root and one local cloud for every component and e2e test that asks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcloud import services

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_TEMPLATE = ROOT / "tests" / "fixtures" / "localcloud" / "template.yaml"


class RunningCloud:
    """Endpoints of a local cloud started for the tests, and boto3 clients against its edge."""

    def __init__(self, state: dict[str, Any], state_dir: Path) -> None:
        self.state = state
        self.state_dir = state_dir
        self.edge = state["endpoints"]["edge"]
        self.api = state["endpoints"]["api"]
        self.apis: dict[str, str] = state["endpoints"]["apis"]
        self.nats = state["endpoints"]["nats"]

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.edge,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def resource(self, service: str) -> Any:
        import boto3

        return boto3.resource(
            service,
            endpoint_url=self.edge,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def function_name(self, logical_id: str) -> str:
        for name, info in self.state["functions"].items():
            if info["logical_id"] == logical_id:
                return str(name)
        raise KeyError(logical_id)

    def api_url(self, logical_id: str) -> str:
        return next(url for key, url in self.apis.items() if key.endswith("/" + logical_id))


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
    """The project's template plus the local cloud's own test template, on free ports of its own."""
    from support.cloud import CloudProcess

    cloud = CloudProcess(
        tmp_path_factory.mktemp("localcloud"),
        "--in-memory",
        "--template", str(ROOT / "template.yaml"), "--template", str(FIXTURE_TEMPLATE),
        # A signed-out session's tokens end within this (test_sessions.py waits for it).
        "--parameter", "SessionCheckSeconds=2",
    )  # fmt: skip
    state = cloud.start()
    try:
        yield RunningCloud(state, cloud.state_dir)
    finally:
        cloud.stop()

"""Shared fixtures: the repository root and one local cloud for every component and e2e test that asks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cloud import RunningCloud

from localcloud.testing import dynamodb_endpoint, moto_endpoint

__all__ = ["dynamodb_endpoint", "moto_endpoint"]  # one emulator per test module that asks for it

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_TEMPLATE = ROOT / "tests" / "fixtures" / "localcloud" / "template.yaml"


@pytest.fixture(scope="session")
def local_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCloud]:
    """The project's template plus the local cloud's own test template, on free ports of its own, with NATS
    as a three-node cluster, watching for code changes (hot reload)."""
    import shutil

    from support.cloud import CloudProcess

    # A copy of the test template, which the hot reload test edits (tests/component/localcloud/test_watch.py).
    fixture = tmp_path_factory.mktemp("fixture") / FIXTURE_TEMPLATE.parent.name
    shutil.copytree(FIXTURE_TEMPLATE.parent, fixture)
    cloud = CloudProcess(
        tmp_path_factory.mktemp("localcloud"),
        "--in-memory",
        # NATS as in production: a three-node JetStream cluster, three replicas (the bank test kills a node).
        "--nats-cluster", "3",
        "--watch",
        "--template", str(ROOT / "template.yaml"), "--template", str(fixture / FIXTURE_TEMPLATE.name),
        # A signed-out session's tokens end within this (test_sessions.py waits for it).
        "--parameter", "SessionCheckSeconds=2",
    )  # fmt: skip
    state = cloud.start()
    try:
        yield RunningCloud(state, cloud.state_dir)
    finally:
        cloud.stop()

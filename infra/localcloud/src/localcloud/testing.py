"""pytest fixtures for tests that need one emulator: DynamoDB Local or moto's server, per test module.

A conftest brings them in by importing them (`from localcloud.testing import dynamodb_endpoint`); pytest is
then needed, which the package does not require (its `testing` extra does).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localcloud import services


# One emulator per test module that asks for it (a module's tables and streams start empty).
@pytest.fixture(scope="module")
def dynamodb_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = services.free_port()
    yield from _serve(services.dynamodb_local(port, tmp_path_factory.mktemp("dynamodb")), port)


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = services.free_port()
    yield from _serve(services.moto_server(port, port, tmp_path_factory.mktemp("moto")), port)


def _serve(process: services.ManagedProcess, port: int) -> Iterator[str]:
    process.start()
    try:
        process.wait_ready()
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()

"""`vaultpay local env-vars`: the SAM --env-vars document built from the local cloud's state and its Lambda
API's configurations (pure; the command against a running cloud is in tests/component/test_cli.py)."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from vaultpay_cli.local_env import container_view, env_vars_document

pytestmark = pytest.mark.unit

STATE = {
    "endpoints": {"edge": "http://127.0.0.1:4566"},
    "functions": {
        "vaultpay-HealthFunction": {"logical_id": "HealthFunction"},
        "fixtures-HealthFunction": {"logical_id": "HealthFunction"},
        "fixtures-SinkFunction": {"logical_id": "SinkFunction"},
    },
}


def _configuration(name: str, **variables: str) -> dict[str, Any]:
    return {"FunctionName": name, "Environment": {"Variables": variables}}


def test_every_loopback_url_points_at_the_host_as_a_container_sees_it() -> None:
    nats = "tls://127.0.0.1:4222,tls://127.0.0.1:4223,tls://localhost:4224"

    assert container_view(nats, "host.docker.internal") == (
        "tls://host.docker.internal:4222,tls://host.docker.internal:4223,tls://host.docker.internal:4224"
    )
    assert container_view("http://[::1]:8000/x", "172.17.0.1") == "http://172.17.0.1:8000/x"
    # Values that are not loopback URLs stay as they are
    for value in ("vaultpay-AccountsTable", "https://kms.ap-south-1.amazonaws.com", "127.0.0.1"):
        assert container_view(value, "host.docker.internal") == value


def test_a_stacks_functions_get_the_workers_variables_and_their_own() -> None:
    configurations = [
        _configuration(
            "vaultpay-HealthFunction", POWERTOOLS_SERVICE_NAME="ops", NATS_URL="tls://127.0.0.1:4222"
        ),
        _configuration("fixtures-SinkFunction"),
    ]

    document = env_vars_document(STATE, configurations, "host.docker.internal", "vaultpay")

    assert list(document) == ["HealthFunction"]
    health = document["HealthFunction"]
    assert health["AWS_ENDPOINT_URL"] == "http://host.docker.internal:4566"
    assert health["NATS_URL"] == "tls://host.docker.internal:4222"
    assert (health["POWERTOOLS_SERVICE_NAME"], health["AWS_ACCESS_KEY_ID"]) == ("ops", "test")
    assert "AWS_REGION" not in health  # SAM sets it (a reserved variable)


def test_two_stacks_with_the_same_logical_id_ask_for_a_stack() -> None:
    configurations = [_configuration("vaultpay-HealthFunction"), _configuration("fixtures-HealthFunction")]

    with pytest.raises(typer.Exit) as refused:
        env_vars_document(STATE, configurations, "host.docker.internal")

    assert refused.value.exit_code == 2

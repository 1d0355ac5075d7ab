"""Moto-backed AWS for the identity component tests: the auth and rate-limit tables, PII key, secrets."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support.handlers import load_handler
from support.lambda_context import FakeLambdaContext
from support.tables import create_table

ROOT = Path(__file__).resolve().parents[3]
AUTH_TABLE = "vaultpay-test-auth"
RATE_LIMIT_TABLE = "vaultpay-test-auth-rate-limits"
ISSUER = "https://auth.vaultpay.dev/test"
AUDIENCE = "vaultpay-api"
# Set to a DynamoDB Local endpoint (http://127.0.0.1:8000) to run these tests on Amazon's engine instead
# of moto's; KMS and Secrets Manager stay on moto either way.
DYNAMODB_ENDPOINT = os.environ.get("VAULTPAY_TEST_DYNAMODB_ENDPOINT", "")


@dataclass
class Cloud:
    """The mocked account: boto3 clients and the names the functions get from their environment."""

    dynamodb: Any
    kms: Any
    secretsmanager: Any
    key_id: str
    signing_key_arn: str
    blind_index_secret_arn: str


def _reset_caches() -> None:
    # Everything cached per process (settings, clients, bound models) must start over with each mock.
    from vaultpay import bootstrap
    from vaultpay.auth import store

    bootstrap.reset()
    store._models.cache_clear()


@pytest.fixture
def cloud(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    """moto for every service; DynamoDB on Amazon's engine when a test is marked `dynamodb_local`.

    Tests that race threads on one item need that mark: in-process moto applies a conditional write
    without a lock, so two threads can both pass a condition that DynamoDB would let only one pass.
    """
    from moto import mock_aws

    dynamodb_endpoint = DYNAMODB_ENDPOINT
    if request.node.get_closest_marker("dynamodb_local"):
        dynamodb_endpoint = request.getfixturevalue("dynamodb_endpoint")

    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "vaultpay-auth-test")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "VaultPayTest")
    _reset_caches()
    if dynamodb_endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint)
    with mock_aws():
        import boto3

        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        for table in (AUTH_TABLE, RATE_LIMIT_TABLE):
            if dynamodb_endpoint and table in dynamodb.list_tables()["TableNames"]:
                dynamodb.delete_table(TableName=table)
        create_table(dynamodb, "AuthTable", AUTH_TABLE)
        create_table(dynamodb, "AuthRateLimitTable", RATE_LIMIT_TABLE)
        kms = boto3.client("kms", region_name="us-east-1")
        key_id = kms.create_key(Description="PII")["KeyMetadata"]["KeyId"]
        signing = kms.create_key(Description="token signing", KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
        secrets = boto3.client("secretsmanager", region_name="us-east-1")
        blind = secrets.create_secret(
            Name="blind-index-key", SecretString="k" * 32 + "EY-of-64-characters-for-the-blind-index"
        )
        environment = {
            "AUTH_TABLE": AUTH_TABLE,
            "RATE_LIMIT_TABLE": RATE_LIMIT_TABLE,
            "PII_KEY_ID": key_id,
            "BLIND_INDEX_SECRET_ARN": blind["ARN"],
            "TOKEN_SIGNING_KEY_ID": signing["KeyMetadata"]["Arn"],
            "TOKEN_VERIFY_KEY_IDS": "",
            "TOKEN_ISSUER": ISSUER,
            "TOKEN_AUDIENCE": AUDIENCE,
        }
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        yield Cloud(
            dynamodb=dynamodb,
            kms=kms,
            secretsmanager=secrets,
            key_id=key_id,
            signing_key_arn=signing["KeyMetadata"]["Arn"],
            blind_index_secret_arn=blind["ARN"],
        )
    _reset_caches()


LAMBDA_CONTEXT = FakeLambdaContext("vaultpay-test-AuthFunction")


@pytest.fixture(scope="session")
def function() -> Callable[[str], ModuleType]:
    """`function("login")` is functions/auth/login/app.py, loaded once under a module name of its own."""

    @functools.cache
    def load(name: str) -> ModuleType:
        return load_handler(f"auth/{name}")

    return load


@pytest.fixture
def sample_event() -> Callable[[str], dict[str, Any]]:
    """`sample_event("login")` is a fresh copy of events/auth/login.json."""
    return lambda name: json.loads((ROOT / "events" / "auth" / f"{name}.json").read_text())


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return LAMBDA_CONTEXT


@pytest.fixture
def cold_start() -> Callable[[], None]:
    """Forgets every per-process cache, as a new Lambda execution environment would start."""
    return _reset_caches

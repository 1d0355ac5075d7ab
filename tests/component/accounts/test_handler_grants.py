"""Every AWS action each accounts handler makes, recorded at the botocore level, equals its template grants.

The handlers run on moto through every path that needs a permission (success, replay, refusal), and what
botocore was asked to do is compared with the function's inline policy in template.yaml, so a grant can
neither be missing (AccessDenied in production) nor be more than the code uses.
"""

from __future__ import annotations

import functools
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support.handlers import load_handler
from support.iam import Action, ActionRecorder
from support.lambda_context import FakeLambdaContext
from support.tables import create_table

pytestmark = pytest.mark.component

ROOT = Path(__file__).resolve().parents[3]
ACCOUNTS_TABLE = "vaultpay-test-accounts"
IDEMPOTENCY_TABLE = "vaultpay-test-accounts-idempotency"
DIRECTORIES = {
    "create": "CreateAccountFunction",
    "list": "ListAccountsFunction",
    "get": "GetAccountFunction",
    "statement": "GetStatementFunction",
    "admin_deposit": "AdminDepositFunction",
    "reserve": "ReserveFundsFunction",
    "settle": "SettleTransferFunction",
    "release": "ReleaseFundsFunction",
}


LAMBDA_CONTEXT = FakeLambdaContext("vaultpay-test-AccountsFunction", remaining_ms=10_000)


def _reset_caches() -> None:
    from vaultpay import bootstrap

    bootstrap.reset()


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[ActionRecorder]:
    import boto3
    from moto import mock_aws

    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(name)
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "accounts",
        "POWERTOOLS_METRICS_NAMESPACE": "VaultPayTest",
        "STAGE": "local",
        "NATS_URL": "nats://127.0.0.1:4222",
        "ACCOUNTS_TABLE": ACCOUNTS_TABLE,
        "IDEMPOTENCY_TABLE": IDEMPOTENCY_TABLE,
        "ENABLED_CURRENCIES": "INR",
    }.items():
        monkeypatch.setenv(name, value)
    _reset_caches()
    recorder = ActionRecorder()
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(dynamodb, "AccountsTable", ACCOUNTS_TABLE)
        create_table(dynamodb, "AccountsIdempotencyTable", IDEMPOTENCY_TABLE)
        key_id = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["KeyId"]
        secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="account-number-index-key", SecretString="i" * 64
        )
        monkeypatch.setenv("ACCOUNT_NUMBER_KEY_ID", key_id)
        monkeypatch.setenv("ACCOUNT_NUMBER_INDEX_SECRET_ARN", secret["ARN"])
        recorder.labels = {
            ACCOUNTS_TABLE: "AccountsTable",
            IDEMPOTENCY_TABLE: "AccountsIdempotencyTable",
            key_id: "AccountNumberKey",
            secret["ARN"]: "AccountNumberIndexSecret",
        }
        recorder.install(monkeypatch)
        yield recorder
    _reset_caches()


@functools.cache
def _handler(directory: str) -> ModuleType:
    return load_handler(f"accounts/{directory}")


def _template_grants() -> dict[str, set[Action]]:
    """Each accounts function's inline policy in template.yaml as (action, resource label) pairs."""
    from samtranslator.yaml_helper import yaml_parse

    resources = yaml_parse((ROOT / "template.yaml").read_text())["Resources"]
    grants: dict[str, set[Action]] = {}
    for directory, logical_id in DIRECTORIES.items():
        pairs = grants.setdefault(directory, set())
        for policy in resources[logical_id]["Properties"]["Policies"]:
            for statement in policy["Statement"]:
                assert statement["Effect"] == "Allow"
                actions = (
                    statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                )
                targets = (
                    statement["Resource"]
                    if isinstance(statement["Resource"], list)
                    else [statement["Resource"]]
                )
                for target in targets:
                    if "Ref" in target:
                        label = target["Ref"]
                    elif "Fn::GetAtt" in target:
                        label = target["Fn::GetAtt"][0]
                    else:  # !Sub ${X.Arn}/index/Name
                        label = target["Fn::Sub"].replace("${", "").replace(".Arn}", "")
                    pairs.update((str(action), label) for action in actions)
    return grants


def _http(directory: str, *, body: Any = None, user: str | None = None, **changes: Any) -> dict[str, Any]:
    event = json.loads((ROOT / "events" / "accounts" / f"{directory}.json").read_text())
    if body is not None:
        event["body"] = json.dumps(body)
    if user is not None:
        event["requestContext"]["authorizer"]["user_id"] = user
    for name, value in changes.items():
        if name == "key":
            event["headers"]["Idempotency-Key"] = value
            event["multiValueHeaders"]["Idempotency-Key"] = [value]
        elif name == "account_id":
            event["pathParameters"] = {"account_id": value}
            event["path"] = event["resource"].replace("{account_id}", value)
        elif name == "route":  # (method, path) on the same function: the admin deposits' other routes
            method, path = value
            event["httpMethod"], event["resource"], event["path"] = method, path, path
            if method == "GET":
                event["queryStringParameters"] = {"status": "PENDING_APPROVAL"}
                event["multiValueQueryStringParameters"] = {"status": ["PENDING_APPROVAL"]}
            else:
                deposit_id = path.split("/")[4]
                event["resource"] = path.replace(deposit_id, "{deposit_id}")
                event["pathParameters"] = {"deposit_id": deposit_id}
    response = _handler(directory).handler(event, LAMBDA_CONTEXT)
    return {"status": response["statusCode"], "body": json.loads(response["body"] or "null")}


def test_each_accounts_function_uses_exactly_the_actions_its_policy_grants(recorder: ActionRecorder) -> None:
    def call(directory: str, *args: Any, **kwargs: Any) -> Any:
        _reset_caches()  # each function cold: nothing cached from another function's run
        recorder.current = directory
        try:
            if directory in ("reserve", "settle", "release"):
                return _handler(directory).handler(args[0], LAMBDA_CONTEXT)
            return _http(directory, **kwargs)
        finally:
            recorder.current = None

    owner, other = "usr_" + uuid.uuid4().hex, "usr_" + uuid.uuid4().hex
    key = f"k-{uuid.uuid4()}"
    source = call("create", user=owner, key=key, body={"type": "SAVINGS", "currency": "INR"})
    assert source["status"] == 201, source
    assert (
        call("create", user=owner, key=key, body={"type": "SAVINGS", "currency": "INR"}) == source
    )  # replay
    refused = call("create", user=owner, key=f"k-{uuid.uuid4()}", body={"type": "SAVINGS", "currency": "USD"})
    assert refused["status"] == 422
    destination = call("create", user=other, key=key, body={"type": "CURRENT", "currency": "INR"})["body"]
    source_id, destination_id = source["body"]["account_id"], destination["account_id"]

    assert call("list", user=owner)["status"] == 200
    assert call("get", user=owner, account_id=source_id)["status"] == 200
    assert call("get", user=other, account_id=source_id)["status"] == 404
    deposit = {"account_id": source_id, "amount": 100_000, "currency": "INR", "reference": "NEFT 1"}
    deposit_key = f"d-{uuid.uuid4()}"
    assert call("admin_deposit", key=deposit_key, body=deposit)["status"] == 201
    assert call("admin_deposit", key=deposit_key, body=deposit)["status"] == 201  # replay
    unknown = {**deposit, "account_id": "acc_" + uuid.uuid4().hex}
    assert call("admin_deposit", key=f"d-{uuid.uuid4()}", body=unknown)["status"] == 404
    large = call("admin_deposit", key=f"d-{uuid.uuid4()}", body={**deposit, "amount": 20_000_000})
    assert large["status"] == 202, large  # above the approval threshold: it waits for a second admin
    queue = call("admin_deposit", route=("GET", "/v1/admin/deposits"))
    assert large["body"]["deposit_id"] in {d["deposit_id"] for d in queue["body"]["items"]}, queue
    approve = ("POST", f"/v1/admin/deposits/{large['body']['deposit_id']}/approve")
    assert call("admin_deposit", route=approve, body={})["status"] == 403  # the same admin
    assert call("admin_deposit", route=approve, body={}, user=other)["status"] == 200
    assert call("statement", user=owner, account_id=source_id)["status"] == 200
    assert call("statement", user=other, account_id=source_id)["status"] == 404

    step = {
        "transfer_id": "trf_" + uuid.uuid4().hex,
        "correlation_id": "c-1",
        "source_account_id": source_id,
        "destination_account_id": destination_id,
        "amount": 25_000,
        "currency": "INR",
        "description": "rent",
    }
    assert call("reserve", step)["status"] == "HELD"
    assert call("settle", step)["status"] == "SETTLED"
    assert call("release", {**step, "transfer_id": "trf_" + uuid.uuid4().hex})["status"] == "RELEASED"
    held = {**step, "transfer_id": "trf_" + uuid.uuid4().hex}
    call("reserve", held)
    assert call("release", held)["status"] == "RELEASED"

    # Powertools reads an idempotency record with GetItem only when a failed conditional put does not
    # return the record itself (DynamoDB does return it): granted, as Powertools documents, but not seen.
    fallback = {("dynamodb:GetItem", "AccountsIdempotencyTable")}
    granted = _template_grants()
    for directory in ("create", "admin_deposit"):
        assert fallback <= granted[directory], directory
        granted[directory] -= fallback
    assert recorder.actions == granted

"""The transfers handlers end to end in-process: DynamoDB Local, Step Functions on moto server, and accounts'
resolver reached through the Lambda Invoke API (a stub edge that runs functions/accounts/resolve)."""

from __future__ import annotations

import functools
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any

import boto3
import pytest
from support.accounts import dynamodb_client
from support.apigw import proxy_event
from support.handlers import load_handler
from support.lambda_context import FakeLambdaContext
from support.tables import create_table

pytestmark = pytest.mark.component

REGION = "us-east-1"


LAMBDA_CONTEXT = FakeLambdaContext("vaultpay-test-CreateTransferFunction", remaining_ms=10_000)


@functools.cache
def _function(domain: str, directory: str) -> ModuleType:
    return load_handler(f"{domain}/{directory}")


def _reset_caches() -> None:
    from vaultpay import bootstrap

    bootstrap.reset()


class _LambdaEdge(BaseHTTPRequestHandler):
    """The Invoke API for one function: runs the resolver in-process, as the local cloud's edge would."""

    invoked: list[str] = []  # shared by the server's handler instances

    def do_POST(self) -> None:
        name = self.path.split("/functions/", 1)[1].split("/", 1)[0]
        self.invoked.append(name)
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = _function("accounts", "resolve").handler(payload, LAMBDA_CONTEXT)
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def cloud(dynamodb_endpoint: str, moto_endpoint: str) -> Iterator[dict[str, Any]]:
    patch = pytest.MonkeyPatch()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LambdaEdge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    edge = f"http://127.0.0.1:{server.server_address[1]}"

    def moto(service: str) -> Any:
        return boto3.client(
            service, endpoint_url=moto_endpoint, region_name=REGION,
            aws_access_key_id="test", aws_secret_access_key="test",
        )  # fmt: skip

    dynamodb = dynamodb_client(dynamodb_endpoint)
    for logical_id, table in (
        ("AccountsTable", "vaultpay-test-accounts"),
        ("TransfersTable", "vaultpay-test-transfers"),
        ("TransfersIdempotencyTable", "vaultpay-test-transfers-idempotency"),
        ("TransfersRateLimitTable", "vaultpay-test-transfers-limits"),
        ("ApiCallsTable", "vaultpay-test-api-calls"),
    ):
        create_table(dynamodb, logical_id, table)
    key_id = moto("kms").create_key()["KeyMetadata"]["Arn"]
    secret = moto("secretsmanager").create_secret(Name=f"index-{uuid.uuid4().hex}", SecretString="i" * 64)[
        "ARN"
    ]
    machine = moto("stepfunctions").create_state_machine(
        name=f"transfer-{uuid.uuid4().hex[:8]}",
        definition=json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::000000000000:role/vaultpay-test-saga",
    )["stateMachineArn"]
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
        "AWS_ENDPOINT_URL_KMS": moto_endpoint,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_endpoint,
        "AWS_ENDPOINT_URL_SFN": moto_endpoint,
        "AWS_ENDPOINT_URL_LAMBDA": edge,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "VaultPayTest",
        "STAGE": "local",
        "NATS_URL": "nats://127.0.0.1:4222",
        "ACCOUNTS_TABLE": "vaultpay-test-accounts",
        "ACCOUNT_NUMBER_KEY_ID": key_id,
        "ACCOUNT_NUMBER_INDEX_SECRET_ARN": secret,
        "ENABLED_CURRENCIES": "INR",
        "TRANSFERS_TABLE": "vaultpay-test-transfers",
        "IDEMPOTENCY_TABLE": "vaultpay-test-transfers-idempotency",
        "RATE_LIMIT_TABLE": "vaultpay-test-transfers-limits",
        "API_CALLS_TABLE": "vaultpay-test-api-calls",
        "RESOLVE_PARTIES_FUNCTION": "vaultpay-test-ResolveTransferPartiesFunction",
        "TRANSFER_STATE_MACHINE_ARN": machine,
    }.items():
        patch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        patch.delenv(name, raising=False)
    _reset_caches()
    from vaultpay.bootstrap.accounts import accounts_service

    accounts = accounts_service()
    owner, payee = "usr_" + uuid.uuid4().hex, "usr_" + uuid.uuid4().hex
    source = accounts.open_account(owner, "SAVINGS", "INR", "c-1").to_json()
    destination = accounts.open_account(payee, "CURRENT", "INR", "c-2").to_json()
    try:
        yield {
            "owner": owner,
            "payee": payee,
            "source": source,
            "destination": destination,
            "sfn": moto("stepfunctions"),
            "machine": machine,
            "edge": _LambdaEdge,
        }
    finally:
        server.shutdown()
        _reset_caches()
        patch.undo()


def _post(user: str, body: dict[str, Any], key: str | None = None, correlation_id: str | None = None) -> Any:
    headers = {"X-Correlation-Id": correlation_id} if correlation_id else None
    event = proxy_event(
        "POST",
        "/v1/transfers",
        user_id=user,
        body=body,
        idempotency_key=key or uuid.uuid4().hex,
        headers=headers,
    )
    if correlation_id:
        # The authorizer hands the request's correlation id on in its context.
        event["requestContext"]["authorizer"]["correlation_id"] = correlation_id
    return _function("transfers", "create").handler(event, LAMBDA_CONTEXT)


def _get(user: str, transfer_id: str) -> Any:
    event = proxy_event(
        "GET",
        f"/v1/transfers/{transfer_id}",
        user_id=user,
        resource="/v1/transfers/{transfer_id}",
        path_parameters={"transfer_id": transfer_id},
    )
    return _function("transfers", "get").handler(event, LAMBDA_CONTEXT)


def _list(user: str, **query: str) -> Any:
    event = proxy_event("GET", "/v1/transfers", user_id=user, query=query)
    return _function("transfers", "list").handler(event, LAMBDA_CONTEXT)


def _body(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def _transfer(cloud: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {
        "source_account_id": cloud["source"]["account_id"],
        "destination_account_number": cloud["destination"]["account_number"],
        "amount": 25_000,
        "currency": "INR",
        "description": "rent",
        **changes,
    }


def test_a_transfer_is_accepted_once_and_its_saga_starts_under_its_id(cloud: dict[str, Any]) -> None:
    # Given the owner's request with an Idempotency-Key
    key = uuid.uuid4().hex
    first = _post(cloud["owner"], _transfer(cloud), key, correlation_id="corr-transfer-1")
    # Then it is accepted, PENDING, with the destination masked only
    assert first["statusCode"] == 202, first
    view = _body(first)
    assert view["status"] == "PENDING"
    assert cloud["destination"]["account_number"] not in first["body"]
    assert view["destination_account_number_masked"] == cloud["destination"]["account_number_masked"]
    # And one execution named after the transfer carries the saga input
    executions = cloud["sfn"].list_executions(stateMachineArn=cloud["machine"])["executions"]
    (execution,) = [e for e in executions if e["name"] == view["transfer_id"]]
    saga = json.loads(cloud["sfn"].describe_execution(executionArn=execution["executionArn"])["input"])
    assert saga["destination_account_id"] == cloud["destination"]["account_id"]
    assert (saga["correlation_id"], saga["device_id"], saga["amount"]) == (
        "corr-transfer-1",
        "test-device",
        25_000,
    )
    # When the client retries with the same key and body: the first answer, marked, and nothing new
    again = _post(cloud["owner"], _transfer(cloud), key)
    assert again["statusCode"] == 202
    assert again["multiValueHeaders"]["Idempotent-Replayed"] == ["true"]
    assert _body(again) == view
    executions = cloud["sfn"].list_executions(stateMachineArn=cloud["machine"])["executions"]
    assert [e["name"] for e in executions].count(view["transfer_id"]) == 1
    # And the same key with another body is refused
    reused = _post(cloud["owner"], _transfer(cloud, amount=25_001), key)
    assert (reused["statusCode"], _body(reused)["code"]) == (422, "idempotency_key_reused")


def test_the_parties_accounts_refuse_come_back_as_their_api_codes(cloud: dict[str, Any]) -> None:
    number = cloud["destination"]["account_number"]
    typo = number[:-1] + str((int(number[-1]) + 1) % 10)
    body = "4000000001"
    unknown = body + f"{98 - (int(body) * 100) % 97:02d}"
    cases = [
        (cloud["payee"], {}, 404, "account_not_found"),
        (cloud["owner"], {"source_account_id": "nonsense"}, 404, "account_not_found"),
        (cloud["owner"], {"destination_account_number": typo}, 422, "invalid_account_number"),
        (cloud["owner"], {"destination_account_number": unknown}, 422, "destination_not_found"),
        (
            cloud["owner"],
            {"destination_account_number": cloud["source"]["account_number"]},
            422,
            "same_account",
        ),
        (cloud["owner"], {"currency": "USD"}, 422, "currency_not_supported"),
        (cloud["owner"], {"amount": 1.5}, 422, "validation_failed"),
        (cloud["owner"], {"amount": "100"}, 422, "validation_failed"),
        (cloud["owner"], {"amount": 0}, 422, "validation_failed"),
        (cloud["owner"], {"amount": 10**12 + 1}, 422, "validation_failed"),
        (cloud["owner"], {"description": "x" * 141}, 422, "validation_failed"),
        (cloud["owner"], {"user_id": "usr_someone"}, 422, "validation_failed"),
    ]
    for user, changes, status, code in cases:
        response = _post(user, _transfer(cloud, **changes))
        assert (response["statusCode"], _body(response)["code"]) == (status, code), changes
        assert number not in response["body"]


def test_a_post_without_an_idempotency_key_is_refused(cloud: dict[str, Any]) -> None:
    event = proxy_event("POST", "/v1/transfers", user_id=cloud["owner"], body=_transfer(cloud))
    response = _function("transfers", "create").handler(event, LAMBDA_CONTEXT)
    assert (response["statusCode"], _body(response)["code"]) == (400, "idempotency_key_required")


def test_only_the_owner_reads_and_lists_a_transfer(cloud: dict[str, Any]) -> None:
    created = _body(_post(cloud["owner"], _transfer(cloud)))
    transfer_id = created["transfer_id"]
    assert (_get(cloud["owner"], transfer_id)["statusCode"], _body(_get(cloud["owner"], transfer_id))) == (
        200,
        created,
    )
    for user, wanted in [(cloud["payee"], transfer_id), (cloud["owner"], "tr_" + "0" * 32)]:
        response = _get(user, wanted)
        assert (response["statusCode"], _body(response)["code"]) == (404, "transfer_not_found")
    # The owner's list has it (the index is eventually consistent on AWS; DynamoDB Local is immediate)
    listed = _list(cloud["owner"], account_id=cloud["source"]["account_id"], limit="100")
    assert listed["statusCode"] == 200
    assert transfer_id in [t["transfer_id"] for t in _body(listed)["items"]]
    # Anyone else's account, an unknown one and a malformed id: the same 404
    for user, account in [
        (cloud["payee"], cloud["source"]["account_id"]),
        (cloud["owner"], cloud["destination"]["account_id"]),
        (cloud["owner"], "nonsense"),
    ]:
        response = _list(user, account_id=account)
        assert (response["statusCode"], _body(response)["code"]) == (404, "account_not_found")
    missing = _list(cloud["owner"])
    assert (missing["statusCode"], _body(missing)["code"]) == (422, "validation_failed")


def test_the_status_step_records_ops_and_raises_flat_saga_errors(cloud: dict[str, Any]) -> None:
    from vaultpay.transfers.errors import InvalidStepInput, TransferFinal, TransferNotFound

    status = _function("transfers", "status").handler
    transfer_id = _body(_post(cloud["owner"], _transfer(cloud)))["transfer_id"]
    state = {"transfer_id": transfer_id, "correlation_id": "c", "amount": 25_000}
    assert status({"op": "processing", "state": state}, LAMBDA_CONTEXT)["status"] == "PROCESSING"
    assert (
        status({"op": "decline", "state": {**state, "failure_reason": "insufficient_funds"}}, LAMBDA_CONTEXT)[
            "failure_reason"
        ]
        == "insufficient_funds"
    )
    assert status({"op": "view", "transfer_id": transfer_id}, LAMBDA_CONTEXT)["status"] == "DECLINED"
    with pytest.raises(TransferFinal):
        status({"op": "complete", "state": state}, LAMBDA_CONTEXT)
    with pytest.raises(TransferNotFound):
        status({"op": "processing", "state": {"transfer_id": "tr_" + "0" * 32}}, LAMBDA_CONTEXT)
    with pytest.raises(InvalidStepInput):
        status({"op": "processing", "state": {}}, LAMBDA_CONTEXT)


def test_the_synchronous_path_of_a_transfer_request_makes_only_these_aws_calls(
    cloud: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given warm functions (the resolver's index key and clients already fetched by an earlier request)
    assert _post(cloud["owner"], _transfer(cloud))["statusCode"] == 202
    calls: list[str] = []
    from botocore.client import BaseClient

    real = BaseClient._make_api_call

    def counting(client: Any, operation: str, params: dict[str, Any]) -> Any:
        table = str(params.get("TableName") or "").removeprefix("vaultpay-test-")
        calls.append(f"{client.meta.service_model.service_name}:{operation}" + (f" {table}" if table else ""))
        return real(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counting)
    # When the owner requests a new transfer, its decision made by the authorizer for this very request
    key = uuid.uuid4().hex
    event = proxy_event(
        "POST", "/v1/transfers", user_id=cloud["owner"], body=_transfer(cloud), idempotency_key=key
    )
    event["requestContext"]["authorizer"]["request_id"] = event["requestContext"]["requestId"]
    assert _function("transfers", "create").handler(event, LAMBDA_CONTEXT)["statusCode"] == 202
    # Then before its 202 it makes exactly these calls, in three steps in turn and three in flight together:
    # the caller's API call counted (before anything acts); the idempotency record taken; the transfer read
    # (a repeat finds it), the user's creation window counted and accounts asked (three reads in its
    # function), together; the transfer and its event in one transaction; the saga; the record completed
    assert calls[:2] == ["dynamodb:UpdateItem api-calls", "dynamodb:PutItem transfers-idempotency"], calls
    assert sorted(calls[2:-3]) == sorted(
        [
            "dynamodb:GetItem transfers",
            "dynamodb:UpdateItem transfers-limits",
            "lambda:Invoke",
            *["dynamodb:GetItem accounts"] * 3,
        ]
    ), calls
    assert calls[-3:] == [
        "dynamodb:TransactWriteItems",
        "stepfunctions:StartExecution",
        "dynamodb:UpdateItem transfers-idempotency",
    ], calls

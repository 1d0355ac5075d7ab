"""The ledger's Lambdas on the local cloud: parallel reserves never overdraw; steps are idempotent."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from support.apigw import proxy_event

pytestmark = pytest.mark.component


class Ledger:
    def __init__(self, cloud: Any) -> None:
        import boto3
        from botocore.config import Config

        self.cloud = cloud
        # A pool as wide as the test's threads, and no botocore retries: each invoke is counted once.
        self.lam = boto3.client(
            "lambda",
            endpoint_url=cloud.edge,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(max_pool_connections=48, read_timeout=60, retries={"max_attempts": 0}),
        )

    def invoke(self, logical_id: str, payload: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        response = self.lam.invoke(
            FunctionName=self.cloud.function_name(logical_id), Payload=json.dumps(payload).encode()
        )
        return not response.get("FunctionError"), json.loads(response["Payload"].read())

    def open_account(self, user_id: str) -> str:
        ok, response = self.invoke(
            "CreateAccountFunction",
            proxy_event(
                "POST",
                "/v1/accounts",
                user_id=user_id,
                body={"type": "SAVINGS", "currency": "INR"},
                idempotency_key=uuid.uuid4().hex,
            ),
        )
        assert ok and response["statusCode"] == 201, response
        return str(json.loads(response["body"])["account_id"])

    def deposit(self, account_id: str, amount: int) -> None:
        ok, response = self.invoke(
            "AdminDepositFunction",
            proxy_event(
                "POST",
                "/v1/admin/deposits",
                user_id="ops-1",
                role="admin",
                body={"account_id": account_id, "amount": amount, "currency": "INR", "reference": "seed"},
                idempotency_key=uuid.uuid4().hex,
            ),
        )
        assert ok and response["statusCode"] == 201, response

    def account(self, user_id: str, account_id: str) -> dict[str, Any]:
        ok, response = self.invoke(
            "GetAccountFunction",
            proxy_event(
                "GET",
                f"/v1/accounts/{account_id}",
                user_id=user_id,
                resource="/v1/accounts/{account_id}",
                path_parameters={"account_id": account_id},
            ),
        )
        assert ok and response["statusCode"] == 200, response
        return dict(json.loads(response["body"]))


def _step(transfer_id: str, source: str, amount: int, destination: str | None = None) -> dict[str, Any]:
    event = {
        "transfer_id": transfer_id,
        "source_account_id": source,
        "amount": amount,
        "currency": "INR",
        "correlation_id": f"corr-{transfer_id}",
    }
    if destination:
        event["destination_account_id"] = destination
    return event


@pytest.fixture(scope="module")
def ledger(local_cloud: Any) -> Ledger:
    return Ledger(local_cloud)


def test_many_parallel_reserves_on_one_account_never_overdraw_it(ledger: Ledger) -> None:
    """Given ₹500.00 and 60 concurrent holds of ₹25.00, exactly 20 succeed and the rest are refused."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    account = ledger.open_account(user)
    ledger.deposit(account, 50_000)

    def reserve(i: int) -> tuple[bool, dict[str, Any]]:
        return ledger.invoke("ReserveFundsFunction", _step(f"par-{account[-8:]}-{i}", account, 2_500))

    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(reserve, range(60)))
    held = [body for ok, body in outcomes if ok]
    refused = [body.get("errorType") for ok, body in outcomes if not ok]
    assert len(held) == 20, refused
    assert set(refused) == {"InsufficientFunds"}, refused
    balance = ledger.account(user, account)["balance"]
    assert balance == {"ledger": 50_000, "available": 0}


def test_a_repeated_step_changes_nothing_and_answers_the_same(ledger: Ledger) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    source, destination = ledger.open_account(user), ledger.open_account(user)
    ledger.deposit(source, 10_000)
    transfer = f"rep-{uuid.uuid4().hex[:12]}"
    first = ledger.invoke("ReserveFundsFunction", _step(transfer, source, 4_000))
    assert first == ledger.invoke("ReserveFundsFunction", _step(transfer, source, 4_000))
    settled = ledger.invoke("SettleTransferFunction", _step(transfer, source, 4_000, destination))
    assert settled[0], settled
    assert settled == ledger.invoke("SettleTransferFunction", _step(transfer, source, 4_000, destination))
    assert ledger.account(user, source)["balance"] == {"ledger": 6_000, "available": 6_000}
    assert ledger.account(user, destination)["balance"] == {"ledger": 4_000, "available": 4_000}
    ok, refused = ledger.invoke("ReleaseFundsFunction", _step(transfer, source, 4_000))
    assert not ok and refused["errorType"] == "HoldNotOpen"


def test_bad_step_input_fails_with_a_flat_error_name(ledger: Ledger) -> None:
    ok, body = ledger.invoke("ReserveFundsFunction", {"transfer_id": "x", "amount": 1.5})
    assert not ok and body["errorType"] == "InvalidStepInput"
    ok, body = ledger.invoke(
        "SettleTransferFunction", _step("no-hold", "acc_" + "0" * 32, 5, "acc_" + "1" * 32)
    )
    assert not ok and body["errorType"] in {"HoldNotFound", "AccountNotFound"}

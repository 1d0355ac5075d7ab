"""GET /v1/admin/audit and /v1/admin/audit/verify: handlers with authorizer contexts, on moto's DynamoDB."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from support.handlers import load_handler
from support.tables import create_table

from vaultpay.audit.model import AuditEntry
from vaultpay.audit.store import DynamoDBAuditStore, record_sk

from .conftest import LAMBDA_CONTEXT, reset_audit_caches

pytestmark = pytest.mark.component
EVENTS = Path(__file__).resolve().parents[3] / "events" / "audit"
TABLE = "vaultpay-test-AuditTable"
PROBLEM_JSON = "application/problem+json"
# docs/api.md "Administration": the audit record shape is part of the contract.
RECORD_FIELDS = [
    "audit_id",
    "seq",
    "occurred_at",
    "type",
    "actor",
    "correlation_id",
    "subject",
    "data",
    "prev_hash",
    "hash",
]


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's DynamoDB with an audit table holding 5 records (actors usr_01/usr_02 alternating)."""
    from moto import mock_aws

    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(name)
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AUDIT_TABLE": TABLE,
        "POWERTOOLS_METRICS_NAMESPACE": "VaultPayTest",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "AuditTable", TABLE)
        DynamoDBAuditStore(client, TABLE).append(
            [
                AuditEntry(
                    audit_id=f"evt-{n}",
                    occurred_at=f"2026-11-28T10:15:3{n}.000Z",
                    type="vaultpay.account.deposited",
                    actor=f"usr_0{1 + n % 2}",
                    correlation_id="c-1",
                    subject=f"acc_{n}",
                    data={"amount": 100 * n},
                )
                for n in range(1, 6)
            ]
        )
        reset_audit_caches()
        yield client
        reset_audit_caches()


@pytest.fixture
def query_app(table: Any) -> ModuleType:
    return load_handler("audit/query")


@pytest.fixture
def verify_app(table: Any) -> ModuleType:
    return load_handler("audit/verify")


def request(
    name: str, *, role: str = "admin", query: dict[str, str] | None = None, **context: Any
) -> dict[str, Any]:
    event: dict[str, Any] = copy.deepcopy(json.loads((EVENTS / name).read_text()))
    event["requestContext"]["authorizer"].update(role=role, **context)
    if query is not None:
        event["queryStringParameters"] = query or None
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} or None
    return event


def call(app: ModuleType, event: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
    response = app.handler(event, LAMBDA_CONTEXT)
    headers = {k.lower(): v for k, v in (response.get("multiValueHeaders") or {}).items()}
    content_type = (headers.get("content-type") or [""])[0]
    return int(response["statusCode"]), content_type, json.loads(response["body"])


# ---- query -------------------------------------------------------------------------------------------


def test_an_admin_lists_audit_records_newest_first_with_the_record_shape(query_app: ModuleType) -> None:
    status, content_type, body = call(query_app, request("query_admin.json", query={}))

    assert status == 200
    assert content_type == "application/json"
    assert [item["seq"] for item in body["items"]] == [5, 4, 3, 2, 1]
    assert body["next_cursor"] is None
    assert set(body["items"][0]) == set(RECORD_FIELDS)
    assert body["items"][0]["data"] == {"amount": 500}
    assert body["items"][0]["prev_hash"] == body["items"][1]["hash"]


def test_an_admin_filters_by_actor_and_time_and_pages_with_the_cursor(query_app: ModuleType) -> None:
    window = {"actor": "usr_02", "from": "2026-11-28T10:15:31Z", "to": "2026-11-28T10:15:36Z"}
    status, _, first = call(query_app, request("query_admin.json", query={**window, "limit": "1"}))
    assert status == 200
    assert [item["seq"] for item in first["items"]] == [5]

    status, _, second = call(
        query_app, request("query_admin.json", query={**window, "limit": "1", "cursor": first["next_cursor"]})
    )

    assert status == 200
    assert [item["seq"] for item in second["items"]] == [3]


def test_a_customer_gets_403_problem_json(query_app: ModuleType) -> None:
    status, content_type, body = call(query_app, request("query_admin.json", role="customer"))

    assert status == 403
    assert content_type == PROBLEM_JSON
    assert body["code"] == "forbidden"
    assert body["correlation_id"] == "c0ffee00-0000-4000-8000-0000000000a1"
    assert "items" not in body


def test_a_request_without_an_authorizer_context_is_401(query_app: ModuleType) -> None:
    event = request("query_admin.json")
    event["requestContext"].pop("authorizer")

    status, content_type, body = call(query_app, event)

    assert (status, content_type, body["code"]) == (401, PROBLEM_JSON, "unauthorized")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "2026-11-29T00:00:00Z", "to": "2026-11-28T00:00:00Z"}, "from"),
        ({"from": "28/11/2026"}, "from"),
        ({"to": "2026-11-28T10:15:30"}, "to"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"cursor": "bm90LWEtY3Vyc29y"}, "cursor"),
    ],
)
def test_a_bad_filter_is_422_problem_json_naming_it(
    query_app: ModuleType, query: dict[str, str], field: str
) -> None:
    status, content_type, body = call(query_app, request("query_admin.json", query=query))

    assert status == 422
    assert content_type == PROBLEM_JSON
    assert body["code"] == "validation_failed"
    assert [error["field"] for error in body["errors"]] == [field]


@pytest.mark.parametrize("query", [{"from": "x"}, {"limit": "many"}, {"actor": "a" * 500}])
def test_a_customer_with_a_bad_filter_still_gets_403_not_422(
    query_app: ModuleType, query: dict[str, str]
) -> None:
    # An admin-only route must not explain its parameters to a customer: the role is checked first.
    status, _, body = call(query_app, request("query_admin.json", role="customer", query=query))

    assert (status, body["code"]) == (403, "forbidden")


# ---- verify ------------------------------------------------------------------------------------------


def test_an_admin_verifies_an_intact_chain(verify_app: ModuleType) -> None:
    status, _, body = call(verify_app, request("verify_admin.json"))

    assert status == 200
    assert body["ok"] is True
    assert body["records_checked"] == 5
    assert len(body["head_hash"]) == 64
    assert "first_bad_record" not in body


def test_verify_names_the_first_bad_record_of_a_tampered_chain(verify_app: ModuleType, table: Any) -> None:
    # Given record 2 overwritten with another amount (PutItem, as anyone holding it could)
    item = table.get_item(TableName=TABLE, Key={"pk": {"S": "CHAIN"}, "sk": {"S": record_sk(2)}})["Item"]
    item["data"] = {"S": '{"amount":999999}'}
    table.put_item(TableName=TABLE, Item=item)

    status, _, body = call(verify_app, request("verify_admin.json"))

    assert status == 200
    assert body["ok"] is False
    assert body["records_checked"] == 2
    assert body["first_bad_record"]["seq"] == 2
    assert body["first_bad_record"]["audit_id"] == "evt-2"
    assert body["first_bad_record"]["reason"] == "hash_mismatch"


def test_a_customer_cannot_verify(verify_app: ModuleType) -> None:
    status, content_type, body = call(verify_app, request("verify_admin.json", role="customer"))

    assert (status, content_type, body["code"]) == (403, PROBLEM_JSON, "forbidden")

"""The event backbone end to end: a committed change → outbox → stream → relay → JetStream → audit chain."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pyotp
import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def admin_token(local_cloud: Any) -> tuple[str, str]:
    email = f"auditor.{uuid.uuid4().hex[:8]}@vaultpay.dev"
    password = "auditor's long password"
    lam = local_cloud.client("lambda")
    out = lam.invoke(
        FunctionName=local_cloud.function_name("CreateAdminFunction"),
        Payload=json.dumps(
            {"email": email, "password": password, "full_name": "Auditor", "phone": "+919811111111"}
        ).encode(),
    )
    created = json.loads(out["Payload"].read())
    return email, created["mfa"]["secret"]


def _admin_client(api: Callable[..., Any], admin: tuple[str, str]) -> Any:
    """Logs the module's admin in (once per module: a TOTP code is accepted once per step)."""
    client = api(device_id="auditor-laptop")
    email, secret = admin
    started = client.post(
        "/v1/auth/login", {"email": email, "password": "auditor's long password"}, token=None
    )
    code = pyotp.TOTP(secret).now()
    tokens = client.post("/v1/auth/mfa/verify", {"challenge_id": started.body["challenge_id"], "code": code})
    assert tokens.status == 200, tokens.body
    client.token = tokens.body["access_token"]
    return client


def test_a_committed_change_reaches_the_audit_log_with_its_correlation_id(
    local_cloud: Any, api: Callable[..., Any], admin_token: tuple[str, str]
) -> None:
    correlation_id = f"e2e-{uuid.uuid4().hex}"
    email = f"evented.{uuid.uuid4().hex[:8]}@example.com"
    registered = api().post(
        "/v1/auth/register",
        {"email": email, "password": "a long pass phrase", "full_name": "Eve", "phone": "+919822222222"},
        token=None,
        headers={"X-Correlation-Id": correlation_id},
    )
    assert registered.status == 201
    admin = _admin_client(api, admin_token)

    deadline = time.monotonic() + 30
    items: list[dict[str, Any]] = []
    expected = {"vaultpay.auth.user.created", "vaultpay.gateway.request.logged"}
    while time.monotonic() < deadline and {i["type"] for i in items} != expected:
        reply = admin.get(f"/v1/admin/audit?correlation_id={correlation_id}")
        assert reply.status == 200, reply.body
        items = reply.body["items"]
        time.sleep(0.5)

    # The state change's event (outbox → stream → relay) and the request's log event (log line →
    # subscription filter → relay) both reach the audit log under the caller's correlation id.
    assert sorted(i["type"] for i in items) == sorted(expected)
    logged = next(i for i in items if i["type"] == "vaultpay.gateway.request.logged")
    assert logged["data"]["route"] == "/v1/auth/register"
    assert logged["data"]["status"] == 201
    record = next(i for i in items if i["type"] == "vaultpay.auth.user.created")
    assert record["subject"] == registered.body["user_id"]
    assert len(record["hash"]) == 64
    dump = json.dumps(record)
    assert email not in dump
    assert "9822222222" not in dump

    verify = admin.get("/v1/admin/audit/verify")
    assert verify.status == 200
    assert verify.body["ok"] is True
    assert verify.body["records_checked"] >= 1
    # One verdict per chain, in chain order, which together make up the log's
    chains = verify.body["chains"]
    assert [c["chain"] for c in chains] == list(range(len(chains))) and len(chains) >= 1
    assert all(c["ok"] for c in chains)
    assert sum(c["records_checked"] for c in chains) == verify.body["records_checked"]

    # And the outbox item is as it was written: the relay wrote nothing back (no mark), and it is not pending,
    # so the sweeper leaves it alone.
    dynamodb = local_cloud.client("dynamodb")
    table = next(t for t in dynamodb.list_tables()["TableNames"] if t.endswith("AuthTable"))
    item = dynamodb.get_item(
        TableName=table, Key={"pk": {"S": f"OUTBOX#{record['audit_id']}"}, "sk": {"S": "OUTBOX"}}
    ).get("Item") or next(
        i
        for i in dynamodb.scan(TableName=table)["Items"]
        if i.get("kind", {}).get("S") == "outbox" and i["subject"]["S"] == registered.body["user_id"]
    )
    assert "published" not in item
    assert "pending" not in item

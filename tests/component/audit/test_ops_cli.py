"""`vaultpay ops audit verify|replay` against DynamoDB Local and nats-server (no local cloud running)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vaultpay.audit.model import AuditRecord
from vaultpay.audit.store import DynamoDBAuditStore, record_sk
from vaultpay.shared.events import DomainEvent
from vaultpay_cli.ops_audit import ops_audit_app

from .conftest import AuditTable, Nats, dynamodb_client, publish, setup_stream

pytestmark = pytest.mark.component


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, dynamodb_endpoint: str) -> CliRunner:
    # No local cloud in this state dir: the commands use boto3's own configuration.
    monkeypatch.setenv("VAULTPAY_STATE_DIR", str(tmp_path))
    for name, value in {
        "AWS_ENDPOINT_URL": dynamodb_endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }.items():
        monkeypatch.setenv(name, value)
    return CliRunner()


def event(n: int) -> dict[str, Any]:
    return DomainEvent(
        type="vaultpay.account.created",
        source="/vaultpay/accounts",
        subject=f"acc_{n}",
        data={"n": n},
        correlation_id=f"corr-{n}",
        actor="usr_01",
    ).cloudevent()


def test_verify_reports_an_intact_chain_and_its_head(cli_env: CliRunner, audit_table: AuditTable) -> None:
    from vaultpay.audit.service import AuditService

    AuditService(audit_table.store()).append(event(1))
    AuditService(audit_table.store()).append(event(2))

    result = cli_env.invoke(ops_audit_app, ["verify", "--table", audit_table.name, "--json"])

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert (body["ok"], body["records_checked"], body["head_seq"]) == (True, 2, 2)
    anchored = cli_env.invoke(
        ops_audit_app, ["verify", "--table", audit_table.name, "--expect-head", f"2:{body['head_hash']}"]
    )
    assert anchored.exit_code == 0, anchored.output
    assert "OK, 2 records" in anchored.stdout


def test_verify_exits_1_naming_the_first_bad_record(cli_env: CliRunner, audit_table: AuditTable) -> None:
    from vaultpay.audit.service import AuditService

    for n in range(1, 4):
        AuditService(audit_table.store()).append(event(n))
    item = next(i for i in audit_table.items() if i.get("sk", {}).get("S") == record_sk(2))
    item["actor"] = {"S": "usr_someone_else"}
    audit_table.client.put_item(TableName=audit_table.name, Item=item)

    result = cli_env.invoke(ops_audit_app, ["verify", "--table", audit_table.name])

    assert result.exit_code == 1
    assert "BROKEN" in result.output
    assert "seq 2" in result.output
    assert "hash_mismatch" in result.output


def test_verify_catches_deleted_newest_records_with_the_expected_head(
    cli_env: CliRunner, audit_table: AuditTable
) -> None:
    from vaultpay.audit.service import AuditService

    outcomes = [AuditService(audit_table.store()).append(event(n)) for n in range(1, 4)]
    head = outcomes[-1].record
    assert head is not None
    # DeleteItem is never granted to the functions; an operator with wider rights could still do it.
    audit_table.client.delete_item(
        TableName=audit_table.name, Key={"pk": {"S": "CHAIN"}, "sk": {"S": record_sk(3)}}
    )

    result = cli_env.invoke(
        ops_audit_app, ["verify", "--table", audit_table.name, "--expect-head", f"3:{head.hash}"]
    )

    assert result.exit_code == 1
    assert "truncated" in result.output


def test_verify_without_table_refuses_to_guess_between_several(
    cli_env: CliRunner, dynamodb_endpoint: str
) -> None:
    AuditTable(dynamodb_endpoint)
    AuditTable(dynamodb_endpoint)

    result = cli_env.invoke(ops_audit_app, ["verify"])

    assert result.exit_code == 2
    assert "Pass --table" in result.output


def test_replay_rebuilds_a_fresh_chain_idempotently_from_a_sequence_or_a_time(
    cli_env: CliRunner, nats_endpoint: Nats, dynamodb_endpoint: str
) -> None:
    # Given a stream with four events and a poison message
    asyncio.run(setup_stream(nats_endpoint.url))
    events = [event(n) for n in range(4)]
    payloads = [(e["type"], json.dumps(e).encode(), e["id"]) for e in events]
    payloads.insert(2, ("vaultpay.account.created", b"not an event", "poison"))
    asyncio.run(publish(nats_endpoint.url, payloads[:3]))
    time.sleep(0.05)
    between = time.time()
    time.sleep(0.05)
    asyncio.run(publish(nats_endpoint.url, payloads[3:]))
    table = "replayed-AuditTable"
    args = ["replay", "--consumer", "audit", "--table", table, "--nats-url", nats_endpoint.url]

    # When the audit read model is rebuilt from seq 1 into a new table, twice
    first = cli_env.invoke(ops_audit_app, [*args, "--from", "1", "--create-table"])
    again = cli_env.invoke(ops_audit_app, [*args, "--from", "1"])

    # Then the chain holds every event once, in stream order, and the second run added nothing
    assert first.exit_code == 0, first.output
    assert "4 appended" in first.stdout
    assert "1 not CloudEvents (stream seq 3)" in first.stdout
    assert again.exit_code == 0, again.output
    assert "0 appended, 4 already there" in again.stdout
    store = DynamoDBAuditStore(dynamodb_client(dynamodb_endpoint), table)
    records = [r for r in store.records() if isinstance(r, AuditRecord)]
    assert [r.audit_id for r in records] == [e["id"] for e in events]

    # And a replay from a time starts at the first message published after it
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(between)) + f".{int(between % 1 * 1000):03d}Z"
    other = "replayed-late-AuditTable"
    late_args = ["replay", "--consumer", "audit-workers", "--table", other, "--nats-url", nats_endpoint.url]
    late = cli_env.invoke(ops_audit_app, [*late_args, "--from", since, "--create-table"])
    assert late.exit_code == 0, late.output
    later = DynamoDBAuditStore(dynamodb_client(dynamodb_endpoint), other)
    replayed = [r.audit_id for r in later.records() if isinstance(r, AuditRecord)]
    assert replayed == [e["id"] for e in events[2:]]


def test_replay_refuses_an_unknown_read_model(cli_env: CliRunner) -> None:
    result = cli_env.invoke(
        ops_audit_app,
        ["replay", "--consumer", "ledger", "--table", "x", "--from", "1", "--nats-url", "nats://x"],
    )

    assert result.exit_code == 2
    assert "--consumer must be one of" in result.output

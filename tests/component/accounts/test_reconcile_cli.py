"""Ledger reconciliation against DynamoDB Local: `vaultpay ops reconcile` and the scheduled handler.

The ledger is written by the accounts service itself through its DynamoDB store, so a clean reconciliation
here also says that reconcile reads the items exactly as the store lays them out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support.accounts import FakeCipher, FakeIndex, dynamodb_client
from support.clocks import TickingClock
from support.handlers import load_handler
from support.lambda_context import FakeLambdaContext
from support.tables import create_table
from typer.testing import CliRunner

from vaultpay.accounts.service import AccountsService
from vaultpay.accounts.store import DynamoLedgerStore
from vaultpay_cli.main import app

pytestmark = pytest.mark.component
ROOT = Path(__file__).resolve().parents[3]


@dataclass
class LedgerTable:
    """A fresh accounts table holding a small ledger the service wrote, and what it knows about it."""

    endpoint: str
    name: str = field(default_factory=lambda: f"t-{uuid.uuid4().hex[:10]}-AccountsTable")
    asha: str = ""
    ravi: str = ""
    numbers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.client = dynamodb_client(self.endpoint)
        create_table(self.client, "AccountsTable", self.name)

    def write_ledger(self) -> None:
        """Asha and Ravi deposit; Asha pays Ravi 12,000 (settled); Ravi holds 2,000 (open); Asha's transfer
        of 1,000 is released; a release before any reserve leaves a tombstone."""
        service = AccountsService(
            store=DynamoLedgerStore(self.client, self.name),
            cipher=FakeCipher(),
            index=FakeIndex(),
            currencies=frozenset({"INR"}),
            clock=TickingClock(),
            sleep=lambda _s: None,
        )
        asha = service.open_account("usr_asha", "SAVINGS", "INR", "corr-1")
        ravi = service.open_account("usr_ravi", "CURRENT", "INR", "corr-1")
        self.asha, self.ravi = asha.account_id, ravi.account_id
        self.numbers = tuple(str(view.account_number) for view in (asha, ravi))
        service.deposit("usr_admin", self.asha, 50_000, "INR", "NEFT-1", "corr-2")
        service.deposit("usr_admin", self.ravi, 20_000, "INR", "NEFT-2", "corr-3")

        def step(
            transfer_id: str, source: str, amount: int, destination: str | None = None
        ) -> dict[str, Any]:
            event = {"transfer_id": transfer_id, "source_account_id": source, "amount": amount}
            event |= {"currency": "INR", "correlation_id": f"corr-{transfer_id}"}
            return event | ({"destination_account_id": destination} if destination else {})

        service.reserve(step("trf_1", self.asha, 12_000))
        service.settle(step("trf_1", self.asha, 12_000, self.ravi))
        service.reserve(step("trf_2", self.ravi, 2_000))
        service.reserve(step("trf_3", self.asha, 1_000))
        service.release(step("trf_3", self.asha, 1_000))
        service.release(step("trf_4", self.asha, 500))

    def items(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {"TableName": self.name}
        while True:
            page = self.client.scan(**request)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                return items
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def personal_data(self) -> set[str]:
        """Every value the ledger holds that must never reach a log line or a report."""
        found = set(self.numbers)
        for item in self.items():
            for name in ("owner_id", "number_enc", "number_index"):
                if name in item:
                    found.add(item[name]["S"])
            if item["pk"]["S"].startswith("ACCTNUM#"):
                found.add(item["pk"]["S"].removeprefix("ACCTNUM#"))
        return found

    def set_number(self, pk: str, sk: str, name: str, value: int) -> None:
        self.client.update_item(
            TableName=self.name,
            Key={"pk": {"S": pk}, "sk": {"S": sk}},
            UpdateExpression="SET #n = :v",
            ExpressionAttributeNames={"#n": name},
            ExpressionAttributeValues={":v": {"N": str(value)}},
        )


@pytest.fixture
def ledger_table(dynamodb_endpoint: str) -> LedgerTable:
    table = LedgerTable(dynamodb_endpoint)
    table.write_ledger()
    return table


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, dynamodb_endpoint: str) -> dict[str, str]:
    # No local cloud in this state dir: the command uses boto3's own configuration, pointed at the emulator.
    env = {
        "VAULTPAY_STATE_DIR": str(tmp_path),
        "AWS_ENDPOINT_URL": dynamodb_endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    return env


# ---- the command ---------------------------------------------------------------------------------------


def test_reconcile_command_passes_a_clean_ledger_with_its_summary(
    aws_env: dict[str, str], ledger_table: LedgerTable
) -> None:
    # The installed entry point, as an operator runs it.
    done = subprocess.run(
        [sys.executable, "-m", "vaultpay_cli.main", "ops", "reconcile", "--table", ledger_table.name],
        capture_output=True,
        text=True,
        env={**os.environ, **aws_env, "COLUMNS": "160"},
        cwd=ROOT,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Ledger of {ledger_table.name}: OK." in done.stdout
    for line in ("customer accounts", "settlement shards", "open holds", "deposits", "violations"):
        assert line in done.stdout
    assert "70,000" in done.stdout  # total deposits and customer ledgers
    assert "Violations (" not in done.stdout


def test_reconcile_json_reports_the_totals(aws_env: dict[str, str], ledger_table: LedgerTable) -> None:
    result = CliRunner().invoke(app, ["ops", "reconcile", "--table", ledger_table.name, "--json"])

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["table"] == ledger_table.name
    assert body["ok"] is True
    # Entries: Asha CREDIT, HOLD, DEBIT, HOLD, RELEASE; Ravi CREDIT, CREDIT, HOLD; one DEBIT per deposit
    # on a shard (which shard is a hash of the random deposit id: one or two shards).
    assert (body["accounts_checked"], body["entries_checked"], body["deposits_checked"]) == (2, 10, 2)
    assert body["settlement_shards"] in (1, 2)
    assert (body["holds_checked"], body["open_holds"], body["open_hold_amount"]) == (4, 1, 2_000)
    assert (body["total_customer_ledger"], body["total_deposits"], body["total_settlement"]) == (
        70_000,
        70_000,
        -70_000,
    )
    assert body["total_customer_available"] == 68_000


def test_reconcile_exits_1_naming_a_corrupted_balance(
    aws_env: dict[str, str], ledger_table: LedgerTable
) -> None:
    # Given one balance off by one paisa, as a lost or doubled update would leave it
    ledger_table.set_number(f"ACCOUNT#{ledger_table.asha}", "ACCOUNT", "ledger", 38_001)

    result = CliRunner().invoke(app, ["ops", "reconcile", "--table", ledger_table.name])

    assert result.exit_code == 1, result.output
    assert "ledger_ne_postings" in result.output
    assert "money_not_conserved" in result.output
    assert ledger_table.asha in result.output
    assert "violations." in result.output
    body = json.loads(
        CliRunner().invoke(app, ["ops", "reconcile", "--table", ledger_table.name, "--json"]).stdout
    )
    violation = next(v for v in body["violations"] if v["check"] == "ledger_ne_postings")
    assert (violation["account_id"], violation["expected"], violation["actual"]) == (
        ledger_table.asha,
        38_000,
        38_001,
    )
    assert body["scans"] == 2  # confirmed by a second scan


def test_reconcile_exits_2_when_the_table_cannot_be_read(aws_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["ops", "reconcile", "--table", "no-such-AccountsTable"])

    assert result.exit_code == 2
    assert "Could not read the accounts table" in result.output


def test_reconcile_without_table_refuses_to_guess_between_several(
    aws_env: dict[str, str], dynamodb_endpoint: str
) -> None:
    LedgerTable(dynamodb_endpoint)
    LedgerTable(dynamodb_endpoint)

    result = CliRunner().invoke(app, ["ops", "reconcile"])

    assert result.exit_code == 2
    assert "Pass --table" in result.output


# ---- the scheduled handler -----------------------------------------------------------------------------


LAMBDA_CONTEXT = FakeLambdaContext(
    "vaultpay-test-ReconcileLedgerFunction", remaining_ms=300_000, memory_limit_in_mb=1024
)


class CurrentStdout:
    """sys.stdout as it is at each write (capsys swaps it per test)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def reconcile_app(
    monkeypatch: pytest.MonkeyPatch,
    aws_env: dict[str, str],
    ledger_table: LedgerTable,
) -> Iterator[ModuleType]:
    from vaultpay import bootstrap
    from vaultpay.shared import observability

    monkeypatch.setenv("ACCOUNTS_TABLE", ledger_table.name)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "accounts")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "VaultPay")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    bootstrap.reset()
    observability.get_metrics.cache_clear()
    module = load_handler("accounts/reconcile")
    # The logger's handler keeps the stream it was made with: make it write wherever stdout is now.
    handler = module.logger.registered_handler
    previous = handler.setStream(CurrentStdout())
    try:
        yield module
    finally:
        handler.setStream(previous)
        bootstrap.reset()


def schedule_event() -> dict[str, Any]:
    return json.loads((ROOT / "events" / "accounts" / "reconcile_schedule.json").read_text())


def emitted(stdout: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The EMF metrics document (each metric's values as a list) and the log records printed."""
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    metrics = next(line for line in lines if "_aws" in line)
    values = {k: v if isinstance(v, list) else [v] for k, v in metrics.items() if k.startswith("Ledger")}
    return {**metrics, **values}, [line for line in lines if "_aws" not in line]


def test_handler_reconciles_the_table_and_emits_zero_violations(
    reconcile_app: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every AWS call the handler makes, for its least-privilege policy (dynamodb:Scan only).
    from vaultpay.shared import aws

    calls: list[str] = []
    make_client = aws.aws_client

    def recorded_client(service: str, **options: Any) -> Any:
        client = make_client(service, **options)
        client.meta.events.register("before-call.*.*", lambda model, **_: calls.append(model.name))
        return client

    monkeypatch.setattr(aws, "aws_client", recorded_client)
    capsys.readouterr()

    body = reconcile_app.handler(schedule_event(), LAMBDA_CONTEXT)

    assert body["ok"] is True
    assert (body["accounts_checked"], body["violation_count"], body["total_deposits"]) == (2, 0, 70_000)
    metrics, logs = emitted(capsys.readouterr().out)
    assert metrics["LedgerViolations"] == [0.0]
    assert metrics["LedgerAccountsChecked"] == [2.0]
    names = {m["Name"] for m in metrics["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"LedgerViolations", "LedgerAccountsChecked"} <= names
    assert metrics["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "VaultPay"
    assert set(calls) == {"Scan"}
    assert len(calls) == reconcile_app.SEGMENTS  # one page per segment for this small table
    summary = next(line for line in logs if line["message"] == "ledger reconciled")
    assert (summary["level"], summary["total_customer_ledger"], summary["open_holds"]) == ("INFO", 70_000, 1)


def test_handler_counts_and_logs_each_violation_without_personal_data(
    reconcile_app: ModuleType, ledger_table: LedgerTable, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given Ravi's available balance that forgot the open hold
    ledger_table.set_number(f"ACCOUNT#{ledger_table.ravi}", "ACCOUNT", "available", 32_000)
    # and Asha's ledger one paisa up
    ledger_table.set_number(f"ACCOUNT#{ledger_table.asha}", "ACCOUNT", "ledger", 38_001)
    capsys.readouterr()

    body = reconcile_app.handler(schedule_event(), LAMBDA_CONTEXT)

    assert body["ok"] is False
    checks = {v["check"] for v in body["violations"]}
    assert "available_ne_ledger_minus_holds" in checks
    out = capsys.readouterr().out
    metrics, logs = emitted(out)
    assert ledger_table.asha in out  # ids are logged; personal data is not (below)
    assert body["violation_count"] > 0
    assert metrics["LedgerViolations"] == [float(body["violation_count"])]
    errors = [line for line in logs if line["message"] == "ledger violation"]
    assert len(errors) == body["violation_count"]
    assert all(line["level"] == "ERROR" for line in errors)
    hold_line = next(
        line
        for line in errors
        if line["check"] == "available_ne_ledger_minus_holds" and line["account_id"] == ledger_table.ravi
    )
    assert "ledger_ne_postings" in {line["check"] for line in errors}
    assert (hold_line["account_id"], hold_line["expected"], hold_line["actual"]) == (
        ledger_table.ravi,
        30_000,
        32_000,
    )
    personal = ledger_table.personal_data()
    assert len(personal) >= 8  # two owners, two numbers, their ciphertexts and blind indexes
    for value in personal:
        assert value not in out


@pytest.mark.filterwarnings("ignore:No application metrics:UserWarning")  # it stops before any metric
def test_handler_fails_loudly_without_its_table(
    reconcile_app: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vaultpay.shared.errors import ConfigurationError

    monkeypatch.delenv("ACCOUNTS_TABLE")

    with pytest.raises(ConfigurationError, match="ACCOUNTS_TABLE"):
        reconcile_app.handler(schedule_event(), LAMBDA_CONTEXT)

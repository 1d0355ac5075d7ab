"""`vaultpay ops reconcile`: checks the double entry over every account; exit status 1 on a violation.

The same check as the hourly ReconcileLedgerFunction (vaultpay.accounts.reconcile), run from an operator's
machine, on the target vaultpay_cli.target resolves (the one rule of every command). Exit status: 0 clean,
1 violations, 2 the table unreadable.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vaultpay_cli.context import StateDir
from vaultpay_cli.target import EndpointUrl, Profile, Region, Stack, Target, resolve_target

if TYPE_CHECKING:
    from vaultpay.accounts.reconcile import ReconcileReport

ops_ledger_app = typer.Typer(help="The ledger: reconcile balances with postings, holds and deposits.")

LOGICAL_ID = "AccountsTable"


def _unreadable(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(2)


def is_accounts_table(name: str) -> bool:
    """The physical names AccountsTable gets: `<stack>-AccountsTable` from the local cloud, and
    `<stack>-AccountsTable-<suffix>` from CloudFormation."""
    return name == LOGICAL_ID or name.endswith(f"-{LOGICAL_ID}") or f"-{LOGICAL_ID}-" in name


def accounts_table(client: Any, given: str | None, target: Target | None = None) -> str:
    """--table, else the stack's AccountsTable, else the one deployed AccountsTable the client can see (in
    --stack when given); never a guess between several."""
    if given:
        return given
    from_stack = target.resource(LOGICAL_ID) if target is not None else None
    if from_stack:
        return from_stack
    names: list[str] = []
    for page in client.get_paginator("list_tables").paginate():
        names.extend(
            name
            for name in page["TableNames"]
            if is_accounts_table(name) and (target is None or target.in_stack(name))
        )
    if len(names) != 1:
        found = ", ".join(names) if names else "none"
        raise _unreadable(f"Pass --table: tables deployed as {LOGICAL_ID}: {found}.")
    return names[0]


def _summary(table: str, report: ReconcileReport, elapsed_s: float) -> Any:
    from rich.table import Table

    summary = Table(title=f"Ledger of {table} ({elapsed_s:.2f} s)")
    summary.add_column("what", no_wrap=True)
    summary.add_column("value", justify="right", no_wrap=True)
    currencies = ", ".join(report.currencies) or "-"
    rows = [
        ("customer accounts", report.accounts_checked),
        ("settlement shards", report.settlement_shards),
        ("entries", report.entries_checked),
        ("holds", report.holds_checked),
        ("open holds", report.open_holds),
        ("deposits", report.deposits_checked),
    ]
    for what, count in rows:
        summary.add_row(what, f"{count:,}")
    amounts = [
        ("open hold amount", report.open_hold_amount),
        ("customer ledger", report.total_customer_ledger),
        ("customer available", report.total_customer_available),
        ("settlement shards' ledger", report.total_settlement),
        ("deposits", report.total_deposits),
    ]
    for what, amount in amounts:
        summary.add_row(f"{what} ({currencies}, minor units)", f"{amount:,}")
    count = len(report.violations)
    summary.add_row("violations", f"[bold red]{count:,}[/]" if count else "[green]0[/]")
    if report.scans > 1:
        summary.add_row("scans (violations found in each)", str(report.scans))
    return summary


def _violations(report: ReconcileReport) -> Any:
    from rich.table import Table

    table = Table(title=f"Violations ({len(report.violations)})", show_lines=True)
    # What an operator searches for (the check, the account id) never wraps; the explanation folds.
    width = max(max(len(v.check), len(v.account_id)) for v in report.violations)
    table.add_column("check / account", no_wrap=True, min_width=width)
    table.add_column("expected", justify="right", no_wrap=True)
    table.add_column("actual", justify="right", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for v in report.violations:
        table.add_row(
            f"{v.check}\n{v.account_id or '(whole ledger)'}",
            "" if v.expected is None else f"{v.expected:,}",
            "" if v.actual is None else f"{v.actual:,}",
            v.detail,
        )
    return table


@ops_ledger_app.command("reconcile")
def reconcile_ledger(
    table: Annotated[
        str | None,
        typer.Option("--table", help=f"Accounts table name (default: the one deployed as {LOGICAL_ID})"),
    ] = None,
    segments: Annotated[
        int, typer.Option("--segments", min=1, max=64, help="Parallel scan segments (threads)")
    ] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    profile: Profile = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    stack: Stack = None,
    state_dir: StateDir = None,
) -> None:
    """Check the ledger's double entry over every account (exit status 1 on any violation).

    Balance = postings, available = ledger - open holds, nothing negative, total money = total deposits.
    Exit status 2 when the table cannot be read.
    """
    from botocore.exceptions import BotoCoreError, ClientError
    from rich.console import Console

    from vaultpay.accounts.reconcile import reconcile_table

    target = resolve_target(
        profile=profile, region=region, endpoint_url=endpoint_url, stack=stack, state_dir=state_dir
    )
    target.announce()
    try:
        client = target.client("dynamodb")
        name = accounts_table(client, table, target)
        began = time.monotonic()
        report = reconcile_table(client, name, segments=segments)
    except (BotoCoreError, ClientError) as exc:
        raise _unreadable(f"Could not read the accounts table: {exc}") from exc
    elapsed = time.monotonic() - began
    if as_json:
        typer.echo(json.dumps({"table": name, **report.to_dict()}, indent=2))
    else:
        console = Console()
        console.print(_summary(name, report, elapsed))
        if report.violations:
            console.print(_violations(report))
        verdict = "OK" if report.ok else f"{len(report.violations)} violations"
        console.print(f"Ledger of {name}: {verdict}.", highlight=False)
    if not report.ok:
        raise typer.Exit(1)

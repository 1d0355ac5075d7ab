"""`vaultpay ops executions` and `ops execution <transfer_id>`: the transfer saga's runs and their histories.

Only AWS APIs are called (ListStateMachines, ListExecutions, DescribeExecution, GetExecutionHistory), so the
commands work the same against AWS, LocalStack and the local cloud; where they go is vaultpay_cli.target's
rule (--endpoint-url/--profile/--region, the environment, the running local cloud, AWS), as for every command.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer

from vaultpay_cli.context import StateDir, aws_errors, fail, stderr_console
from vaultpay_cli.ops_history import HistoryRow, describe_error, format_time, history_rows
from vaultpay_cli.target import EndpointUrl, Profile, Region, Stack, resolve_target

ops_saga_app = typer.Typer(help="The transfer saga: its executions and their histories.")

StateMachineOption = Annotated[
    str | None,
    typer.Option(
        "--state-machine",
        help="Name or ARN of the state machine (default: the one whose name ends with -transfer)",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]
STATE_MACHINE_SUFFIX = "-transfer"


class ExecutionStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ABORTED = "ABORTED"
    PENDING_REDRIVE = "PENDING_REDRIVE"


STATUS_STYLE = {
    "RUNNING": "cyan",
    "SUCCEEDED": "green",
    "FAILED": "bold red",
    "TIMED_OUT": "bold red",
    "ABORTED": "yellow",
    "PENDING_REDRIVE": "yellow",
}


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        minutes, rest = divmod(int(seconds), 60)
        return f"{minutes} m {rest:02d} s"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60:02d} m"


# ---- the state machine ---------------------------------------------------------------------------------


def transfer_state_machine(sfn: Any, given: str | None) -> str:
    """The ARN of --state-machine, else of the one state machine whose name ends with -transfer."""
    if given and given.startswith("arn:"):
        return given
    machines: list[dict[str, Any]] = []
    with aws_errors("list the state machines"):
        for page in sfn.get_paginator("list_state_machines").paginate():
            machines.extend(page["stateMachines"])
    if given:
        for machine in machines:
            if machine["name"] == given:
                return str(machine["stateMachineArn"])
        raise fail(f"No state machine named {given!r}.")
    found = [m for m in machines if m["name"].endswith(STATE_MACHINE_SUFFIX)]
    if len(found) != 1:
        names = ", ".join(m["name"] for m in found) or "none"
        raise fail(f"Pass --state-machine: state machines named *{STATE_MACHINE_SUFFIX}: {names}.", 2)
    return str(found[0]["stateMachineArn"])


def execution_arn(state_machine_arn: str, name: str) -> str:
    """Executions are named after the transfer id; their ARN follows from the state machine's."""
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":" + name


def _machine_name(arn: str) -> str:
    return arn.rsplit(":", 1)[-1]


# ---- ops executions ------------------------------------------------------------------------------------


def _run_time(execution: dict[str, Any], now: datetime) -> float:
    stop = execution.get("stopDate") or now
    return float((stop - execution["startDate"]).total_seconds())


@ops_saga_app.command("executions")
def list_executions(
    status: Annotated[
        ExecutionStatus | None,
        typer.Option("--status", case_sensitive=False, help="Only executions with this status"),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Show at most this many")] = 20,
    state_machine: StateMachineOption = None,
    as_json: JsonOption = False,
    profile: Profile = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    stack: Stack = None,
    state_dir: StateDir = None,
) -> None:
    """Recent transfer executions, newest first: transfer id (= execution name), status, start, duration."""
    from rich.console import Console
    from rich.table import Table

    target = resolve_target(
        profile=profile, region=region, endpoint_url=endpoint_url, stack=stack, state_dir=state_dir
    )
    target.announce()
    sfn = target.client("stepfunctions")
    machine = transfer_state_machine(sfn, state_machine or target.resource("TransferStateMachine"))
    request: dict[str, Any] = {"stateMachineArn": machine, "PaginationConfig": {"MaxItems": limit}}
    if status is not None:
        request["statusFilter"] = status.value
    executions: list[dict[str, Any]] = []
    name = _machine_name(machine)
    with aws_errors(f"list the executions of {name}"), stderr_console().status(f"Listing {name}…"):
        for page in sfn.get_paginator("list_executions").paginate(**request):
            executions.extend(page["executions"])
    executions = sorted(executions, key=lambda e: e["startDate"], reverse=True)[:limit]
    now = datetime.now(UTC)
    if as_json:
        rows = [
            {
                "transfer_id": e["name"],
                "status": e["status"],
                "start": format_time(e["startDate"]),
                "stop": format_time(e["stopDate"]) if e.get("stopDate") else None,
                "duration_s": round(_run_time(e, now), 3),
            }
            for e in executions
        ]
        typer.echo(json.dumps({"state_machine": machine, "executions": rows}, indent=2))
        return
    console = Console(highlight=False)
    which = f" with status {status.value}" if status else ""
    if not executions:
        console.print(f"No executions of {_machine_name(machine)}{which}.")
        return
    table = Table(title=f"Executions of {_machine_name(machine)}{which} (newest {len(executions)})")
    # The transfer id is what an operator copies: never cut nor wrapped, whatever the terminal's width; the
    # other columns fold to make room for it.
    id_width = max(len(str(e["name"])) for e in executions)
    table.add_column("transfer id", no_wrap=True, min_width=id_width)
    table.add_column("status", overflow="fold")
    table.add_column("start (UTC)", overflow="fold")
    table.add_column("duration", justify="right", overflow="fold")
    for e in executions:
        running = e["status"] == "RUNNING"
        duration = format_duration(_run_time(e, now))
        table.add_row(
            e["name"],
            f"[{STATUS_STYLE.get(e['status'], 'white')}]{e['status']}[/]",
            format_time(e["startDate"]),
            f"{duration} so far" if running else duration,
        )
    console.print(table)


# ---- ops execution <transfer_id> -----------------------------------------------------------------------


def _history_table(title: str, rows: list[HistoryRow]) -> Any:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("+s", justify="right", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("error", overflow="fold")
    previous_state = None
    for row in rows:
        event = row.event
        if row.retry:
            event = f"[bold yellow]{event} (retry {row.retry})[/]"
        elif row.failed:
            event = f"[bold red]{event}[/]"
        elif row.event == "ExecutionSucceeded":
            event = f"[bold green]{event}[/]"
        # The state's name is printed where it begins, so the saga reads down the first column.
        state = row.state if row.state != previous_state else ""
        previous_state = row.state
        table.add_row(
            str(row.id),
            f"[bold]{state}[/]" if state else "",
            event,
            row.time[11:],
            f"{row.elapsed_s:.3f}",
            format_duration(row.duration_s) if row.duration_s is not None else "",
            f"[red]{row.error}[/]" if row.error else "",
        )
    return table


def _count(n: int, noun: str) -> str:
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{n} {noun if n == 1 else plural}"


def _verdict(description: dict[str, Any], rows: list[HistoryRow]) -> str:
    status = str(description["status"])
    retries = sum(1 for r in rows if r.retry)
    failed_tasks = sum(1 for r in rows if r.failed and not r.event.startswith("Execution"))
    now = datetime.now(UTC)
    took = format_duration(_run_time(description, now))
    style = STATUS_STYLE.get(status, "white")
    counts = (
        f"{_count(len(rows), 'event')}, {_count(retries, 'retry')}, {_count(failed_tasks, 'failed attempt')}"
    )
    line = f"Execution {description['name']}: [{style}]{status}[/] after {took} ({counts})."
    if description.get("error") or description.get("cause"):
        line += f"\n[red]{describe_error(description.get('error', ''), description.get('cause', ''))}[/]"
    return line


@ops_saga_app.command("execution")
def show_execution(
    transfer_id: Annotated[str, typer.Argument(help="The transfer id (the execution's name), tr_…")],
    state_machine: StateMachineOption = None,
    as_json: JsonOption = False,
    profile: Profile = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    stack: Stack = None,
    state_dir: StateDir = None,
) -> None:
    """One execution's history as a table: state, event, time, duration, error; retries and failures marked.

    Exit status 1 when there is no execution of that name.
    """
    from rich.console import Console

    target = resolve_target(
        profile=profile, region=region, endpoint_url=endpoint_url, stack=stack, state_dir=state_dir
    )
    target.announce()
    sfn = target.client("stepfunctions")
    machine = transfer_state_machine(sfn, state_machine or target.resource("TransferStateMachine"))
    arn = execution_arn(machine, transfer_id)
    try:
        description = sfn.describe_execution(executionArn=arn)
    except sfn.exceptions.ExecutionDoesNotExist:
        raise fail(f"No execution {transfer_id!r} of {_machine_name(machine)}.") from None
    except sfn.exceptions.InvalidArn:
        raise fail(f"{transfer_id!r} is not an execution name (expected a transfer id, tr_…).") from None
    events: list[dict[str, Any]] = []
    reading = f"the history of {transfer_id}"
    with aws_errors(f"read {reading}"), stderr_console().status(f"Reading {reading}…"):
        for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
            events.extend(page["events"])
    events.sort(key=lambda e: int(e["id"]))
    rows = history_rows(events)
    if as_json:
        body = {
            "transfer_id": transfer_id,
            "execution_arn": arn,
            "status": description["status"],
            "start": format_time(description["startDate"]),
            "stop": format_time(description["stopDate"]) if description.get("stopDate") else None,
            "error": description.get("error"),
            "cause": description.get("cause"),
            "events": [asdict(row) for row in rows],
        }
        typer.echo(json.dumps(body, indent=2))
        return
    console = Console(highlight=False)
    started = format_time(description["startDate"])
    title = f"Execution {transfer_id} of {_machine_name(machine)}, started {started}"
    console.print(_history_table(title, rows))
    console.print(_verdict(description, rows))

"""`vaultpay ops executions` and `ops execution <transfer_id>`: the transfer saga's runs and their histories.

Only AWS APIs are called, so the commands work the same against AWS, LocalStack and the local cloud: the
saga's machine is EXPRESS, whose executions AWS keeps only in its CloudWatch Logs group (FilterLogEvents); a
STANDARD machine (the review machine, `--state-machine`) is read with ListExecutions, DescribeExecution and
GetExecutionHistory (vaultpay_cli.saga_history). Where they go is vaultpay_cli.target's rule
(--endpoint-url/--profile/--region, the environment, the running local cloud, AWS), as for every command.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import typer

from vaultpay_cli.context import StateDir, aws_errors, fail, stderr_console
from vaultpay_cli.ops_history import HistoryRow, describe_error, format_time, history_rows
from vaultpay_cli.saga_history import Execution, SagaHistory, execution_arn, merged_events
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


def review_machine_arn(state_machine_arn: str) -> str:
    """The review machine is the saga's name with -review (template.yaml names both)."""
    return state_machine_arn + "-review"


def _history(target: Any, sfn: Any, machine: str) -> SagaHistory:
    with aws_errors(f"describe {_machine_name(machine)}"):
        try:
            return SagaHistory(sfn, target.client("logs"), machine)
        except LookupError as exc:
            raise fail(str(exc)) from None


def _machine_name(arn: str) -> str:
    return arn.rsplit(":", 1)[-1]


# ---- ops executions ------------------------------------------------------------------------------------


def _run_time(execution: Execution, now: datetime) -> float:
    return float(((execution.stop or now) - execution.start).total_seconds())


@ops_saga_app.command("executions")
def list_executions(
    status: Annotated[
        ExecutionStatus | None,
        typer.Option("--status", case_sensitive=False, help="Only executions with this status"),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Show at most this many")] = 20,
    since: Annotated[
        int | None,
        typer.Option(
            "--since", min=1, help="Minutes back to look (an EXPRESS machine's log: default 24 hours)"
        ),
    ] = None,
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
    history = _history(target, sfn, machine)
    name = _machine_name(machine)
    since_at = datetime.now(UTC) - timedelta(minutes=since) if since else None
    with aws_errors(f"list the executions of {name}"), stderr_console().status(f"Listing {name}…"):
        executions = history.recent(limit, status.value if status else None, since_at)
    now = datetime.now(UTC)
    if as_json:
        rows = [
            {
                "transfer_id": e.name,
                "status": e.status,
                "start": format_time(e.start),
                "stop": format_time(e.stop) if e.stop else None,
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
    id_width = max(len(e.name) for e in executions)
    table.add_column("transfer id", no_wrap=True, min_width=id_width)
    table.add_column("status", overflow="fold")
    table.add_column("start (UTC)", overflow="fold")
    table.add_column("duration", justify="right", overflow="fold")
    for e in executions:
        running = e.status == "RUNNING"
        duration = format_duration(_run_time(e, now))
        table.add_row(
            e.name,
            f"[{STATUS_STYLE.get(e.status, 'white')}]{e.status}[/]",
            format_time(e.start),
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


def _verdict(execution: Execution, rows: list[HistoryRow]) -> str:
    retries = sum(1 for r in rows if r.retry)
    failed_tasks = sum(1 for r in rows if r.failed and not r.event.startswith("Execution"))
    took = format_duration(_run_time(execution, datetime.now(UTC)))
    style = STATUS_STYLE.get(execution.status, "white")
    counts = (
        f"{_count(len(rows), 'event')}, {_count(retries, 'retry')}, {_count(failed_tasks, 'failed attempt')}"
    )
    line = f"Execution {execution.name}: [{style}]{execution.status}[/] after {took} ({counts})."
    if execution.error or execution.cause:
        line += f"\n[red]{describe_error(execution.error, execution.cause)}[/]"
    return line


def _review(sfn: Any, machine: str, transfer_id: str) -> dict[str, Any] | None:
    """The transfer's review execution (STANDARD, named after it), when there is one."""
    arn = execution_arn(review_machine_arn(machine), transfer_id)
    try:
        described = sfn.describe_execution(executionArn=arn)
    except (sfn.exceptions.ExecutionDoesNotExist, sfn.exceptions.InvalidArn):
        return None
    return {
        "execution_arn": arn,
        "status": described["status"],
        "start": format_time(described["startDate"]),
        "stop": format_time(described["stopDate"]) if described.get("stopDate") else None,
    }


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
    """A transfer's saga as a table: state, event, time, duration, error; retries and failures marked.

    A reviewed transfer has two saga executions (before and after the decision) and a review execution
    between them. Exit status 1 when the transfer has no execution.
    """
    from rich.console import Console

    if not transfer_id.replace("_", "").replace("-", "").isalnum():
        raise fail(f"{transfer_id!r} is not an execution name (expected a transfer id, tr_…).")
    target = resolve_target(
        profile=profile, region=region, endpoint_url=endpoint_url, stack=stack, state_dir=state_dir
    )
    target.announce()
    sfn = target.client("stepfunctions")
    machine = transfer_state_machine(sfn, state_machine or target.resource("TransferStateMachine"))
    history = _history(target, sfn, machine)
    reading = f"the history of {transfer_id}"
    with aws_errors(f"read {reading}"), stderr_console().status(f"Reading {reading}…"):
        executions = history.of_transfer(transfer_id)
        review = _review(sfn, machine, transfer_id) if history.express else None
    if not executions:
        raise fail(f"No execution {transfer_id!r} of {_machine_name(machine)}.")
    first, last = executions[0], executions[-1]
    rows = history_rows(merged_events(executions))
    if as_json:
        body = {
            "transfer_id": transfer_id,
            "execution_arn": first.arn,
            "status": last.status,
            "start": format_time(first.start),
            "stop": format_time(last.stop) if last.stop else None,
            "error": last.error or None,
            "cause": last.cause or None,
            "executions": [
                {
                    "name": e.name,
                    "execution_arn": e.arn,
                    "status": e.status,
                    "start": format_time(e.start),
                    "stop": format_time(e.stop) if e.stop else None,
                }
                for e in executions
            ],
            "review": review,
            "events": [asdict(row) for row in rows],
        }
        typer.echo(json.dumps(body, indent=2))
        return
    console = Console(highlight=False)
    title = f"Execution {transfer_id} of {_machine_name(machine)}, started {format_time(first.start)}"
    console.print(_history_table(title, rows))
    for execution in executions:
        console.print(_verdict(execution, history_rows(execution.events)))
    if review is not None:
        style = STATUS_STYLE.get(str(review["status"]), "white")
        console.print(f"Review {transfer_id}: [{style}]{review['status']}[/] since {review['start']}.")

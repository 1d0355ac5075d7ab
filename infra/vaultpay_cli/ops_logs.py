"""`vaultpay ops logs <Function>`: a function's recent CloudWatch Logs, filtered, or followed as they arrive.

The function is found by ListFunctions (its name, or the logical id its physical name carries:
`<stack>-<LogicalId>` from the local cloud, `<stack>-<LogicalId>-<suffix>` from CloudFormation); its log group
is the one its LoggingConfig names, `/aws/lambda/<name>` by default. The local cloud ships every function's
output to CloudWatch Logs (moto), so FilterLogEvents reads the same lines locally as on AWS. moto applies
plain-term filter patterns but ignores JSON ones (`{ $.level = "ERROR" }`), which then match every event.
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from vaultpay_cli.context import StateDir, aws_errors, error_code, fail, stderr_console
from vaultpay_cli.ops_history import format_time
from vaultpay_cli.ops_metrics import ops_metrics_app
from vaultpay_cli.target import EndpointUrl, Profile, Region, Stack, resolve_target

ops_logs_app = typer.Typer(help="CloudWatch: function logs and key metrics.")
ops_logs_app.add_typer(ops_metrics_app)  # merges `ops metrics`: main.py registers logs and metrics at once

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Event ids already printed while following: enough to cover any one poll's overlap.
SEEN_IDS = 10_000


def parse_since(text: str) -> float:
    """'90s', '15m', '2h', '1d' → seconds."""
    match = DURATION.match(text)
    if not match:
        raise typer.BadParameter(f"{text!r} is not a duration like 30s, 15m, 2h or 1d", param_hint="--since")
    return float(match.group(1)) * SECONDS[match.group(2)]


def matches_function(name: str, wanted: str) -> bool:
    """`wanted` is the function's name, or the logical id its physical name was made from."""
    return name == wanted or name.endswith(f"-{wanted}") or f"-{wanted}-" in name


def resolve_function(lambda_client: Any, wanted: str) -> tuple[str, str]:
    """(function name, log group) of the one deployed function `wanted` names; exits 1 when none does."""
    functions: list[dict[str, Any]] = []
    with aws_errors("list the functions"):
        for page in lambda_client.get_paginator("list_functions").paginate():
            functions.extend(page["Functions"])
    exact = [f for f in functions if f["FunctionName"] == wanted]
    found = exact or [f for f in functions if matches_function(f["FunctionName"], wanted)]
    if not found:
        known = sorted(f["FunctionName"] for f in functions)
        listing = ", ".join(known) if len(known) <= 60 else ", ".join(known[:60]) + ", …"
        raise fail(f"No function {wanted!r}. Deployed: {listing or 'none'}.")
    if len(found) > 1:
        names = ", ".join(sorted(f["FunctionName"] for f in found))
        raise fail(f"{wanted!r} names several functions: {names}. Pass the full name.", 2)
    function = found[0]
    name = str(function["FunctionName"])
    group = (function.get("LoggingConfig") or {}).get("LogGroup") or f"/aws/lambda/{name}"
    return name, str(group)


def log_events(
    logs: Any, group: str, *, start_ms: int, pattern: str | None, end_ms: int | None = None
) -> Iterator[dict[str, Any]]:
    """Every event of the group from start_ms (to end_ms), all streams interleaved, page by page."""
    request: dict[str, Any] = {"logGroupName": group, "startTime": start_ms}
    if end_ms is not None:
        request["endTime"] = end_ms
    if pattern:
        request["filterPattern"] = pattern
    for page in logs.get_paginator("filter_log_events").paginate(**request):
        yield from page.get("events", [])


def render_event(event: dict[str, Any]) -> Any:
    """time, the worker (end of the stream name), the message; error lines in red."""
    from rich.text import Text

    moment = datetime.fromtimestamp(event["timestamp"] / 1000, UTC)
    message = str(event.get("message", "")).rstrip("\n")
    line = Text(f"{format_time(moment)} ", style="dim")
    line.append(f"{str(event.get('logStreamName', ''))[-6:]} ", style="dim")
    errored = '"level":"ERROR"' in message or message.startswith(("[ERROR]", "Traceback"))
    line.append(message, style="red" if errored else "")
    return line


def event_json(event: dict[str, Any]) -> dict[str, Any]:
    """One log event for --json: its time (UTC, as the table), stream and message, untouched."""
    moment = datetime.fromtimestamp(event["timestamp"] / 1000, UTC)
    return {
        "time": format_time(moment),
        "stream": event.get("logStreamName"),
        "message": str(event.get("message", "")).rstrip("\n"),
    }


def _event_key(event: dict[str, Any]) -> str:
    # AWS gives every event an id; fall back to what identifies one where an emulator might not.
    return str(event.get("eventId") or (event.get("logStreamName"), event["timestamp"], event.get("message")))


@ops_logs_app.command("logs")
def function_logs(
    function: Annotated[str, typer.Argument(help="Logical id (TransferStatusFunction) or function name")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines; Ctrl-C stops")
    ] = False,
    pattern: Annotated[
        str | None,
        typer.Option(
            "--filter",
            help='CloudWatch Logs filter pattern: terms, "a phrase", -excluded '
            "(JSON patterns work on AWS only; moto ignores them)",
        ),
    ] = None,
    since: Annotated[str, typer.Option("--since", help="How far back: 30s, 15m, 2h, 1d")] = "1h",
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most the last N lines")] = 100,
    interval: Annotated[float, typer.Option("--interval", min=0.2, help="Seconds between polls")] = 2.0,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="One JSON document of the lines (with --follow, one JSON object a line)"),
    ] = False,
    profile: Profile = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    stack: Stack = None,
    state_dir: StateDir = None,
) -> None:
    """A function's recent log lines (FilterLogEvents on its log group), oldest first; --follow polls."""
    from rich.console import Console

    window_s = parse_since(since)
    notes = stderr_console()
    target = resolve_target(
        profile=profile, region=region, endpoint_url=endpoint_url, stack=stack, state_dir=state_dir
    )
    target.announce()
    wanted = target.resource(function) if target.kind == "local cloud" else None
    wanted = wanted or target.stack_resources().get(function) or function
    name, group = resolve_function(target.client("lambda"), wanted)
    logs = target.client("logs")
    if group != f"/aws/lambda/{name}":
        notes.print(f"{name} logs to the shared group {group}: lines of other functions may show too.")
    if pattern and pattern.lstrip().startswith("{") and target.is_local:
        notes.print("Note: moto ignores JSON filter patterns: every event matches.")
    console = Console(highlight=False, soft_wrap=True)
    start_ms = int((time.time() - window_s) * 1000)
    recent: deque[dict[str, Any]] = deque(maxlen=limit)
    seen: deque[str] = deque(maxlen=SEEN_IDS)
    group_exists = True
    with aws_errors(f"read {group}"), notes.status(f"Reading {group}…"):
        try:
            for event in log_events(logs, group, start_ms=start_ms, pattern=pattern):
                recent.append(event)
        except logs.exceptions.ResourceNotFoundException:
            group_exists = False
    shown = sorted(recent, key=lambda e: (e["timestamp"], e.get("ingestionTime", 0)))
    if as_json and not follow:
        document = {"function": name, "log_group": group, "events": [event_json(e) for e in shown]}
        typer.echo(json.dumps(document, indent=2))
    for event in shown:
        if as_json and follow:
            typer.echo(json.dumps(event_json(event)))
        elif not as_json:
            console.print(render_event(event))
        seen.append(_event_key(event))
        start_ms = max(start_ms, int(event["timestamp"]))
    if not group_exists:
        notes.print(f"No log group {group} yet: {name} has not logged anything.")
    elif not recent:
        which = f" matching {pattern!r}" if pattern else ""
        notes.print(f"No lines{which} in {group} in the last {since}.")
    if not follow:
        return
    notes.print(f"Following {group} every {interval:g} s; Ctrl-C stops.")
    try:
        while True:
            console.file.flush()
            time.sleep(interval)
            try:
                fresh = list(log_events(logs, group, start_ms=start_ms, pattern=pattern))
            except Exception as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    continue  # the function has not run yet: its group appears with its first line
                with aws_errors(f"read {group}"):
                    raise
            for event in sorted(fresh, key=lambda e: (e["timestamp"], e.get("ingestionTime", 0))):
                key = _event_key(event)
                if key in seen:
                    continue  # polls overlap by the last timestamp, so no line in that millisecond is lost
                seen.append(key)
                if as_json:
                    typer.echo(json.dumps(event_json(event)))
                else:
                    console.print(render_event(event))
                start_ms = max(start_ms, int(event["timestamp"]))
    except KeyboardInterrupt:
        notes.print("Stopped.")

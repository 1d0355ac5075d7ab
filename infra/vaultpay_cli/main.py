"""The `vaultpay` command: run the local cloud, invoke functions, and (later) admin and ops commands."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from vaultpay_cli.context import StateDir, aws_errors, local_state, repo_root, state_dir_or_default
from vaultpay_cli.demo import demo_app
from vaultpay_cli.local_down import local_down_app
from vaultpay_cli.local_env import local_env_app
from vaultpay_cli.ops_audit import ops_audit_app
from vaultpay_cli.ops_events import ops_events_app
from vaultpay_cli.ops_ledger import ops_ledger_app
from vaultpay_cli.ops_logs import ops_logs_app
from vaultpay_cli.ops_saga import ops_saga_app
from vaultpay_cli.smoke import smoke_app
from vaultpay_cli.target import (
    EndpointUrl,
    Profile,
    Region,
    Stack,
    Target,
    Yes,
    invoke_when_not_throttled,
    resolve_target,
)

app = typer.Typer(help="VaultPay developer and operator commands.", no_args_is_help=True)
local_app = typer.Typer(
    help="The local cloud: the whole stack on this machine, no Docker.", no_args_is_help=True
)
app.add_typer(local_app, name="local")
local_app.add_typer(local_down_app)  # merges `local down`
local_app.add_typer(local_env_app)  # merges `local env-vars` (sam local invoke --env-vars)
admin_app = typer.Typer(help="Operator commands that change what users can do.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
app.add_typer(demo_app)  # merges `demo` (make demo)
app.add_typer(smoke_app)  # merges `smoke` (the post-deploy check)
ops_app = typer.Typer(help="Operations: audit chain, events, dead letters.", no_args_is_help=True)
app.add_typer(ops_app, name="ops")
ops_app.add_typer(ops_audit_app, name="audit")
ops_app.add_typer(ops_events_app)  # merges `ops events ...` and `ops dlq ...`
ops_app.add_typer(ops_ledger_app)  # merges `ops reconcile`
ops_app.add_typer(ops_saga_app)  # merges `ops executions` and `ops execution <transfer_id>`
ops_app.add_typer(ops_logs_app)  # merges `ops logs <Function>` and `ops metrics`


def _print_version(value: bool) -> None:
    if value:
        # The package's own constant, not importlib.metadata: an editable install's metadata keeps the version
        # of its last `pip install`, and vaultpay/__init__.py imports nothing.
        from vaultpay import __version__

        typer.echo(f"vaultpay {__version__}")
        raise typer.Exit()


@app.callback()
def _root_options(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """VaultPay developer and operator commands."""


def _parameter_overrides(pairs: list[str]) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{pair!r} is not Name=Value", param_hint="--parameter")
        overrides[name] = value
    return overrides


@local_app.command("up")
def local_up(
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Delete the saved state (data, keys, executions) and start empty.")
    ] = False,
    edge_port: Annotated[int, typer.Option(help="AWS endpoint (LocalStack-compatible); 0 = any free")] = 4566,
    api_port: Annotated[int, typer.Option(help="API Gateway emulator; 0 = any free")] = 3000,
    nats_port: Annotated[int, typer.Option(help="NATS client port; 0 = any free")] = 4222,
    nats_monitor_port: Annotated[int, typer.Option(help="NATS monitoring port; 0 = any free")] = 8222,
    nats_cluster: Annotated[
        int,
        typer.Option(
            help="NATS JetStream nodes: 1, or 3 for a cluster on loopback (ports count up from --nats-port "
            "and --nats-monitor-port, routes from --nats-port + 2000; streams and consumers get 3 replicas)"
        ),
    ] = 1,
    template: Annotated[
        list[Path] | None,
        typer.Option("--template", "-t", help="Templates to deploy (default template.yaml)"),
    ] = None,
    time_scale: Annotated[float, typer.Option(help="Divide schedule intervals by this (demos, tests)")] = 1.0,
    in_memory: Annotated[
        bool, typer.Option("--in-memory", help="Keep nothing between runs (data, keys, secrets, executions)")
    ] = False,
    nats_duplicate_window: Annotated[
        float | None,
        typer.Option(help="JetStream de-duplication window in seconds for every stream (tests)", min=0.1),
    ] = None,
    parameter: Annotated[
        list[str] | None,
        typer.Option("--parameter", "-p", help="Template parameter Name=Value over samconfig's (repeatable)"),
    ] = None,
    state_dir: StateDir = None,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Hot reload: a changed function or layer is rebuilt and its warm workers retire, so the "
            "next request runs the new code (no restart)",
        ),
    ] = False,
    code: Annotated[
        str,
        typer.Option(
            help="What the functions run: auto (sam build's output on the template's Python when fresh and "
            "installed, else the source tree with a warning), build (insist), source (the venv's Python)",
        ),
    ] = "auto",
) -> None:
    """Start the local cloud in the foreground; Ctrl-C stops everything it started."""
    from rich.console import Console

    from localcloud.cloud import CloudConfig, LocalCloud
    from localcloud.services import LocalCloudError
    from localcloud.template import TemplateError
    from vaultpay_cli.localcloud_plugin import VaultPayPlugin

    console = Console(stderr=True)
    if code not in ("auto", "build", "source"):
        raise typer.BadParameter(f"{code!r} is not auto, build or source", param_hint="--code")
    root = repo_root()
    templates = [t.resolve() for t in (template or [root / "template.yaml"])]
    config = CloudConfig(
        root=root,
        templates=templates,
        state_dir=state_dir_or_default(state_dir),
        edge_port=edge_port,
        api_port=api_port,
        nats_port=nats_port,
        nats_monitor_port=nats_monitor_port,
        nats_cluster=nats_cluster,
        fresh=fresh,
        persist=not in_memory,
        time_scale=time_scale,
        nats_duplicate_window_s=nats_duplicate_window,
        parameter_overrides=_parameter_overrides(parameter or []),
        code=code,
        watch=watch,
    )

    def report(piece: str, url: str, state: str) -> None:
        console.print(f"[bold green]✔[/] {piece:<28} [cyan]{url}[/]  {state}")

    async def main() -> int:
        cloud = LocalCloud(config, report=report, plugins=[VaultPayPlugin(root)])
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        console.print(f"[bold]VaultPay local cloud[/] starting (state in {config.state_dir})")
        try:
            await cloud.start()
        except (LocalCloudError, TemplateError) as exc:
            console.print(f"[bold red]✘[/] {exc}")
            return 1
        console.print(
            f"[bold green]Ready[/] in {cloud.ready_at - cloud.started_at:.1f} s. "
            f"API {cloud.endpoints()['api']}  AWS endpoint {cloud.edge_url}  "
            f"Ops console {cloud.edge_url}/_ops/. Ctrl-C stops."
        )
        await stop.wait()
        console.print("Stopping…")
        await cloud.stop()
        console.print("[bold]Stopped.[/]")
        return 0

    raise typer.Exit(asyncio.run(main()))


@local_app.command("status")
def local_status(
    state_dir: StateDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw status document")] = False,
) -> None:
    """Report what of the local cloud is up (exit status 1 when it is not running)."""
    import urllib.request

    from rich.console import Console
    from rich.table import Table

    console = Console()
    state = local_state(state_dir)
    if state is None:
        console.print("The local cloud is not running. Start it with `make run` (or `vaultpay local up`).")
        raise typer.Exit(1)
    url = state["endpoints"]["edge"] + "/_localcloud/status"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback only
            live: dict[str, Any] = json.loads(resp.read())
    except OSError as exc:
        console.print(f"The local cloud (pid {state['pid']}) does not answer on {url}: {exc}")
        raise typer.Exit(1) from exc
    if as_json:
        print(json.dumps(live, indent=2))
        return
    table = Table(title=f"VaultPay local cloud (pid {live['pid']})")
    # Endpoints and names are copied from here: on a narrow terminal they fold whole, never cut with "…".
    table.add_column("piece", overflow="fold")
    table.add_column("endpoint", overflow="fold")
    table.add_column("state")
    endpoints = live["endpoints"]
    node_urls = {node.get("key"): node["url"] for node in (live.get("nats") or {}).get("nodes", [])}
    for name, ok in live["services"].items():
        url = node_urls.get(name) or endpoints.get(name) or ""
        table.add_row(name, url, "[green]up[/]" if ok else "[red]down[/]")
    table.add_row("edge", endpoints["edge"], "[green]up[/]")
    for name, api_url in endpoints.get("apis", {}).items():
        table.add_row(f"api {name}", api_url, "[green]up[/]")
    console.print(table)
    nats = live.get("nats") or {}
    if nats:
        console.print(_nats_table(nats))
    functions = Table(title="Lambda functions")
    for column in ("function", "warm", "busy", "invocations", "cold starts"):
        functions.add_column(column, overflow="fold")
    for name, stats in sorted(live.get("lambda", {}).items()):
        functions.add_row(
            name,
            *(str(stats.get(k, "")) for k in ("warm", "busy", "invocations", "cold_starts")),
        )
    console.print(functions)


def _nats_table(nats: dict[str, Any]) -> Any:
    """The NATS nodes, and the VAULTPAY stream's leader and replicas (localcloud.nats_cluster's report)."""
    from rich.table import Table

    leader = nats.get("stream_leader")
    title = (
        f"NATS {'cluster ' + nats['cluster'] if nats.get('cluster') else 'server'}: "
        f"{nats.get('nodes_up', 0)}/{len(nats.get('nodes', []))} nodes up, stream {nats.get('stream')} "
        f"leader {leader or '[red]none[/]'}, {nats.get('replicas_current', 0)}/{nats.get('replicas', 0)} "
        "replicas current"
    )
    table = Table(title=title)
    for column in ("node", "url", "state", "stream"):
        table.add_column(column, overflow="fold")
    replicas = {r["name"]: r for r in nats.get("replica_detail", [])}
    for node in nats.get("nodes", []):
        if node["name"] == leader:
            role = "leader"
        elif node["name"] in replicas:
            replica = replicas[node["name"]]
            role = "current" if replica["current"] else f"behind ({replica['lag']} behind)"
        else:
            role = ""
        state = "[green]up[/]" if node["up"] else "[red]down[/]"
        if node["name"] in nats.get("restarting", []):
            state += " (restarting)"
        table.add_row(node["name"], node["url"], state, role)
    return table


def _operator_identity(target: Target) -> str:
    """Who runs this command, for the new admin's event: `local:<login name>` against this machine, else the
    IAM principal's ARN (STS GetCallerIdentity)."""
    if target.is_local:
        import getpass

        name = "".join(c for c in getpass.getuser() if "!" <= c <= "~") or "unknown"
        return f"local:{name}"[:128]
    return target.caller_arn()[:128]


@admin_app.command("create-user")
def admin_create_user(
    email: Annotated[str, typer.Option(help="The admin's e-mail address")],
    full_name: Annotated[str, typer.Option("--full-name", help="The admin's full name")],
    phone: Annotated[str, typer.Option(help="E.164 phone number, e.g. +919876543210")],
    password: Annotated[
        str | None, typer.Option(help="12..128 characters; prompted for (hidden) when left out")
    ] = None,
    function_name: Annotated[
        str | None,
        typer.Option(help="CreateAdminFunction's name (default: the stack's, or the one deployed as such)"),
    ] = None,
    profile: Profile = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    stack: Stack = None,
    yes: Yes = False,
    state_dir: StateDir = None,
) -> None:
    """Create an `admin` user (the only way to get one) and print its TOTP enrolment as JSON."""
    target = resolve_target(
        profile=profile, region=region, endpoint_url=endpoint_url, stack=stack, state_dir=state_dir
    )
    name = function_name or target.function_name("CreateAdminFunction")
    target.confirm_write(f"create the admin {email} with {name}", yes=yes)
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    payload = {
        "email": email,
        "password": password,
        "full_name": full_name,
        "phone": phone,
        "operator": _operator_identity(target),
    }
    with aws_errors(f"invoke {name}"):
        response = invoke_when_not_throttled(
            target.client("lambda"), FunctionName=name, Payload=json.dumps(payload).encode()
        )
        body = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError") or not isinstance(body, dict) or "user_id" not in body:
        # The function's error carries a code and a message meant for the operator, never the password.
        typer.echo(f"Could not create the admin: {json.dumps(body)}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(body, indent=2))


@app.command("invoke")
def invoke(
    function: Annotated[str, typer.Argument(help="Logical id (HealthFunction) or function name")],
    event: Annotated[Path | None, typer.Option("--event", "-e", help="Event JSON file (default: {})")] = None,
    profile: Profile = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    stack: Stack = None,
    yes: Yes = False,
    state_dir: StateDir = None,
) -> None:
    """Invoke a function: the Docker-free `sam local invoke`; off this machine, after confirmation."""
    target = resolve_target(
        profile=profile, region=region, endpoint_url=endpoint_url, stack=stack, state_dir=state_dir
    )
    names = {
        info["logical_id"]: name
        for name, info in ((target.state or {}).get("functions") or {}).items()
        if target.in_stack(name)
    }
    name = names.get(function) or target.stack_resources().get(function) or function
    if names and name not in names.values():
        typer.echo(f"No function {function!r}; deployed: {', '.join(sorted(names))}", err=True)
        raise typer.Exit(2)
    payload = event.read_bytes() if event else b"{}"
    try:
        json.loads(payload)
    except ValueError as exc:
        typer.echo(f"{event} is not JSON: {exc}", err=True)
        raise typer.Exit(2) from exc
    target.confirm_write(f"invoke {name}", yes=yes)
    typer.echo(f"Invoking {function} ({name})", err=True)
    began = time.monotonic()
    with aws_errors(f"invoke {name}"):
        response = invoke_when_not_throttled(
            target.client("lambda"), FunctionName=name, Payload=payload, LogType="Tail"
        )
    elapsed = (time.monotonic() - began) * 1000
    if response.get("LogResult"):
        sys.stderr.write(base64.b64decode(response["LogResult"]).decode(errors="replace"))
    body = response["Payload"].read().decode()
    typer.echo(f"Round trip {elapsed:.1f} ms", err=True)
    typer.echo(body)
    if response.get("FunctionError"):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()

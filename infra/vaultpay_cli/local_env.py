"""`vaultpay local env-vars`: a SAM `--env-vars` file from the running local cloud, so `sam local invoke` runs
a function in SAM's own container against the local cloud.

The file maps each function's logical id to its environment as the local cloud resolved it (the Lambda API's
ListFunctions: the template's variables with every intrinsic resolved), plus what the local cloud gives every
worker (the endpoint, test credentials). Every URL naming this machine (127.0.0.1, localhost) is rewritten to
the host as a container sees it, `host.docker.internal` by default: the edge, DynamoDB, the NATS nodes.
SAM only overrides variables the template declares for the function (one the template does not name is
ignored): the template declares AWS_ENDPOINT_URL on the local stage for this (LocalEndpointUrl).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from vaultpay_cli.context import LOCAL_REGION, StateDir, aws_errors, fail, local_state
from vaultpay_cli.target import local_client

local_env_app = typer.Typer()

# scheme://<loopback host>: the part of a URL a container must reach through the host instead.
LOOPBACK_URL = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?:127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[::1\])"
)
DEFAULT_HOST = "host.docker.internal"


def container_view(value: str, host: str) -> str:
    """`value` with every loopback URL in it (one, or a comma-separated list) pointing at `host`."""
    return LOOPBACK_URL.sub(lambda m: m.group("scheme") + host, value)


def worker_variables(edge_url: str) -> dict[str, str]:
    """What the local cloud sets for every worker on top of the template (localcloud.cloud.worker_env), less
    what SAM sets itself (AWS_REGION and the reserved AWS_LAMBDA_* variables)."""
    return {
        "AWS_ENDPOINT_URL": edge_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_XRAY_SDK_ENABLED": "false",
        "VAULTPAY_LOCAL_CLOUD": "1",
    }


def env_vars_document(
    state: dict[str, Any], configurations: list[dict[str, Any]], host: str, stack: str | None = None
) -> dict[str, Any]:
    """{"<LogicalId>": {VAR: value, ...}, ...} for every function the state file names (of `stack` only,
    when given: the local cloud names functions `<stack>-<LogicalId>`)."""
    logical_ids = {
        name: str(info["logical_id"])
        for name, info in (state.get("functions") or {}).items()
        if stack is None or name == f"{stack}-{info['logical_id']}"
    }
    common = worker_variables(str(state["endpoints"]["edge"]))
    document: dict[str, Any] = {}
    for configuration in configurations:
        logical_id = logical_ids.get(str(configuration["FunctionName"]))
        if logical_id is None:
            continue  # another stack's, or deployed after the state file was written
        if logical_id in document:
            raise fail(f"Two stacks deploy a {logical_id}: pick one with --stack.", 2)
        variables = {**common, **((configuration.get("Environment") or {}).get("Variables") or {})}
        document[logical_id] = {
            key: container_view(str(value), host) for key, value in sorted(variables.items())
        }
    return dict(sorted(document.items()))


@local_env_app.command("env-vars")
def local_env_vars(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the file here (default: stdout)")
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help=(
                "This machine as a container sees it (Linux without Docker Desktop: 127.0.0.1, with"
                " `sam local invoke --docker-network host`)"
            ),
        ),
    ] = DEFAULT_HOST,
    stack: Annotated[
        str | None, typer.Option("--stack", help="Only this stack's functions (when several are deployed)")
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Write a `sam local invoke --env-vars` file: every function's environment in the running local cloud."""
    state = local_state(state_dir)
    if state is None:
        raise fail("The local cloud is not running: start it with `make run` (or `vaultpay local up`).")
    edge = str(state["endpoints"]["edge"])
    configurations: list[dict[str, Any]] = []
    with aws_errors(f"list the functions of the local cloud at {edge}"):
        for page in local_client("lambda", edge).get_paginator("list_functions").paginate():
            configurations.extend(page["Functions"])
    document = env_vars_document(state, configurations, host, stack)
    text = json.dumps(document, indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    out.write_text(text)
    typer.echo(f"Wrote {out}: {len(document)} functions, endpoints at {host}.", err=True)

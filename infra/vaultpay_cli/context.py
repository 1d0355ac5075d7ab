"""Where the `vaultpay` commands go: the checkout, the running local cloud (its state file), the boto3 clients
for it or for AWS, and how an AWS error becomes one line.

The command modules take their target from here and never import main.py, the entry point that registers
them (tests/unit/cli/test_context.py keeps the import graph free of circles). The rules differ by command:

- `aws_client` (ops executions, logs, metrics): the endpoint AWS_ENDPOINT_URL names when it is set, else the
  running local cloud's edge, else AWS.
- `lambda_client` (invoke, admin create-user, ops audit): the running local cloud's edge, else boto3's own
  configuration when AWS_ENDPOINT_URL is set; with neither it exits 1 (start the local cloud).
- `dynamodb_client` (ops audit verify and replay, ops reconcile): the local cloud of the state it is given,
  else boto3's own configuration (AWS, or the endpoint AWS_ENDPOINT_URL names).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

StateDir = Annotated[Path | None, typer.Option("--state-dir", help="Where the local cloud keeps its state.")]
# The local cloud's edge answers for every AWS service, in this region, accepting any credentials.
LOCAL_REGION = "us-east-1"


def repo_root() -> Path:
    """The checkout this CLI belongs to (it is installed editable from it), or VAULTPAY_ROOT."""
    given = os.environ.get("VAULTPAY_ROOT")
    return Path(given).resolve() if given else Path(__file__).resolve().parents[2]


def default_state_dir() -> Path:
    return Path(os.environ.get("VAULTPAY_STATE_DIR") or repo_root() / ".localcloud")


def state_dir_or_default(state_dir: Path | None) -> Path:
    """--state-dir, else VAULTPAY_STATE_DIR, else the checkout's .localcloud; absolute."""
    return (state_dir or default_state_dir()).resolve()


def local_state(state_dir: Path | None) -> dict[str, Any] | None:
    """The running local cloud's state file (its endpoints, functions...), or None when none runs there."""
    from localcloud.cloud import read_state

    return read_state(state_dir_or_default(state_dir))


def is_local(state_dir: Path | None) -> bool:
    """True when `aws_client` talks to an emulator (an explicit endpoint or the running local cloud)."""
    return bool(os.environ.get("AWS_ENDPOINT_URL")) or local_state(state_dir) is not None


def edge_options(edge_url: str) -> dict[str, str]:
    """boto3 client arguments for the local cloud's edge at `edge_url`."""
    return {
        "endpoint_url": edge_url,
        "region_name": LOCAL_REGION,
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",  # the emulators accept any credentials
    }


def edge_client(service: str, edge_url: str) -> Any:
    """A boto3 client for `service` on the local cloud's edge at `edge_url`."""
    import boto3

    # Typed as Any: the stubs' overloads want a literal service name.
    client: Any = boto3.client
    return client(service, **edge_options(edge_url))


def aws_client(service: str, state_dir: Path | None) -> Any:
    """A boto3 client: boto3's own configuration when AWS_ENDPOINT_URL is set (the operator chose the
    endpoint) or no local cloud runs (AWS itself); otherwise the running local cloud's edge."""
    import boto3
    from botocore.config import Config

    state = None if os.environ.get("AWS_ENDPOINT_URL") else local_state(state_dir)
    config = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 3})
    # Typed as Any: the stubs' overloads want a literal service name.
    session: Any = boto3.session.Session()
    with aws_errors("create a client"):
        if state is None:
            return session.client(service, config=config)
        return session.client(service, config=config, **edge_options(state["endpoints"]["edge"]))


def lambda_client(state_dir: Path | None) -> tuple[Any, dict[str, str]]:
    """A Lambda client for the running local cloud (from its state file), or for AWS when none runs and
    AWS_ENDPOINT_URL is unset; plus the logical-id → function-name map when the local cloud is known."""
    import boto3

    state = local_state(state_dir)
    if state is None:
        if os.environ.get("AWS_ENDPOINT_URL"):
            return boto3.client("lambda"), {}
        typer.echo("The local cloud is not running: start it with `make run`.", err=True)
        raise typer.Exit(1)
    client = edge_client("lambda", state["endpoints"]["edge"])
    return client, {info["logical_id"]: name for name, info in state["functions"].items()}


def dynamodb_client(state: dict[str, Any] | None) -> Any:
    """A DynamoDB client for the running local cloud's edge; without one, boto3's own configuration:
    AWS itself when AWS_ENDPOINT_URL is unset, or the endpoint it names (LocalStack)."""
    import boto3

    if state is None:
        return boto3.client("dynamodb")
    return edge_client("dynamodb", state["endpoints"]["edge"])


# ---- errors ---------------------------------------------------------------------------------------------


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def aws_errors(doing: str) -> Iterator[None]:
    """An AWS error the command does not handle itself becomes one line and exit status 2, not a traceback."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise fail(
            f"Could not {doing}: {error.get('Code', 'Error')}: {error.get('Message', exc)}", 2
        ) from exc
    except BotoCoreError as exc:
        raise fail(f"Could not {doing}: {exc}", 2) from exc


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def stderr_console() -> Any:
    """Progress and notes go to stderr, so stdout stays the table (or the JSON) alone."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)

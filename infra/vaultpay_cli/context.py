"""Where the `vaultpay` commands start from: the checkout, the running local cloud (its state file), and
how an AWS error becomes one line.

The command modules take their target from vaultpay_cli.target (one rule for every command that calls AWS)
and never import main.py, the entry point that registers them (tests/unit/cli/test_context.py keeps the
import graph free of circles).
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

"""`vaultpay local down`: stop the `vaultpay local up` that runs in a state dir, as Ctrl-C would."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from vaultpay_cli.context import StateDir, local_state, state_dir_or_default

local_down_app = typer.Typer()


def _running(pid: int) -> bool:
    """True while `pid` is a live process. A zombie counts as gone: when the caller started `local up` itself
    (a test, a supervisor) the process stays a zombie until its parent reaps it, although it has exited."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    try:
        # /proc/<pid>/stat is "pid (comm) state ...": comm may hold spaces and parentheses, the state follows
        # the last ')'. Without /proc (macOS) a zombie is reported as running until it is reaped.
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def _started_at(pid: int) -> float | None:
    """When `pid` started (epoch seconds), from /proc; None where there is no /proc to ask."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    # Field 22 of stat (the 20th after the command name) is the start time in clock ticks after boot.
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def stop_local_cloud(state_dir: Path, timeout_s: float) -> tuple[int, bool]:
    """Send SIGTERM to the local cloud running in `state_dir` and wait up to `timeout_s` for it to exit.
    Returns its pid and whether it exited; raises LookupError when none runs there."""
    state = local_state(state_dir)
    if state is None:
        raise LookupError(str(state_dir))
    pid = int(state["pid"])
    started = _started_at(pid)
    # A cloud that died without removing its state file leaves a pid the system may give to another process:
    # one that started after the cloud last wrote its state is not the cloud (btime has a second's grain).
    if started is not None and started > float(state["started_at"]) + 2:
        raise LookupError(str(state_dir))
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _running(pid):
            return pid, True
        time.sleep(0.1)
    return pid, not _running(pid)


@local_down_app.command("down")
def local_down(
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the local cloud to save its state and exit", min=1)
    ] = 60.0,
    state_dir: StateDir = None,
) -> None:
    """Stop the running local cloud (SIGTERM, as Ctrl-C in its terminal) and wait until it has exited."""
    where = state_dir_or_default(state_dir)
    try:
        pid, exited = stop_local_cloud(where, timeout)
    except LookupError:
        typer.echo(f"No local cloud is running (state dir {where}): nothing to stop.", err=True)
        raise typer.Exit(1) from None
    except ProcessLookupError:
        # It exited between reading its state file and the signal: what was asked is done.
        typer.echo(f"The local cloud in {where} exited on its own while being stopped.")
        return
    if not exited:
        typer.echo(
            f"Sent SIGTERM to the local cloud (pid {pid}) but it is still running after {timeout:g} s; "
            f"its log is in the terminal that ran `vaultpay local up`. `kill -9 {pid}` stops it without "
            "saving its state.",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(f"Stopped the local cloud (pid {pid}, state dir {where}).")

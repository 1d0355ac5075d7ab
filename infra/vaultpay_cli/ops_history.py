"""Reading a Step Functions execution history: pure functions shared by `vaultpay ops execution` and the
local cloud's ops console (standard library only, so the local cloud can import it)."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MAX_CAUSE_CHARS = 240


def format_time(moment: datetime) -> str:
    """UTC, to the millisecond: the same clock for every line whatever the operator's time zone."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One event of an execution's history, as the table shows it."""

    id: int
    state: str
    event: str
    time: str
    elapsed_s: float
    duration_s: float | None
    error: str
    failed: bool
    retry: int  # 1 for the first retry of a task, 0 for no retry


# The event types that report a failure (they carry `error` and `cause` in their details).
FAILURE_SUFFIXES = ("Failed", "TimedOut", "Aborted")
# The events that start an attempt of a task: a second one within a state is a retry.
ATTEMPT_STARTS = {"LambdaFunctionScheduled", "TaskScheduled", "ActivityScheduled"}


def event_details(event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, dict):
            return value
    return {}


def describe_error(error: str, cause: str) -> str:
    """`error: message`; a Lambda's cause is its JSON error document, of which the message is what matters."""
    message = cause
    with contextlib.suppress(ValueError):
        document = json.loads(cause)
        if isinstance(document, dict) and document.get("errorMessage"):
            message = str(document["errorMessage"])
    message = " ".join(message.split())
    if len(message) > MAX_CAUSE_CHARS:
        message = message[: MAX_CAUSE_CHARS - 1] + "…"
    return f"{error}: {message}" if error and message else error or message


def history_rows(events: list[dict[str, Any]]) -> list[HistoryRow]:
    """The execution's events with the state each belongs to, durations and retries made explicit.

    A state's duration is from its *StateEntered to its *StateExited; a task attempt's from its *Scheduled
    to its *Succeeded/*Failed/*TimedOut. Each *Scheduled after the first within one state is a retry.
    """
    if not events:
        return []
    started = events[0]["timestamp"]
    state = ""
    entered_at: dict[str, datetime] = {}
    attempt_at: datetime | None = None
    attempts_in_state = 0
    rows: list[HistoryRow] = []
    for event in events:
        kind = str(event["type"])
        details = event_details(event)
        at: datetime = event["timestamp"]
        duration: float | None = None
        if kind.endswith("StateEntered"):
            state = str(details.get("name", state))
            entered_at[state] = at
            attempts_in_state = 0
        elif kind.endswith("StateExited"):
            state = str(details.get("name", state))
            if state in entered_at:
                duration = (at - entered_at[state]).total_seconds()
        retry = 0
        if kind in ATTEMPT_STARTS:
            attempts_in_state += 1
            retry = attempts_in_state - 1
            attempt_at = at
        elif attempt_at is not None and kind.endswith(("Succeeded", *FAILURE_SUFFIXES)):
            if not kind.startswith("Execution"):
                duration = (at - attempt_at).total_seconds()
            attempt_at = None
        failed = kind.endswith(FAILURE_SUFFIXES)
        error = describe_error(str(details.get("error", "")), str(details.get("cause", ""))) if failed else ""
        rows.append(
            HistoryRow(
                id=int(event["id"]),
                state="" if kind.startswith("Execution") else state,
                event=kind,
                time=format_time(at),
                elapsed_s=(at - started).total_seconds(),
                duration_s=duration,
                error=error,
                failed=failed,
                retry=retry,
            )
        )
    return rows

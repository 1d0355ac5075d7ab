"""Where the transfer saga's executions are read, for `vaultpay ops` and the ops console alike.

A STANDARD machine answers ListExecutions, DescribeExecution and GetExecutionHistory. An EXPRESS machine (the
saga's fast path) answers none of them on AWS: its history is its CloudWatch Logs group, one JSON message per
history event (level ALL; without input and output data). Both are read into the same shape here: an
`Execution` with GetExecutionHistory-shaped events, so vaultpay_cli.ops_history renders either.

A transfer may have several executions: `<transfer id>` from POST /v1/transfers, and, after a review,
`<transfer id>-<decision>` started by the review machine (STANDARD, named `<transfer id>`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

TERMINAL = {
    "ExecutionSucceeded": "SUCCEEDED",
    "ExecutionFailed": "FAILED",
    "ExecutionTimedOut": "TIMED_OUT",
    "ExecutionAborted": "ABORTED",
}
# Without a window, a listing of an EXPRESS machine reads this far back in its log.
DEFAULT_WINDOW = timedelta(hours=24)


@dataclass(slots=True)
class Execution:
    """One execution: what DescribeExecution says, and its history when it was read."""

    name: str
    arn: str
    status: str
    start: datetime
    stop: datetime | None = None
    error: str = ""
    cause: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)


def execution_arn(machine_arn: str, name: str) -> str:
    """A STANDARD execution's ARN, which follows from its machine's and its name."""
    return machine_arn.replace(":stateMachine:", ":execution:", 1) + ":" + name


def execution_name(arn: str) -> str:
    """The name in an execution ARN: `...:execution:<machine>:<name>`, `...:express:<machine>:<name>:<id>`."""
    parts = arn.split(":")
    return parts[7] if len(parts) > 7 else arn


def belongs_to(name: str, transfer_id: str) -> bool:
    return name == transfer_id or name.startswith(transfer_id + "-")


def history_event(message: dict[str, Any]) -> dict[str, Any]:
    """A log message as GetExecutionHistory gives the event (its details under a key ending EventDetails)."""
    return {
        "id": int(message["id"]),
        "previousEventId": int(message.get("previous_event_id") or 0),
        "type": str(message["type"]),
        "timestamp": datetime.fromtimestamp(int(message["event_timestamp"]) / 1000, UTC),
        "loggedEventDetails": dict(message.get("details") or {}),
    }


def executions_from_log(messages: Iterable[dict[str, Any]]) -> list[Execution]:
    """The executions a set of log messages tells of, oldest first; one without an end event is RUNNING."""
    events_by_arn: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        arn = str(message.get("execution_arn") or "")
        if arn and "type" in message and "id" in message:
            events_by_arn.setdefault(arn, []).append(history_event(message))
    found: list[Execution] = []
    for arn, events in events_by_arn.items():
        events.sort(key=lambda e: int(e["id"]))
        started = next((e for e in events if e["type"] == "ExecutionStarted"), events[0])
        execution = Execution(execution_name(arn), arn, "RUNNING", started["timestamp"], events=events)
        for event in events:
            status = TERMINAL.get(str(event["type"]))
            if status is not None:
                details = event["loggedEventDetails"]
                execution.status, execution.stop = status, event["timestamp"]
                execution.error, execution.cause = (
                    str(details.get("error", "")),
                    str(details.get("cause", "")),
                )
        found.append(execution)
    found.sort(key=lambda e: e.start)
    return found


class SagaHistory:
    """A state machine's executions, from the API (STANDARD) or from its execution log (EXPRESS)."""

    def __init__(self, sfn: Any, logs: Any, machine_arn: str) -> None:
        self.sfn, self.logs, self.machine_arn = sfn, logs, machine_arn
        described = sfn.describe_state_machine(stateMachineArn=machine_arn)
        self.name = str(described["name"])
        self.express = described.get("type") == "EXPRESS"
        self.log_group = log_group_name(described.get("loggingConfiguration") or {})
        if self.express and (
            self.log_group is None or described["loggingConfiguration"].get("level") != "ALL"
        ):
            raise LookupError(
                f"{self.name} is an EXPRESS machine without a level-ALL log: its executions cannot be read"
            )

    # ---- listing ------------------------------------------------------------------------------------
    def recent(self, limit: int, status: str | None = None, since: datetime | None = None) -> list[Execution]:
        """The newest executions (without their history), newest first."""
        if not self.express:
            return self._recent_from_api(limit, status)
        window_start = since or datetime.now(UTC) - DEFAULT_WINDOW
        kinds = ["ExecutionStarted", *TERMINAL]
        messages = [m for kind in kinds for m in self._messages(f'"{kind}"', window_start)]
        executions = executions_from_log(m for m in messages if m.get("type") in kinds)
        for execution in executions:
            execution.events = []
        if status is not None:
            executions = [e for e in executions if e.status == status]
        return sorted(executions, key=lambda e: e.start, reverse=True)[:limit]

    def _recent_from_api(self, limit: int, status: str | None) -> list[Execution]:
        request: dict[str, Any] = {
            "stateMachineArn": self.machine_arn,
            "PaginationConfig": {"MaxItems": limit},
        }
        if status is not None:
            request["statusFilter"] = status
        found = [
            Execution(
                str(e["name"]), str(e["executionArn"]), str(e["status"]), e["startDate"], e.get("stopDate")
            )
            for page in self.sfn.get_paginator("list_executions").paginate(**request)
            for e in page["executions"]
        ]
        return sorted(found, key=lambda e: e.start, reverse=True)[:limit]

    # ---- one transfer -------------------------------------------------------------------------------
    def of_transfer(self, transfer_id: str) -> list[Execution]:
        """Every execution of this transfer with its history, oldest first (none: an empty list)."""
        if not self.express:
            return self._of_transfer_from_api(transfer_id)
        messages = self._messages(f'"{transfer_id}"', None)
        return [e for e in executions_from_log(messages) if belongs_to(e.name, transfer_id)]

    def _of_transfer_from_api(self, transfer_id: str) -> list[Execution]:
        arn = execution_arn(self.machine_arn, transfer_id)
        try:
            described = self.sfn.describe_execution(executionArn=arn)
        except (self.sfn.exceptions.ExecutionDoesNotExist, self.sfn.exceptions.InvalidArn):
            return []
        events = [
            event
            for page in self.sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
            for event in page["events"]
        ]
        events.sort(key=lambda e: int(e["id"]))
        return [
            Execution(
                str(described["name"]),
                arn,
                str(described["status"]),
                described["startDate"],
                described.get("stopDate"),
                str(described.get("error") or ""),
                str(described.get("cause") or ""),
                events,
            )
        ]

    def _messages(self, pattern: str, since: datetime | None) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {"logGroupName": self.log_group, "filterPattern": pattern}
        if since is not None:
            request["startTime"] = int(since.timestamp() * 1000)
        for page in self.logs.get_paginator("filter_log_events").paginate(**request):
            for event in page.get("events", []):
                try:
                    message = json.loads(event["message"])
                except ValueError:
                    continue
                if isinstance(message, dict):
                    yield message


def log_group_name(logging_configuration: dict[str, Any]) -> str | None:
    """The log group a state machine's LoggingConfiguration names (arn:...:log-group:<name>:*)."""
    for destination in logging_configuration.get("destinations") or []:
        arn = str((destination.get("cloudWatchLogsLogGroup") or {}).get("logGroupArn") or "")
        if ":log-group:" in arn:
            return arn.split(":log-group:", 1)[1].removesuffix(":*")
    return None


def merged_events(executions: list[Execution]) -> list[dict[str, Any]]:
    """The histories of a transfer's executions one after the other, numbered on: one story to render."""
    merged: list[dict[str, Any]] = []
    for execution in executions:
        for event in execution.events:
            merged.append({**event, "id": len(merged) + 1})
    return merged

"""Step Functions on the local cloud where moto's engine (5.2) differs from AWS (execution logs, the
`states:startExecution` service integration) or spends what AWS does not (a definition parsed again for every
execution, a boto3 client built for every Task). `install()` runs in the moto server's process.

**Execution logs.**
A state machine with a logging configuration sends its executions' history events to its log group, one JSON
message per event (`id`, `type`, `details`, `previous_event_id`, `event_timestamp` in epoch milliseconds,
`execution_arn`, `redrive_count`; without the `input`/`output` data unless `includeExecutionData`), filtered
by its level (ALL, ERROR, FATAL). For an EXPRESS machine that log is the only history AWS keeps (there is no
GetExecutionHistory), so the operator's tools read it, and the local cloud must write it the same way.

moto's parser creates every execution without a logging session, and the session it has passes objects to its
own PutLogEvents that it cannot read: a working one is attached to every execution of a machine that has a
logging configuration.

**`arn:aws:states:::states:startExecution`** (request-response). moto hands the state's parameters to boto3
with the ASL's casing (`StateMachineArn`, `Input`, `Name`), which boto3 refuses, and returns boto3's response
(`executionArn`, a datetime `startDate`) as the task's result, which no history or output can serialise. AWS
takes the first casing and answers `{"ExecutionArn", "StartDate"}` with the date as text.

**Engine costs that are not the product's.** moto parses the definition (ANTLR, pure Python) at every
execution start: 50-70 ms of CPU for the saga's 20 KB with its retry blocks, against 2-6 ms for a few no-op
states, on each transfer. The parsed program holds no execution state (that lives in the execution's
Environment), so one program per definition serves every execution. Each Task builds a boto3 client (tens of
ms: a session's loader and endpoint resolution); one client per service and region serves them all (boto3
clients are thread-safe).
"""

from __future__ import annotations

import datetime
import functools
import inspect
import json
import threading
from typing import Any

_INSTALLED = "_vaultpay_execution_logs"


def stream_name(machine_name: str, execution_name: str, started: datetime.datetime) -> str:
    """One stream per execution, named as AWS names an Express machine's: states/<machine>/<date>/<id>."""
    return f"states/{machine_name}/{started:%Y-%m-%d-%H-%M}/{execution_name}"


def epoch_millis(timestamp: Any) -> int:
    """A history event's time (moto gives an ISO 8601 string; a datetime or a number is taken too)."""
    if isinstance(timestamp, str):
        timestamp = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    if isinstance(timestamp, datetime.datetime):
        if timestamp.tzinfo is None:
            timestamp = timestamp.replace(tzinfo=datetime.UTC)
        return int(timestamp.timestamp() * 1000)
    return int(timestamp)


def log_message(history_log: dict[str, Any]) -> str:
    """The JSON message of one history event, with AWS's field names and string-typed numbers."""
    millis = epoch_millis(history_log["event_timestamp"])
    body: dict[str, Any] = {
        "id": str(history_log["id"]),
        "type": str(getattr(history_log["type"], "value", history_log["type"])),
        "details": history_log.get("details") or {},
        "previous_event_id": str(history_log["previous_event_id"]),
        "event_timestamp": str(millis),
        "execution_arn": str(history_log["execution_arn"]),
        "redrive_count": "0",
    }
    return json.dumps(body, default=str, separators=(",", ":"))


def install() -> None:
    """Every fix, for every execution started from now on in this process."""
    install_execution_logs()
    install_start_execution()
    install_program_cache()
    install_client_cache()


# Where moto's engine builds its clients: each module imported the function by name.
_CLIENT_MODULES = (
    "moto.stepfunctions.parser.asl.utils.boto_client",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_dynamodb",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sqs",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_events",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_unsupported",
)


def install_program_cache(size: int = 32) -> None:
    """One parsed program per definition text (a machine's update has another text, so another program)."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    if getattr(ExecutionWorker, _INSTALLED, False):
        return

    @functools.lru_cache(maxsize=size)
    def program(definition: str) -> Any:
        return AmazonStateLanguageParser.parse(definition)[0]

    def _get_evaluation_entrypoint(self: Any) -> Any:
        return program(self._evaluation_details.state_machine_details.definition)

    ExecutionWorker._get_evaluation_entrypoint = _get_evaluation_entrypoint  # type: ignore[method-assign]
    setattr(ExecutionWorker, _INSTALLED, True)


def install_client_cache() -> None:
    """One boto3 client per service, region and endpoint for every Task of every execution."""
    import importlib

    from moto.stepfunctions.parser.asl.utils import boto_client

    if getattr(boto_client, _INSTALLED, False):
        return
    original = boto_client.boto_client_for
    clients: dict[tuple[Any, ...], Any] = {}
    lock = threading.Lock()

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        from moto.core.models import botocore_stubber
        from moto.settings import moto_server_port

        key = (region, service, botocore_stubber.enabled, moto_server_port())
        with lock:
            client = clients.get(key)
            if client is None:
                client = clients[key] = original(region, service, state_credentials)
        return client

    for name in _CLIENT_MODULES:
        module = importlib.import_module(name)
        if getattr(module, "boto_client_for", None) is original:
            module.boto_client_for = boto_client_for  # type: ignore[attr-defined]
    setattr(boto_client, _INSTALLED, True)


def start_execution_request(parameters: dict[str, Any]) -> dict[str, Any]:
    """A startExecution task's parameters (ASL casing) as boto3's start_execution takes them."""
    return {key[:1].lower() + key[1:]: value for key, value in parameters.items()}


def start_execution_result(response: dict[str, Any]) -> dict[str, Any]:
    """boto3's start_execution answer as the task's result on AWS: ExecutionArn, StartDate as text."""
    result: dict[str, Any] = {}
    for key, value in response.items():
        if key == "ResponseMetadata":
            continue
        text = value.isoformat() if isinstance(value, datetime.datetime) else value
        result[key[:1].upper() + key[1:]] = text
    return result


def install_start_execution() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
        StateTaskServiceSfn,
    )

    if getattr(StateTaskServiceSfn, _INSTALLED, False):
        return
    original = StateTaskServiceSfn._eval_service_task

    def _eval_service_task(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self._get_boto_service_action() != "start_execution":
            return original(self, *args, **kwargs)
        bound = inspect.signature(original).bind(self, *args, **kwargs)
        env, parameters = bound.arguments["env"], bound.arguments["normalised_parameters"]
        request = start_execution_request(parameters)
        parameters.clear()
        parameters.update(request)
        outcome = original(*bound.args, **bound.kwargs)
        if env.stack and isinstance(env.stack[-1], dict):
            env.stack.append(start_execution_result(env.stack.pop()))
        return outcome

    StateTaskServiceSfn._eval_service_task = _eval_service_task  # type: ignore[method-assign,assignment]
    setattr(StateTaskServiceSfn, _INSTALLED, True)


def install_execution_logs() -> None:
    """Every execution started from now on in this process logs as its state machine's configuration says."""
    from moto.stepfunctions.parser.asl.eval.event.logging import (
        CloudWatchLoggingConfiguration,
        CloudWatchLoggingSession,
    )
    from moto.stepfunctions.parser.backend.execution import Execution

    if getattr(Execution, _INSTALLED, False):
        return

    class ExecutionLogSession(CloudWatchLoggingSession):
        """moto's session with a put that moto's logs backend reads, on a stream per execution."""

        def __init__(
            self, execution_arn: str, configuration: CloudWatchLoggingConfiguration, stream: str
        ) -> None:
            super().__init__(execution_arn=execution_arn, configuration=configuration)
            self._stream = stream
            self._stream_made = False

        def publish_history_log(self, history_log: Any) -> None:
            event = {
                "timestamp": epoch_millis(history_log["event_timestamp"]),
                "message": log_message(history_log),
            }
            group = self.configuration.log_group_name
            logs: Any = self._logs_client
            if not self._stream_made:
                # The group is the stack's; a missing one means no logs, as on AWS with a deleted group.
                if group not in logs.groups:
                    return
                if self._stream not in logs.groups[group].streams:
                    logs.create_log_stream(group, self._stream)
                self._stream_made = True
            logs.put_log_events(group, self._stream, [event])

    original_init = Execution.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        if self._cloud_watch_logging_session is not None:
            return
        machine = self.state_machine
        settings: Any = getattr(machine, "loggingConfiguration", None) or {}
        configuration = CloudWatchLoggingConfiguration.from_logging_configuration(
            state_machine_arn=machine.arn, logging_configuration=settings
        )
        if configuration is None:
            return
        stream = stream_name(machine.name, self.name, self.start_date)
        self._cloud_watch_logging_session = ExecutionLogSession(self.exec_arn, configuration, stream)

    Execution.__init__ = __init__  # type: ignore[method-assign]
    setattr(Execution, _INSTALLED, True)

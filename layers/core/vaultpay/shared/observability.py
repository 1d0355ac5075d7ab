"""Powertools Logger, Tracer and Metrics for every function, and the fixed names of VaultPay's log keys."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger, Metrics, Tracer


class LogKey(StrEnum):
    """The only names under which these ids are logged, so one query finds a request everywhere."""

    CORRELATION_ID = "correlation_id"
    USER_ID = "user_id"
    TRANSFER_ID = "transfer_id"
    ACCOUNT_ID = "account_id"


# Service name and metrics namespace come from POWERTOOLS_SERVICE_NAME / POWERTOOLS_METRICS_NAMESPACE (set
# in the template), so the same objects serve every function without arguments.


@functools.cache
def get_logger() -> Logger:
    """The structured JSON logger shared by the handler and the core package."""
    from aws_lambda_powertools import Logger

    return Logger()


def tracing_disabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether `Tracer()` would disable itself: POWERTOOLS_TRACE_DISABLED true, or not in Lambda (no
    LAMBDA_TASK_ROOT), or in SAM CLI's or Chalice's local emulator. Powertools' rules and names, read here
    so that deciding costs no aws_xray_sdk import."""
    from aws_lambda_powertools.shared import constants
    from aws_lambda_powertools.shared.functions import strtobool

    env = os.environ if environ is None else environ
    if strtobool(env.get(constants.TRACER_DISABLED_ENV, "false")):
        return True
    in_lambda = bool(env.get(constants.LAMBDA_TASK_ROOT_ENV))
    emulated = bool(env.get(constants.SAM_LOCAL_ENV) or env.get(constants.CHALICE_LOCAL_ENV))
    return not in_lambda or emulated


# What VaultPay calls out through: AWS APIs (botocore, and PynamoDB's requests over it) and plain HTTP
# (urllib). Named rather than X-Ray's patch_all, which patches whatever else happens to be installed.
TRACED_MODULES = ("botocore", "pynamodb", "httplib")


@functools.cache
def get_tracer() -> Tracer:
    """The X-Ray tracer, or, where tracing is off, the same Tracer over a provider that records nothing.

    `Tracer()` imports aws_xray_sdk.core even when disabled (its default provider is the X-Ray recorder,
    whose import builds a botocore session and client): a third of a handler's cold start for nothing.
    Powertools takes any `provider` (tracing/base.py's BaseProvider); the decorators stay Powertools' own.
    """
    from aws_lambda_powertools import Tracer

    if not tracing_disabled():
        return Tracer(patch_modules=TRACED_MODULES)
    from vaultpay.shared.tracing_off import NoTraceProvider

    return Tracer(disabled=True, auto_patch=False, provider=NoTraceProvider())


@functools.cache
def get_metrics() -> Metrics:
    """CloudWatch metrics in embedded metric format; name metrics in the past tense (`TransferCompleted`)."""
    from aws_lambda_powertools import Metrics

    return Metrics()


def bind_log_keys(
    *,
    correlation_id: str | None = None,
    user_id: str | None = None,
    transfer_id: str | None = None,
    account_id: str | None = None,
) -> None:
    """Adds the given ids to every later log line of this invocation (the handler clears them per event)."""
    keys = {
        LogKey.CORRELATION_ID: correlation_id,
        LogKey.USER_ID: user_id,
        LogKey.TRANSFER_ID: transfer_id,
        LogKey.ACCOUNT_ID: account_id,
    }
    present = {str(key): value for key, value in keys.items() if value is not None}
    if present:
        get_logger().append_keys(**present)


# A saga step's input comes from the state machine, not a client, but it is still only logged when it looks
# like an id: a malformed input must not put arbitrary text into every log line of the invocation.
_LOGGABLE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def bind_step_log_keys(event: object) -> None:
    """Binds the correlation, transfer and source account ids of a saga step's input, when well-formed."""
    if not isinstance(event, Mapping):
        return

    def loggable(name: str) -> str | None:
        value = event.get(name)
        return value if isinstance(value, str) and _LOGGABLE_ID.fullmatch(value) else None

    bind_log_keys(
        correlation_id=loggable("correlation_id"),
        transfer_id=loggable("transfer_id"),
        account_id=loggable("source_account_id"),
    )


def saga_step_handler(step: Callable[[Any], dict[str, Any]]) -> Callable[[Any, Any], dict[str, Any]]:
    """A saga step's Lambda entry point: `handler = saga_step_handler(lambda event: svc().reserve(event))`.

    The state machine calls it with its JSON input, which `step` validates. Its ids are bound to the log
    keys; the input itself is never logged (it may hold a task token) nor the answer traced. Errors
    propagate: their class name is the Lambda errorType the state machine's Retry/Catch match on."""

    def handler(event: Any, context: Any) -> dict[str, Any]:
        bind_step_log_keys(event)
        return step(event)

    traced = get_tracer().capture_lambda_handler(capture_response=False)(handler)
    logged: Callable[[Any, Any], dict[str, Any]] = get_logger().inject_lambda_context(
        clear_state=True, log_event=False
    )(traced)
    return logged


def scheduled_handler(
    run: Callable[[Any], dict[str, Any]],
    *,
    counts: Mapping[str, str] | None = None,
    finished: str | None = None,
) -> Callable[[Any, Any], dict[str, Any]]:
    """A scheduled function's Lambda entry point: `handler = scheduled_handler(lambda context: ...)`.

    The scheduled event carries nothing a run needs, so `run` gets only the Lambda context (its remaining
    time). Its answer is the run's report: each `counts` entry (metric name: report key) goes out as a Count
    metric, and the report is logged under the `finished` message. The event is never logged nor the
    answer traced; the metrics are flushed even when the run fails."""

    def handler(event: Any, context: Any) -> dict[str, Any]:
        report = run(context)
        if counts:
            from aws_lambda_powertools.metrics import MetricUnit

            for name, key in counts.items():
                get_metrics().add_metric(name=name, unit=MetricUnit.Count, value=report[key])
        if finished is not None:
            get_logger().info(finished, extra=report)
        return report

    measured = get_metrics().log_metrics(handler)
    traced = get_tracer().capture_lambda_handler(capture_response=False)(measured)
    logged: Callable[[Any, Any], dict[str, Any]] = get_logger().inject_lambda_context(clear_state=True)(
        traced
    )
    return logged


def publish_lag(consumer: str, *, pending: int, ack_pending: int, redelivered: int) -> None:
    """A JetStream consumer's backlog (`ConsumerPending`, `ConsumerAckPending`, `ConsumerRedelivered`), one
    metric each with the `consumer` dimension, apart from the function's other metrics (whose dimensions must
    not change): a backlog that only grows means the consumer cannot keep up (the template alarms on it)."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    for name, value in (
        ("ConsumerPending", pending),
        ("ConsumerAckPending", ack_pending),
        ("ConsumerRedelivered", redelivered),
    ):
        with single_metric(name=name, unit=MetricUnit.Count, value=value) as metric:
            metric.add_dimension(name="consumer", value=consumer)

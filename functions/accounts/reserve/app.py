"""Saga step ReserveFunds: holds the amount on the source account (available only)."""

# No `from __future__ import annotations` in handlers (see functions/ops/health/app.py).
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from vaultpay.bootstrap.accounts import accounts_service
from vaultpay.shared.observability import bind_step_log_keys, get_logger, get_tracer

logger = get_logger()
tracer = get_tracer()


# Called by the transfer state machine with its JSON input; the service validates it (InvalidStepInput).
# Errors propagate: their class name is the Lambda errorType the state machine's Retry/Catch match on.
@logger.inject_lambda_context(clear_state=True, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    bind_step_log_keys(event)
    return accounts_service().reserve(event)

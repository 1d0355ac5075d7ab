"""Saga step AwaitReviewFunction (`.waitForTaskToken`): stores the task token until an admin decides."""

# No `from __future__ import annotations` in handlers (see functions/ops/health/app.py).
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from vaultpay.bootstrap.fraud import review_service
from vaultpay.shared.observability import bind_step_log_keys, get_logger, get_tracer

logger = get_logger()
tracer = get_tracer()


# log_event stays off: the input holds the task token, which is never logged.
@logger.inject_lambda_context(clear_state=True, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    bind_step_log_keys(event)
    return review_service().await_review(event)

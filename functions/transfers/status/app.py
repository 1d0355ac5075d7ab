"""Saga step TransferStatus: records one op of the transfer saga (or answers the transfer's view).

Input: `{"op": ..., "state": <saga state>}` (or the saga state with `op` in it); output: the transfer view
(docs/transfers-contract.md "TransferStatusFunction"). Internal: the state machine and the review route
invoke it, API Gateway does not.
"""

# No `from __future__ import annotations` in handlers (see functions/ops/health/app.py).
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from vaultpay.bootstrap.transfers import transfers_service
from vaultpay.shared.observability import bind_step_log_keys, get_logger, get_tracer

logger = get_logger()
tracer = get_tracer()


# Errors propagate: their class name (TransferNotFound, TransferFinal, InvalidStepInput, or the retryable
# ConcurrentModification / TransientError) is the Lambda errorType the state machine's Retry/Catch match on.
@logger.inject_lambda_context(clear_state=True, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    state = event.get("state") if isinstance(event, Mapping) else None
    bind_step_log_keys(state if isinstance(state, Mapping) else event)
    return transfers_service().apply_status(event)

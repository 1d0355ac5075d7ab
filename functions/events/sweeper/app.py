"""Outbox sweeper: every five minutes, re-publishes outbox items the relay has not marked published."""

# No `from __future__ import annotations` in handlers (see functions/ops/health/app.py).
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from vaultpay.bootstrap.events import sweep_outbox
from vaultpay.shared.observability import get_logger, get_metrics, get_tracer

logger = get_logger()
tracer = get_tracer()
metrics = get_metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Sweeps the tables in OUTBOX_TABLES. A run that could not publish everything is not an error: the next
    # run (five minutes on) goes on.
    return asdict(sweep_outbox())

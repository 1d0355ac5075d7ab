"""Outbox sweeper: every five minutes, re-publishes outbox items the relay has not marked published."""

# No `from __future__ import annotations` in handlers (see functions/ops/health/app.py).
import os
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from vaultpay.events.relay_wiring import sweep_outbox
from vaultpay.shared.observability import get_logger, get_metrics, get_tracer

logger = get_logger()
tracer = get_tracer()
metrics = get_metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # OUTBOX_TABLES: the domain tables (comma-separated) whose outbox items this sweeper owns.
    tables = [name.strip() for name in os.environ.get("OUTBOX_TABLES", "").split(",") if name.strip()]
    # A run that could not publish everything is not an error: the next run (five minutes on) goes on.
    return asdict(sweep_outbox(tables))

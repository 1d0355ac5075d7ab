"""Every 15 minutes (schedule): releases holds past their expiry, so no money stays held by a dead saga."""

# No `from __future__ import annotations` in handlers (see functions/ops/health/app.py).
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from vaultpay.bootstrap.accounts import accounts_service
from vaultpay.shared.observability import get_logger, get_metrics, get_tracer

logger = get_logger()
tracer = get_tracer()
metrics = get_metrics()

# One run releases at most this many; the next run takes the rest (a backlog is visible in the metric).
BATCH = 200


# A hold expires only when its saga died outside its own compensation (its lifetime is far longer than
# any execution, review included), so every release here is worth a look: each is logged and counted.
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    released = accounts_service().release_expired_holds(limit=BATCH)
    for result in released:
        logger.warning(
            "expired hold released",
            extra={"transfer_id": result["transfer_id"], "amount": result["amount"]},
        )
    metrics.add_metric(name="ExpiredHoldsReleased", unit=MetricUnit.Count, value=len(released))
    return {"released": len(released), "transfer_ids": [r["transfer_id"] for r in released]}

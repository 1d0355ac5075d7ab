"""Scheduled (and `vaultpay ops audit checkpoint`): verify the audit chain through its signed checkpoints,
then sign its head and store it as the next checkpoint (vaultpay.audit.checkpoints).

A chain that does not verify is never signed (that would sign a forgery): the run reports it, logs an error
and emits `AuditChainBroken`, which pages (AuditChainBrokenAlarm). `{"verify_only": true}` verifies without
signing: what `vaultpay ops audit verify` asks for.
"""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from vaultpay.bootstrap.audit import verify_and_checkpoint
from vaultpay.shared.observability import get_logger, get_metrics, get_tracer

logger = get_logger()
tracer = get_tracer()
metrics = get_metrics()


@logger.inject_lambda_context(clear_state=True, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    verify_only = isinstance(event, dict) and event.get("verify_only") is True
    result, checkpoint = verify_and_checkpoint(sign=not verify_only)
    if result.ok:
        metrics.add_metric(name="AuditChainVerified", unit=MetricUnit.Count, value=1)
        logger.info(
            "audit chain verified",
            extra={
                "records_checked": result.records_checked,
                "checkpoints_checked": result.checkpoints_checked,
                "checkpoint_seq": checkpoint.seq if checkpoint is not None else None,
            },
        )
    else:
        metrics.add_metric(name="AuditChainBroken", unit=MetricUnit.Count, value=1)
        bad = result.first_bad_record.to_dict() if result.first_bad_record else {}
        logger.error("audit chain broken", extra={"first_bad_record": bad})
    return {
        "verified": result.to_dict(),
        "checkpoint": checkpoint.to_json() if checkpoint is not None else None,
    }

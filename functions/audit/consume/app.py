"""Every minute (schedule): appends what JetStream's `audit-workers` consumer holds to the audit chain."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from vaultpay.bootstrap.audit import consume_pending
from vaultpay.shared.observability import get_logger, get_metrics, get_tracer

logger = get_logger()
tracer = get_tracer()
metrics = get_metrics()


# The scheduled event carries nothing the run needs; the response is a count, never an event's content.
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = consume_pending(context.get_remaining_time_in_millis)
    metrics.add_metric(name="AuditRecordsAppended", unit=MetricUnit.Count, value=report.appended)
    metrics.add_metric(name="AuditDuplicatesSkipped", unit=MetricUnit.Count, value=report.duplicates)
    metrics.add_metric(name="AuditMessagesRejected", unit=MetricUnit.Count, value=report.rejected)
    logger.info("audit consumer run finished", extra=report.as_dict())
    return report.as_dict()

"""Outbox relay: DynamoDB Streams → JetStream, a CloudEvent per outbox INSERT, failed records reported."""

# No `from __future__ import annotations` in handlers (see functions/ops/health/app.py).
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from vaultpay.bootstrap.events import relay_records, relay_request_logs
from vaultpay.shared.observability import get_logger, get_metrics, get_tracer

logger = get_logger()
tracer = get_tracer()
metrics = get_metrics()


# The records carry event data, so neither the event nor the response is traced.
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "awslogs" in event:  # an API function's log group subscription: gateway request logs
        return {"published": relay_request_logs(event)}
    # The whole batch is published at once (its PubAcks awaited together, not one round trip per record),
    # and the records that failed are reported by sequence number, so Lambda retries from the first of them.
    # A batch that failed as a whole (NATS down) is reported record by record, never raised: a function
    # error would make Lambda bisect the batch and invoke again and again against a server that is down.
    # Not Powertools' BatchProcessor: the outcome already knows each record's fate, and wrapping every
    # record again cost the handler a third of its throughput (bench/relay_bench.py).
    return {"batchItemFailures": relay_records(event.get("Records", [])).batch_item_failures()}

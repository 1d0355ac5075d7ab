"""Outbox relay: DynamoDB Streams → JetStream, a CloudEvent per outbox INSERT, failed records reported."""

# No `from __future__ import annotations` in handlers (see functions/ops/health/app.py).
import functools
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from vaultpay.bootstrap.events import relay_records, relay_request_logs
from vaultpay.shared.observability import get_logger, get_metrics, get_tracer

logger = get_logger()
tracer = get_tracer()
metrics = get_metrics()

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch import BatchProcessor


# Built at the first stream batch, not at import: the gateway-log path never needs Powertools' batch
# utility, a third of this function's import time.
@functools.cache
def stream_processor() -> "BatchProcessor":
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

    # A batch that failed as a whole (NATS down) is reported record by record, not raised: a function error
    # would make Lambda bisect the batch and invoke again and again against a server that is down.
    return BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)


# The records carry event data, so neither the event nor the response is traced.
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "awslogs" in event:  # an API function's log group subscription: gateway request logs
        return {"published": relay_request_logs(event)}
    # The whole batch is published first (its PubAcks awaited together, not one round trip per record);
    # the processor then reports each record that failed, so Lambda retries from the first of them.
    from aws_lambda_powertools.utilities.batch import process_partial_response

    outcome = relay_records(event.get("Records", []))
    response = process_partial_response(
        event=event, record_handler=outcome.check, processor=stream_processor(), context=context
    )
    return dict(response)

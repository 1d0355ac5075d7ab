"""GET /v1/health: can this deployment reach DynamoDB, Step Functions and NATS, and who leads the event stream
on the JetStream cluster, with how many replicas current? (no auth)"""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from vaultpay.bootstrap.ops import health_service
from vaultpay.shared.http import make_resolver, no_store_json
from vaultpay.shared.observability import get_logger, get_tracer
from vaultpay.shared.openapi import success

logger = get_logger()
tracer = get_tracer()
app = make_resolver()


# vaultpay.ops.health builds the report, not a model: its shape is given to the OpenAPI document here.
_CHECK_STATUS = {"type": "string", "enum": ["ok", "error"]}
HEALTH_REPORT: dict[str, Any] = {
    "type": "object",
    "title": "HealthReport",
    "required": ["status", "version", "checks"],
    "properties": {
        "status": {
            "type": "string",
            "enum": ["ok", "degraded"],
            "description": "`ok` only if every check is.",
        },
        "version": {"type": "string", "description": "The deployed version."},
        "checks": {
            "type": "object",
            "required": ["dynamodb", "stepfunctions", "nats"],
            "properties": {"dynamodb": _CHECK_STATUS, "stepfunctions": _CHECK_STATUS, "nats": _CHECK_STATUS},
            "description": "One status per dependency; why one is `error` is logged, never shown.",
        },
        "event_bus": {
            "type": "object",
            "title": "EventBus",
            "description": (
                "The JetStream replicas of the event stream, as NATS reports them; present whenever NATS "
                "answered the stream info request. No leader makes `checks.nats` `error`; a replica that "
                "lags or is offline while a leader exists leaves it `ok` (a quorum still takes writes) and "
                "shows in the counts."
            ),
            "required": ["stream", "leader", "replicas", "replicas_current", "nodes_up"],
            "properties": {
                "stream": {"type": "string", "examples": ["VAULTPAY"]},
                "leader": {
                    "type": ["string", "null"],
                    "description": "The stream leader's server name (null: no leader, or an unnamed node).",
                    "examples": ["vaultpay-local-1"],
                },
                "replicas": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Replicas the stream is configured with.",
                },
                "replicas_current": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Replicas caught up with the leader, the leader included.",
                },
                "nodes_up": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "The stream's nodes that are not offline, the leader included.",
                },
            },
        },
    },
}


@app.get(
    "/v1/health",
    responses={
        **success(
            200,
            "Every dependency answered.",
            {
                "status": "ok",
                "version": "0.2.0",
                "checks": {"dynamodb": "ok", "stepfunctions": "ok", "nats": "ok"},
                "event_bus": {
                    "stream": "VAULTPAY",
                    "leader": "vaultpay-local-1",
                    "replicas": 3,
                    "replicas_current": 2,
                    "nodes_up": 2,
                },
            },
            schema=HEALTH_REPORT,
        ),
        **success(
            503,
            "A dependency did not answer, or the event stream has no leader (why is logged, not shown).",
            {
                "status": "degraded",
                "version": "0.2.0",
                "checks": {"dynamodb": "ok", "stepfunctions": "ok", "nats": "error"},
                "event_bus": {
                    "stream": "VAULTPAY",
                    "leader": None,
                    "replicas": 3,
                    "replicas_current": 0,
                    "nodes_up": 1,
                },
            },
            schema=HEALTH_REPORT,
        ),
    },
)
@tracer.capture_method
def get_health() -> Response[dict[str, Any]]:
    report = health_service().run()
    # A cached "ok" would hide an outage from whoever is asking.
    return no_store_json(report.to_body(), status_code=report.http_status)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

"""GET /v1/health: can this deployment reach DynamoDB, Step Functions and NATS? (no auth)"""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.utilities.typing import LambdaContext

from vaultpay.shared.bootstrap import health_service
from vaultpay.shared.http import make_resolver
from vaultpay.shared.observability import get_logger, get_tracer
from vaultpay.shared.openapi import success

logger = get_logger()
tracer = get_tracer()
app = make_resolver()


@app.get(
    "/v1/health",
    responses={
        **success(
            200,
            "Every dependency answered.",
            {
                "status": "ok",
                "version": "0.1.0",
                "checks": {"dynamodb": "ok", "stepfunctions": "ok", "nats": "ok"},
            },
        ),
        **success(
            503,
            "A dependency did not answer (the reason is logged, not shown).",
            {
                "status": "degraded",
                "version": "0.1.0",
                "checks": {"dynamodb": "ok", "stepfunctions": "ok", "nats": "error"},
            },
        ),
    },
)
@tracer.capture_method
def get_health() -> Response[dict[str, Any]]:
    report = health_service().run()
    return Response(
        status_code=report.http_status,
        content_type=content_types.APPLICATION_JSON,
        body=report.to_body(),
        # A cached "ok" would hide an outage from whoever is asking.
        headers={"Cache-Control": "no-store"},
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

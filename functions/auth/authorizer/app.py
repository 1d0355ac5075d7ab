"""REQUEST authorizer of VaultPayApi: the access token, its session, its role's routes; cached by token."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from vaultpay.bootstrap.authorizer import authorize
from vaultpay.shared.errors import Unauthorized
from vaultpay.shared.observability import get_logger, get_tracer

logger = get_logger()
tracer = get_tracer()


# Neither the event (it holds the bearer token) nor the response is logged or traced.
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        return authorize(event)
    except Unauthorized:
        # API Gateway answers 401 (the UNAUTHORIZED gateway response) only for exactly this message; any
        # other failure is a 500, never an Allow.
        raise Exception("Unauthorized") from None

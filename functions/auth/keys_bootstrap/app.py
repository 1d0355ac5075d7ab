"""Custom::SigningKeys: writes the first token-signing key document into its secret and always answers."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from vaultpay.auth.key_bootstrap import handle_with_aws
from vaultpay.shared.observability import get_logger

logger = get_logger()


# The event is never logged: its ResponseURL is a pre-signed URL, i.e. a credential.
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    outcome = handle_with_aws(event, lambda: context.get_remaining_time_in_millis() / 1000)
    return {"Status": outcome.status}

"""The authorizer's composition, built once per warm Lambda: KMS public keys and the session store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vaultpay.auth.authorizer import Authorizer, AuthorizerRequest
from vaultpay.shared.errors import Unauthorized
from vaultpay.shared.lazy import cached
from vaultpay.shared.observability import bind_log_keys, get_logger

# Every protected request waits on these calls: one quick retry, then fail (API Gateway answers 500).
_AWS_TIMEOUT_S = 1.0
_AWS_ATTEMPTS = 2


@cached
def authorizer() -> Authorizer:
    """The process's authorizer, built on first use and reused by a warm Lambda."""
    from vaultpay.auth.adapters import DynamoDBSessionRevocations, KmsPublicKeys
    from vaultpay.bootstrap.settings import authorizer_settings
    from vaultpay.shared.aws import aws_client

    settings = authorizer_settings()
    dynamodb = aws_client("dynamodb", timeout_s=_AWS_TIMEOUT_S, max_attempts=_AWS_ATTEMPTS)
    kms = aws_client("kms", timeout_s=_AWS_TIMEOUT_S, max_attempts=_AWS_ATTEMPTS)
    return Authorizer(
        # Public keys only (kms:GetPublicKey, once per container): this function can verify, never sign.
        keys=KmsPublicKeys(kms, (settings.require("token_signing_key_id"), *settings.verify_key_ids)),
        sessions=DynamoDBSessionRevocations(
            dynamodb, settings.require("auth_table"), ttl_s=settings.session_check_ttl_s
        ),
        issuer=settings.require("token_issuer"),
        audience=settings.require("token_audience"),
    )


def authorize(event: Mapping[str, Any]) -> dict[str, Any]:
    """The authorizer's answer to one REQUEST event; raises Unauthorized for an unauthenticated caller."""
    request = AuthorizerRequest.from_event(event)
    bind_log_keys(correlation_id=request.correlation_id)
    log = get_logger()
    try:
        decision = authorizer().decide(request)
    except Unauthorized as exc:
        # The code says why (invalid_token, token_expired); the token itself is never logged.
        log.info("request unauthenticated", extra={"code": exc.code, "route": request.resource})
        raise
    bind_log_keys(user_id=decision.principal_id)
    if not decision.allow:
        log.info("request denied", extra={"code": decision.context.get("code"), "route": request.resource})
    elif decision.auth_error:
        log.info("request soft-denied", extra={"auth_error": decision.auth_error, "route": request.resource})
    return decision.response()

"""GET /.well-known/jwks.json: the public keys that verify VaultPay access tokens (no auth)."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Any, Literal

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from vaultpay.bootstrap.auth import token_public_keys
from vaultpay.shared.http import make_resolver
from vaultpay.shared.observability import get_logger, get_tracer
from vaultpay.shared.openapi import ResponseModel, success

logger = get_logger()
tracer = get_tracer()
app = make_resolver()


class SigningKey(ResponseModel):
    """A public P-256 key that verifies access tokens (RFC 7517, RFC 7518 section 6.2)."""

    kty: Literal["EC"]
    crv: Literal["P-256"]
    x: str = Field(pattern="^[A-Za-z0-9_-]{43}$")
    y: str = Field(pattern="^[A-Za-z0-9_-]{43}$")
    kid: str
    alg: Literal["ES256"]
    use: Literal["sig"]


class KeySet(ResponseModel):
    """Every key that may have signed a live access token."""

    keys: list[SigningKey]


@app.get(
    "/.well-known/jwks.json",
    responses=success(
        200,
        "The JWKS of the access-token signing keys (RFC 7517).",
        {
            "keys": [
                {
                    "kty": "EC",
                    "crv": "P-256",
                    "alg": "ES256",
                    "use": "sig",
                    "kid": "k1",
                    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
                }
            ]
        },
        model=KeySet,
    ),
)
@tracer.capture_method
def jwks() -> Response[dict[str, Any]]:
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=token_public_keys().jwks(),
        # Public keys only, so any cache may keep them; five minutes bounds how long a verifier can miss a
        # newly added key (a rotation adds a key at least this long before it starts signing).
        headers={"Cache-Control": "public, max-age=300"},
    )


@logger.inject_lambda_context(clear_state=True, log_event=False)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

"""`Idempotency-Key` for any route (docs/api.md): Powertools idempotency, per user and route, kept 24 h.

A route calls `idempotent_response(app, user_id=..., payload=body, operation=...)`. The first request with a
key runs `operation` and stores its status and body; a repeat with the same body gets them back with
`Idempotent-Replayed: true` and nothing runs twice; the same key with another body is 422
`idempotency_key_reused`; the same key while the first request still runs is 409 `request_in_progress`.
An error raised by the operation is not stored (Powertools deletes the record), so a retry runs again.

The stored id is Powertools' `<prefix>#<sha256 of "<METHOD> <route>#<user_id>#<key>">`: neither the key nor
the user id is kept in clear, and one user's key can never replay another user's (or another route's)
response. Fields listed in `unstored` (a full account number) stay out of the store and are put back on
replay by `restore`, so this table never holds what the domain tables keep encrypted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vaultpay.shared.errors import BadRequest, Conflict, TransientError, ValidationFailed
from vaultpay.shared.lazy import cached
from vaultpay.shared.observability import get_logger

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
    from aws_lambda_powertools.utilities.idempotency import BasePersistenceLayer, IdempotencyConfig
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
TABLE_VARIABLE = "IDEMPOTENCY_TABLE"
# docs/api.md: keys are kept at least 24 h. Powertools treats an older record as expired (TTL deletes late).
EXPIRES_AFTER_S = 24 * 60 * 60
# Stable across deployments, unlike Powertools' default prefix (the function's physical name), so a
# redeployed or renamed function still recognises the keys it stored.
KEY_PREFIX = "vaultpay"
# docs/api.md: 1..255 printable ASCII (a space inside is printable; surrounding whitespace is not part of an
# HTTP header value).
_KEY = re.compile(r"[\x20-\x7e]{1,255}")
_KEY_PROBLEM = "The Idempotency-Key header is required: 1 to 255 printable ASCII characters."

# The short timeouts of the other request-path clients: a client waiting on a POST retries sooner anyway.
_AWS_TIMEOUT_S = 2.0
_AWS_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an idempotent operation answered: the HTTP status and JSON body the client sees."""

    status_code: int
    body: Mapping[str, Any]
    replayed: bool = field(default=False)


def idempotency_key(event: Mapping[str, Any]) -> str:
    """The request's Idempotency-Key; BadRequest `idempotency_key_required` when missing or malformed.

    A header sent twice with different values is refused: which copy a proxy keeps must not decide which
    request a retry is taken for.
    """
    multi = event.get("multiValueHeaders") or {}
    values = [v for k, vs in multi.items() if str(k).lower() == "idempotency-key" for v in (vs or [])]
    single = [v for k, v in (event.get("headers") or {}).items() if str(k).lower() == "idempotency-key"]
    candidates = {v.strip() if isinstance(v, str) else v for v in (values or single)}
    if not candidates:
        raise BadRequest(_KEY_PROBLEM, code="idempotency_key_required")
    value = candidates.pop() if len(candidates) == 1 else None
    if not isinstance(value, str) or not _KEY.fullmatch(value):
        raise BadRequest(
            _KEY_PROBLEM + " The one sent is empty, too long, repeated or not printable ASCII.",
            code="idempotency_key_required",
        )
    return value


def idempotency_scope(method: str, route: str, user_id: str, key: str) -> str:
    """What one stored response answers for: this user's key on this route."""
    return f"{method.upper()} {route}#{user_id}#{key}"


def idempotent_response(
    app: APIGatewayRestResolver,
    *,
    user_id: str,
    payload: Any,
    operation: Callable[[], Outcome],
    unstored: Sequence[str] = (),
    restore: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
) -> Response[str]:
    """Runs `operation` at most once per (route, user, Idempotency-Key) and answers its outcome as JSON.

    `payload` is the parsed request body (a pydantic model or a mapping): it is what a repeat must match.
    Call it after the caller is known and the body validated, i.e. from inside the route.
    """
    event = app.current_event.raw_event
    key = idempotency_key(event)
    method = str(event.get("httpMethod") or "")
    route = str(event.get("resource") or app.current_event.path)
    outcome = run_idempotent(
        scope=idempotency_scope(method, route, user_id, key),
        payload=payload,
        operation=operation,
        lambda_context=getattr(app, "lambda_context", None),
        unstored=unstored,
        restore=restore,
    )
    return json_response(outcome)


def json_response(outcome: Outcome) -> Response[str]:
    """The outcome as an uncacheable JSON response, marked when it is a replay."""
    import json

    from aws_lambda_powertools.event_handler import Response, content_types

    headers = {"Cache-Control": "no-store"}
    if outcome.replayed:
        headers[REPLAYED_HEADER] = "true"
    return Response(
        status_code=outcome.status_code,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(dict(outcome.body), separators=(",", ":"), ensure_ascii=False),
        headers=headers,
    )


def run_idempotent(
    *,
    scope: str,
    payload: Any,
    operation: Callable[[], Outcome],
    lambda_context: Any = None,
    unstored: Sequence[str] = (),
    restore: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    persistence: BasePersistenceLayer | None = None,
) -> Outcome:
    """The idempotency core, free of HTTP: `scope` names the key, `payload` is what a repeat must match."""
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyInconsistentStateError,
        IdempotencyPersistenceLayerError,
        IdempotencyValidationError,
    )

    config = idempotency_config()
    # Powertools sets the in-progress record to expire when this invocation would time out, so a request
    # that died mid-way does not block its retries for 24 h. Without a usable context (a test, a direct
    # call) the record lasts until a normal expiry; a stale context from an earlier request must not linger.
    usable = callable(getattr(lambda_context, "get_remaining_time_in_millis", None))
    config.register_lambda_context(lambda_context if usable else None)  # type: ignore[arg-type]

    first: list[Outcome] = []

    def run() -> dict[str, Any]:
        outcome = operation()
        first.append(outcome)
        stored = {k: v for k, v in outcome.body.items() if k not in unstored}
        return {"status_code": outcome.status_code, "body": stored}

    execute = _idempotent_execute(persistence or persistence_layer())
    request = {"scope": scope, "body": _jsonable(payload)}
    log = get_logger()
    try:
        result = execute(request=request, run=run)
    except IdempotencyValidationError:
        log.info("idempotency key reused with another body")
        raise ValidationFailed(
            "This Idempotency-Key was already used with a different request body. Use a new key for a new "
            "request.",
            code="idempotency_key_reused",
        ) from None
    except IdempotencyAlreadyInProgressError:
        log.info("idempotent request already in progress")
        raise Conflict(
            "A request with this Idempotency-Key is still being processed. Retry after it completes.",
            code="request_in_progress",
        ) from None
    except (IdempotencyPersistenceLayerError, IdempotencyInconsistentStateError) as exc:
        # The operation's own errors pass through untouched; these are the store's, with vendor text.
        raise TransientError(f"idempotency store failed: {type(exc).__name__}") from exc
    if first:
        return first[0]
    # A replay: Powertools answered from the store through the response hook.
    log.info("idempotent request replayed", extra={"status": result["status_code"]})
    body: Mapping[str, Any] = result["body"]
    if restore is not None:
        body = restore(body)
    return Outcome(status_code=int(result["status_code"]), body=body, replayed=True)


def _jsonable(payload: Any) -> Any:
    dump = getattr(payload, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    return dict(payload) if isinstance(payload, Mapping) else payload


def _execute(*, request: Mapping[str, Any], run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    # Only `request` is hashed (Powertools' data_keyword_argument); `run` is the work, never stored.
    return run()


def _mark_replay(response: Any, idempotent_data: DataRecord) -> Any:
    # Powertools' response_hook: called only when the answer comes from the store, i.e. for a replay.
    return {**response, "replayed": True} if isinstance(response, dict) else response


@cached
def idempotency_config() -> IdempotencyConfig:
    """The one config of the process: a persistence layer keeps the first config it is given."""
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig

    return IdempotencyConfig(
        event_key_jmespath="scope",
        payload_validation_jmespath="body",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=EXPIRES_AFTER_S,
        hash_function="sha256",
        response_hook=_mark_replay,
    )


@cached
def persistence_layer() -> BasePersistenceLayer:
    """The process's idempotency store: the DynamoDB table named by IDEMPOTENCY_TABLE."""
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    from vaultpay.shared.aws import aws_client
    from vaultpay.shared.settings import IdempotencyTable

    table = IdempotencyTable.load(os.environ).require("idempotency_table")
    return DynamoDBPersistenceLayer(
        table_name=table,
        boto3_client=aws_client("dynamodb", timeout_s=_AWS_TIMEOUT_S, max_attempts=_AWS_ATTEMPTS),
    )


@cached
def _idempotent_execute(persistence: BasePersistenceLayer) -> Callable[..., dict[str, Any]]:
    from aws_lambda_powertools.utilities.idempotency import idempotent_function

    wrapped: Callable[..., dict[str, Any]] = idempotent_function(
        _execute,
        data_keyword_argument="request",
        persistence_store=persistence,
        config=idempotency_config(),
        key_prefix=KEY_PREFIX,
    )
    return wrapped

"""What a cached authorizer decision cannot decide, checked by each function behind the authorizer: the
request's device against the token's, and the caller's per-user API-call count.

API Gateway caches the authorizer's decision by the token alone (template.yaml) and hands it to every later
request with that token for up to SessionCheckSeconds, without invoking the authorizer. A decision is about
the token (valid, its session live, its role's routes); the device header and the count are about each
request, so the function checks them, on every request, before any route runs (vaultpay.shared.http).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vaultpay.shared import kernel
from vaultpay.shared.errors import BadRequest, RateLimited, Unauthorized, VaultPayError
from vaultpay.shared.events import DomainEvent
from vaultpay.shared.lazy import cached
from vaultpay.shared.ratelimit import Window

if TYPE_CHECKING:
    from vaultpay.shared.dynamo import Table
    from vaultpay.shared.ratelimit import RateLimiter

# identity-contract.md: API calls per user, 600 a minute.
API_CALLS = Window(limit=600, period_s=60)
API_CALLS_SCOPE = "api"
# The same values as vaultpay.auth.model (shared imports no domain); the fraud engine reads these events.
DEVICE_MISMATCH = "vaultpay.auth.device.mismatch"
DEVICE_MISMATCH_SOURCE = "/vaultpay/auth"
# docs/api.md: 1..128 printable ASCII.
DEVICE_ID = re.compile(r"[\x20-\x7e]{1,128}")
# Every protected request waits on the count: one quick retry, then fail closed (503), as the authorizer's
# calls do.
_AWS_TIMEOUT_S = 1.0
_AWS_ATTEMPTS = 2


def single_header(event: Mapping[str, Any], lower_name: str) -> str | None:
    """One header's value, case-insensitively; None when missing or sent more than once (ambiguous)."""
    multi = event.get("multiValueHeaders") or {}
    values = [v for k, vs in multi.items() if k.lower() == lower_name for v in (vs or [])]
    if len(values) > 1:
        return None
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == lower_name and isinstance(value, str):
            return value.strip()
    return values[0].strip() if values and isinstance(values[0], str) else None


def decision_request_id(event: Mapping[str, Any]) -> str | None:
    """The id of the request the authorizer ran for, as its decision names it; None when it names none (a
    hand-made event, a direct invoke, an authorizer of an earlier release, which checked the device and
    counted the call itself)."""
    authorizer = (event.get("requestContext") or {}).get("authorizer")
    decided = authorizer.get("request_id") if isinstance(authorizer, Mapping) else None
    return decided if isinstance(decided, str) and decided else None


def decided_for_another_request(event: Mapping[str, Any]) -> bool:
    """Whether API Gateway answered this request from its authorizer cache: the decision names another
    request than this one, so what in it was about that request (its correlation id) is not about this one."""
    decided = decision_request_id(event)
    return decided is not None and decided != (event.get("requestContext") or {}).get("requestId")


def caller_refusal(
    event: Mapping[str, Any], context: Mapping[str, Any], correlation_id: str
) -> VaultPayError | None:
    """The device binding, then the per-user count, of a request the authorizer allowed (`context` is its
    decision); None when the request may go on.

    The device comes first, so that someone replaying a stolen token from another device cannot use up the
    owner's quota, and every mismatch reaches the fraud engine.
    """
    user_id, token_device_id = context.get("user_id"), context.get("device_id")
    if decision_request_id(event) is None or not isinstance(user_id, str) or not user_id:
        return None
    presented = single_header(event, "x-device-id")
    if presented is None or not DEVICE_ID.fullmatch(presented):
        return device_id_required()
    try:
        if presented != token_device_id:
            report_device_mismatch(event, user_id, str(token_device_id or ""), presented, correlation_id)
            return device_mismatch()
        api_call_limiter().hit(API_CALLS_SCOPE, user_id, API_CALLS, now=kernel.now())
    except RateLimited as limited:
        return limited
    except VaultPayError as failed:
        # The count or the event could not be written: refuse (503), never let the request through unchecked.
        return failed
    return None


def device_id_required() -> BadRequest:
    return BadRequest(
        "The X-Device-Id header is required (1 to 128 printable ASCII characters).", code="device_id_required"
    )


def device_mismatch() -> Unauthorized:
    return Unauthorized(
        "The X-Device-Id header does not match the device this token was issued to.", code="device_mismatch"
    )


def report_device_mismatch(
    event: Mapping[str, Any],
    user_id: str,
    token_device_id: str,
    presented_device_id: str,
    correlation_id: str,
) -> None:
    """Writes `vaultpay.auth.device.mismatch` into the auth table's outbox, as the authorizer did when it
    checked the device: the same event, the same data, published by the same relay."""
    request = event.get("requestContext") or {}
    source_ip = (request.get("identity") or {}).get("sourceIp")
    mismatch = DomainEvent(
        type=DEVICE_MISMATCH,
        source=DEVICE_MISMATCH_SOURCE,
        subject=user_id,
        # Whoever holds the token is not known to be its user: that is the point of the event.
        actor=None,
        correlation_id=correlation_id,
        data={
            "user_id": user_id,
            "token_device_id": token_device_id,
            "presented_device_id": presented_device_id,
            "method": event.get("httpMethod"),
            "resource": event.get("resource"),
            "source_ip": source_ip if isinstance(source_ip, str) else None,
        },
    )
    from vaultpay.shared.dynamo import outbox_item

    outbox = device_mismatch_outbox()
    # An event id is written once: a retried call must not overwrite what the relay read.
    outbox.call(
        "PutItem",
        TableName=outbox.name,
        Item=outbox_item(mismatch),
        ConditionExpression="attribute_not_exists(pk)",
    )


@cached
def api_call_limiter() -> RateLimiter:
    """The process's counter of API calls in ApiCallsTable (API_CALLS_TABLE), built on first use."""
    from vaultpay.shared.aws import aws_client
    from vaultpay.shared.ratelimit import RateLimiter
    from vaultpay.shared.ratelimit_store import DynamoDBCounterStore
    from vaultpay.shared.settings import ApiCallsTable

    table = ApiCallsTable.load(os.environ).require("api_calls_table")
    client = aws_client("dynamodb", timeout_s=_AWS_TIMEOUT_S, max_attempts=_AWS_ATTEMPTS)
    return RateLimiter(DynamoDBCounterStore(client, table))


@cached
def device_mismatch_outbox() -> Table:
    """The auth table (AUTH_TABLE), where a mismatch's event is written; built on the first mismatch."""
    from vaultpay.shared.aws import aws_client
    from vaultpay.shared.dynamo import Table
    from vaultpay.shared.settings import AuthTable

    table = AuthTable.load(os.environ).require("auth_table")
    return Table(aws_client("dynamodb", timeout_s=_AWS_TIMEOUT_S, max_attempts=_AWS_ATTEMPTS), table)

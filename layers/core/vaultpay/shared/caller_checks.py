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
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from vaultpay.shared import kernel
from vaultpay.shared.errors import BadRequest, Unauthorized, VaultPayError
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
# As the domains' and the idempotency records' clients are configured: a process builds one DynamoDB client
# for all of them (a client costs a cold start tens of milliseconds).
_AWS_TIMEOUT_S = 2.0
_AWS_ATTEMPTS = 3


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


# Reads change nothing: their count may run while the route reads, and a refusal replaces the answer. Any
# other method changes something, so its count is settled before the route runs.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CallerCheck:
    """The checks of one request: `refusal` is known before any route runs (the device, or a count settled
    up front); `settle()` gives the count's refusal once it is known (it waits for a count in flight)."""

    __slots__ = ("_counting", "refusal")

    def __init__(self, refusal: VaultPayError | None, counting: Future[VaultPayError | None] | None) -> None:
        self.refusal = refusal
        self._counting = counting

    def settle(self) -> VaultPayError | None:
        return self._counting.result() if self._counting is not None else None


def check_caller(event: Mapping[str, Any], context: Mapping[str, Any], correlation_id: str) -> CallerCheck:
    """The device binding, then the per-user count, of a request the authorizer allowed (`context` is its
    decision).

    The device comes first, so that someone replaying a stolen token from another device cannot use up the
    owner's quota, and every mismatch reaches the fraud engine. A read's count runs on a thread beside its
    route (the 200 waits on the slower of the two, not on both); any other method's is settled first.
    """
    user_id, token_device_id = context.get("user_id"), context.get("device_id")
    if decision_request_id(event) is None or not isinstance(user_id, str) or not user_id:
        return CallerCheck(None, None)
    presented = single_header(event, "x-device-id")
    if presented is None or not DEVICE_ID.fullmatch(presented):
        return CallerCheck(device_id_required(), None)
    if presented != token_device_id:
        try:
            report_device_mismatch(event, user_id, str(token_device_id or ""), presented, correlation_id)
        except VaultPayError as failed:
            # The fraud engine must hear of it: refuse 503 rather than answer without the event.
            return CallerCheck(failed, None)
        return CallerCheck(device_mismatch(), None)
    if str(event.get("httpMethod") or "").upper() in SAFE_METHODS:
        return CallerCheck(None, _counter_pool().submit(count_api_call, user_id))
    return CallerCheck(count_api_call(user_id), None)


def count_api_call(user_id: str) -> VaultPayError | None:
    """Counts one API call of `user_id`: RateLimited over the limit, and an error (503) when the count
    cannot be written (fail closed: never let a request through uncounted); None when it may go on."""
    try:
        api_call_limiter().hit(API_CALLS_SCOPE, user_id, API_CALLS, now=kernel.now())
    except VaultPayError as refused:
        return refused
    return None


@cached
def _counter_pool() -> ThreadPoolExecutor:
    # One request at a time per Lambda container, one count in flight per request.
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="api-call-count")


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

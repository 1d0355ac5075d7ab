"""API Gateway's authorizer cache (keyed on the token) keeps every check it could skip.

The local cloud caches a decision for SessionCheckSeconds (2 s here, tests/conftest.py), as the template
tells API Gateway to. The decision is about the token; the function checks each request's device and counts
it (vaultpay.shared.caller_checks): another device with the same token is refused and reported even when the
owner's decision is cached, a request without X-Device-Id is still the contract's 400, an ended session is
refused within the cache's TTL plus the authorizer's session check, and a request answered from the cache is
still counted against the per-user API-call limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from support.bank import assert_problem, refused_within, signed_in_customer, signed_in_customer_with_tokens

pytestmark = pytest.mark.e2e

SESSION_CHECK_S = 2  # tests/conftest.py: the cache's TTL and the authorizer's session check
API_CALLS_PER_MINUTE = 600  # identity-contract.md


def test_another_device_with_the_same_token_is_not_served_the_cached_allow(api: Callable[..., Any]) -> None:
    # Given a customer whose GET /v1/me from their phone was just allowed (the decision is now cached)
    client = signed_in_customer(api, device_id="phone-1")
    assert client.get("/v1/me").status == 200
    # When the same token comes from another device within the cache's TTL
    stolen = client.get("/v1/me", device="thief-laptop")
    # Then the function's device check refuses it, on the cached decision
    assert_problem(stolen, 401, "device_mismatch")
    # and the owner's device is still served
    assert client.get("/v1/me").status == 200


def test_a_request_without_a_device_id_is_the_contracts_400_cached_or_not(api: Callable[..., Any]) -> None:
    # Given a customer whose decision is cached
    client = signed_in_customer(api, device_id="phone-5")
    assert client.get("/v1/me").status == 200
    # When the same token comes without X-Device-Id
    # Then it is 400 device_id_required (docs/api.md), not API Gateway's 401
    assert_problem(client.get("/v1/me", device=None), 400, "device_id_required")


def test_a_customer_decision_cached_on_one_route_serves_the_others_and_never_an_admin_route(
    api: Callable[..., Any],
) -> None:
    # Given a customer's decision cached by a GET /v1/me
    client = signed_in_customer(api, device_id="phone-2")
    assert client.get("/v1/me").status == 200
    # When the same token and device call other routes within the TTL (the decision is the token's)
    # Then the cached policy covers the customer's routes and denies the admin ones
    assert client.get("/v1/accounts").status == 200
    assert client.get("/v1/auth/devices").status == 200
    assert_problem(client.get("/v1/admin/audit"), 403, "forbidden")
    assert client.get("/v1/me").status == 200


def test_a_signed_out_session_is_refused_within_the_cache_ttl_and_the_session_check(
    api: Callable[..., Any],
) -> None:
    # Given a signed-in customer whose decision is cached
    client, tokens = signed_in_customer_with_tokens(api, device_id="phone-3")
    assert client.get("/v1/me").status == 200
    # When they sign out
    signed_out = time.monotonic()
    assert client.post("/v1/auth/logout", {"refresh_token": tokens["refresh_token"]}).status == 204
    # Then the access token is refused once the cached decision and the session check have both lapsed
    assert_problem(refused_within(client, 2 * SESSION_CHECK_S + 3), 401, "token_revoked")
    assert time.monotonic() - signed_out <= 2 * SESSION_CHECK_S + 3


def test_a_user_over_the_limit_is_limited_even_when_the_decision_is_cached(
    api: Callable[..., Any], local_cloud: Any
) -> None:
    # Given a customer whose decision is cached, with this minute's API calls used up
    client = signed_in_customer(api, device_id="phone-4")
    me = client.get("/v1/me")
    assert me.status == 200
    _use_up_the_api_calls(local_cloud, str(me.body["user_id"]))
    # When they call again within the cache's TTL (the authorizer does not run on a cache hit)
    limited = client.get("/v1/me")
    # Then the function counts the call and refuses it, with the window's Retry-After
    assert_problem(limited, 429, "rate_limited")
    assert 1 <= int(limited.header("Retry-After") or 0) <= 60


def _use_up_the_api_calls(local_cloud: Any, user_id: str) -> None:
    """Sets this user's API-call counters of this minute and the next to the limit (600 real calls would
    take the test tens of seconds)."""
    dynamodb = local_cloud.client("dynamodb")
    table = next(t for t in dynamodb.list_tables()["TableNames"] if t.endswith("ApiCallsTable"))
    window = int(time.time()) // 60 * 60
    for start in (window, window + 60):
        dynamodb.put_item(
            TableName=table,
            Item={
                "pk": {"S": f"RL#api#{start}#{user_id}"},
                "count": {"N": str(API_CALLS_PER_MINUTE)},
                "expires_at": {"N": str(start + 60)},
            },
        )

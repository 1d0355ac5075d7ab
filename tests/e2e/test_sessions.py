"""Sessions that end: after a logout, or a reused refresh token, the session's access tokens stop working.

Before, an access token lived its full 15 minutes whatever happened to its session. The test cloud's
authorizer re-reads a session after 2 s (`SessionCheckSeconds=2`; 30 by default, at most 60).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from support.bank import PASSWORD, assert_problem, refused_within, signed_in_customer_with_tokens

pytestmark = pytest.mark.e2e

SESSION_CHECK_S = 2


def _session(api: Callable[..., Any]) -> tuple[Any, dict[str, Any]]:
    """A new customer's client, signed in, and the token pair it got."""
    return signed_in_customer_with_tokens(api, device_id="session-phone")


def test_after_a_logout_the_sessions_access_token_is_token_revoked(api: Callable[..., Any]) -> None:
    client, tokens = _session(api)
    assert client.get("/v1/me").status == 200
    # When the customer signs out
    assert client.post("/v1/auth/logout", {"refresh_token": tokens["refresh_token"]}).status == 204
    # Then the access token, still 15 minutes from its expiry, ends within the authorizer's check interval
    refused = refused_within(client, SESSION_CHECK_S + 5)
    assert_problem(refused, 401, "token_revoked")


def test_a_reused_refresh_token_ends_the_access_tokens_of_its_session(api: Callable[..., Any]) -> None:
    client, first = _session(api)
    second = client.post("/v1/auth/refresh", {"refresh_token": first["refresh_token"]}, token=None)
    assert second.status == 200, second.body
    client.token = second.body["access_token"]
    assert client.get("/v1/me").status == 200
    # When the retired refresh token is presented again (a thief replaying it)
    reused = client.post("/v1/auth/refresh", {"refresh_token": first["refresh_token"]}, token=None)
    assert_problem(reused, 401, "refresh_token_reused")
    # Then even the newest access token of that session stops working
    assert_problem(refused_within(client, SESSION_CHECK_S + 5), 401, "token_revoked")


def test_a_disabled_user_is_signed_out_everywhere_and_cannot_sign_in_until_enabled(
    api: Callable[..., Any], admin: Any
) -> None:
    client, _ = _session(api)
    user_id = client.get("/v1/me").body["user_id"]
    email = client.get("/v1/me").body["email"]
    # When an admin disables the user
    disabled = admin.post(f"/v1/admin/users/{user_id}/disable", {"reason": "card reported stolen"})
    assert (disabled.status, disabled.body) == (200, {"user_id": user_id, "status": "DISABLED"})
    # Then the user's access token ends, and the right password is 403 user_disabled
    assert_problem(refused_within(client, SESSION_CHECK_S + 5), 401, "token_revoked")
    login = api(device_id="session-phone").post(
        "/v1/auth/login", {"email": email, "password": PASSWORD}, token=None
    )
    assert_problem(login, 403, "user_disabled")
    # And once enabled again, the user can sign in (a new challenge)
    enabled = admin.post(f"/v1/admin/users/{user_id}/enable", {"reason": "verified by phone"})
    assert (enabled.status, enabled.body) == (200, {"user_id": user_id, "status": "ACTIVE"})
    again = api(device_id="session-phone").post(
        "/v1/auth/login", {"email": email, "password": PASSWORD}, token=None
    )
    assert again.status == 200, again.body


def test_only_admins_change_a_users_status_and_only_of_users_that_exist(
    api: Callable[..., Any], admin: Any
) -> None:
    client, _ = _session(api)
    user_id = client.get("/v1/me").body["user_id"]
    # A customer, even on their own account, is refused by the authorizer (403)
    assert_problem(client.post(f"/v1/admin/users/{user_id}/disable", {"reason": "x"}), 403, "forbidden")
    assert client.get("/v1/me").status == 200
    # An unknown user is 404; a missing reason 422
    unknown = admin.post(f"/v1/admin/users/usr_{'0' * 32}/disable", {"reason": "x"})
    assert_problem(unknown, 404, "user_not_found")
    assert_problem(admin.post(f"/v1/admin/users/{user_id}/disable", {}), 422, "validation_failed")

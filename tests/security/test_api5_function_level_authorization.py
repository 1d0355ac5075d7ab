"""OWASP API5:2023 Broken Function Level Authorization: a customer calling what only an admin or an
operator may call.

Two locks: the authorizer Denies a role its route does not allow (`ROLE_RULES` in vaultpay.auth.authorizer:
`/v1/admin/*` is admin only, 403 `forbidden`), and each admin function checks the role again. Operator
functions (creating admins, reconciling, sweeping, the saga's steps) have no HTTP route at all.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from support.bank import assert_problem, idempotency_key, open_account, signed_in_customer
from support.routes import Route, template_functions, template_routes

ADMIN_PREFIX = "/v1/admin"
# The routes a customer or an anonymous caller may use. A new route outside /v1/admin is open to every
# signed-in customer (the authorizer's role rule is by prefix): it must be added here knowingly.
CUSTOMER_OR_PUBLIC_ROUTES = {
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
    ("GET", "/v1/health"),
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/mfa/verify"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    ("GET", "/v1/me"),
    ("GET", "/v1/auth/devices"),
    ("POST", "/v1/accounts"),
    ("GET", "/v1/accounts"),
    ("GET", "/v1/accounts/{account_id}"),
    ("GET", "/v1/accounts/{account_id}/statement"),
    ("POST", "/v1/transfers"),
    ("GET", "/v1/transfers"),
    ("GET", "/v1/transfers/{transfer_id}"),
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks"),
    ("GET", "/v1/webhooks/{webhook_id}"),
    ("DELETE", "/v1/webhooks/{webhook_id}"),
    ("POST", "/v1/webhooks/{webhook_id}/rotate-secret"),
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"),
    ("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"),
    ("GET", "/v1/events"),
}
# Functions that must never be reachable over HTTP: they mint admins, move money inside the saga, answer
# other domains or run operator jobs.
NEVER_ROUTED = {
    "AuthorizerFunction",
    "CreateAdminFunction",
    "ReserveFundsFunction",
    "SettleTransferFunction",
    "ReleaseFundsFunction",
    "ResolveTransferPartiesFunction",
    "TransferStatusFunction",
    "EvaluateFraudFunction",
    "AwaitReviewFunction",
    "ReconcileLedgerFunction",
    "HoldSweeperFunction",
    "RelayFunction",
    "OutboxSweeperFunction",
    "ConsumeAuditEventsFunction",
    "FraudConsumeFunction",
    "ConsumeWebhookEventsFunction",
    "WebhookDeliverySweeperFunction",
}


def _placeholders(route: Route) -> dict[str, str]:
    prefixes = {"transfer_id": "tr_", "user_id": "usr_", "account_id": "acc_", "deposit_id": "dep_"}
    return {name: prefixes.get(name, "") + uuid.uuid4().hex for name in route.parameters}


@pytest.mark.unit
def test_every_route_outside_admin_is_one_a_customer_may_call_and_no_operator_function_has_a_route() -> None:
    routes = template_routes()
    outside = {(r.method, r.path) for r in routes if not r.path.startswith(ADMIN_PREFIX)}
    assert outside == CUSTOMER_OR_PUBLIC_ROUTES
    routed = {r.function for r in routes}
    assert NEVER_ROUTED - set(template_functions()) == set()  # each still exists under this name
    assert routed & NEVER_ROUTED == set()
    # An admin route is never public
    assert [r for r in routes if r.path.startswith(ADMIN_PREFIX) and r.public] == []


@pytest.mark.e2e
def test_a_customer_token_on_every_admin_route_is_403_and_no_token_is_401(api: Callable[..., Any]) -> None:
    customer = signed_in_customer(api, device_id="curious-customer")
    admin_routes = [r for r in template_routes() if r.path.startswith(ADMIN_PREFIX)]
    assert len(admin_routes) >= 10, admin_routes
    for route in admin_routes:
        path = route.concrete(**_placeholders(route))
        body = {} if route.method == "POST" else None
        refused = customer.request(route.method, path, body, headers=idempotency_key())
        assert_problem(refused, 403, "forbidden")
        anonymous = customer.request(route.method, path, body, headers=idempotency_key(), token=None)
        assert_problem(anonymous, 401, "unauthorized")


# Spellings a path normaliser somewhere between the client and the role check might read as /v1/admin/audit.
ADMIN_PATH_SPELLINGS = [
    "/v1//admin/audit",
    "/v1/admin//audit",
    "/v1/%61dmin/audit",
    "/v1/admin/audit/",
    "/V1/ADMIN/AUDIT",
    "/v1/admin%2Faudit",
    "/v1/accounts/../admin/audit",
    "/v1/admin/./audit",
]


@pytest.mark.e2e
def test_no_spelling_of_an_admin_path_gets_a_customer_past_the_role_check(api: Callable[..., Any]) -> None:
    customer = signed_in_customer(api, device_id="path-tricks")
    for path in ADMIN_PATH_SPELLINGS:
        reply = customer.get(path)
        # Refused (403) or no such route (404): never the audit log
        assert reply.status in (403, 404), (path, reply.status, reply.body)
        assert "items" not in (reply.body or {}), path


def _proxy_event(
    route: Route, parameters: dict[str, str], user_id: str, body: Any, query: dict[str, str] | None = None
) -> dict[str, Any]:
    """API Gateway's proxy event for `route`, as if an authorizer had let a customer through."""
    headers = {"Content-Type": "application/json", "X-Device-Id": "device-1", **idempotency_key()}
    path = route.concrete(**parameters)
    return {
        "resource": route.path,
        "path": path,
        "httpMethod": route.method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": route.path,
            "httpMethod": route.method,
            "path": f"/local{path}",
            "stage": "local",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "127.0.0.1"},
            "authorizer": {
                "user_id": user_id,
                "role": "customer",
                "device_id": "device-1",
                "correlation_id": str(uuid.uuid4()),
                "auth_error": "",
            },
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


@pytest.mark.e2e
def test_each_admin_function_refuses_a_customer_even_if_the_authorizer_let_one_through(
    api: Callable[..., Any], local_cloud: Any
) -> None:
    # Given a route misconfigured without the authorizer's role rule (the second lock is what is left)
    customer = signed_in_customer(api, device_id="second-lock")
    user_id = customer.get("/v1/me").body["user_id"]
    account = open_account(customer)
    other_user = "usr_" + uuid.uuid4().hex
    transfer_id = "tr_" + uuid.uuid4().hex
    # Valid bodies, so that only the role can refuse them
    deposit_id = "dep_" + uuid.uuid4().hex
    requests: dict[tuple[str, str], tuple[dict[str, str], Any]] = {
        ("POST", "/v1/admin/deposits"): (
            {},
            {"account_id": account["account_id"], "amount": 10**9, "currency": "INR", "reference": "free"},
        ),
        ("GET", "/v1/admin/deposits"): ({}, None),
        ("POST", "/v1/admin/deposits/{deposit_id}/approve"): ({"deposit_id": deposit_id}, {"reason": "mine"}),
        ("POST", "/v1/admin/deposits/{deposit_id}/reject"): (
            {"deposit_id": deposit_id},
            {"reason": "theirs"},
        ),
        ("GET", "/v1/admin/audit"): ({}, None),
        ("GET", "/v1/admin/audit/verify"): ({}, None),
        ("GET", "/v1/admin/fraud/alerts"): ({}, None),
        ("POST", "/v1/admin/fraud/reviews/{transfer_id}"): (
            {"transfer_id": transfer_id},
            {"decision": "APPROVE", "note": "approving my own transfer"},
        ),
        ("POST", "/v1/admin/users/{user_id}/disable"): (
            {"user_id": other_user},
            {"reason": "a customer silencing another"},
        ),
        ("POST", "/v1/admin/users/{user_id}/enable"): (
            {"user_id": other_user},
            {"reason": "a customer reviving another"},
        ),
    }
    routes = {(r.method, r.path): r for r in template_routes()}
    assert set(requests) <= set(routes)
    lambda_client = local_cloud.client("lambda")
    for key, (parameters, body) in requests.items():
        route = routes[key]
        query = {"status": "PENDING_APPROVAL"} if key == ("GET", "/v1/admin/deposits") else None
        out = lambda_client.invoke(
            FunctionName=local_cloud.function_name(route.function),
            Payload=json.dumps(_proxy_event(route, parameters, user_id, body, query)).encode(),
        )
        response = json.loads(out["Payload"].read())
        assert response.get("statusCode") == 403, (key, response)
    # And the deposit the customer tried to make for themselves did not happen
    assert customer.get(f"/v1/accounts/{account['account_id']}").body["balance"]["ledger"] == 0


@pytest.mark.e2e
def test_an_admin_cannot_change_their_own_status(admin: Any) -> None:
    # An admin's own status is for another admin to change (docs/api.md)
    me = admin.get("/v1/me").body["user_id"]
    for action in ("disable", "enable"):
        assert_problem(admin.post(f"/v1/admin/users/{me}/{action}", {"reason": "myself"}), 403)
    assert admin.get("/v1/me").status == 200

"""The authorizer's decisions with fakes: token, session, route role, the cached policy, the context."""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from vaultpay.auth.authorizer import Authorizer, AuthorizerRequest, Decision, role_may_call
from vaultpay.auth.tokens import SigningKeySet, generate_signing_key_document, issue_access_token
from vaultpay.shared.errors import Unauthorized

pytestmark = pytest.mark.unit
EVENTS = Path(__file__).resolve().parents[3] / "events" / "auth"

ISSUER = "https://auth.vaultpay.dev/local"
AUDIENCE = "vaultpay-api"
NOW = 1_795_860_915.0  # 15 s into a one-minute window
USER = "usr_01JD3F6Q"
DEVICE = "device-4f1c2a"


class StaticKeys:
    def __init__(self, keys: SigningKeySet) -> None:
        self.by_kid = keys.public_keys_by_kid()

    def public_keys_by_kid(self) -> Mapping[str, Any]:
        return self.by_kid


@pytest.fixture(scope="module")
def keys() -> SigningKeySet:
    return SigningKeySet.from_secret(generate_signing_key_document())


@pytest.fixture
def authorizer(keys: SigningKeySet) -> Authorizer:
    return Authorizer(keys=StaticKeys(keys), issuer=ISSUER, audience=AUDIENCE, clock=lambda: NOW)


def _token(keys: SigningKeySet, *, role: str = "customer", device_id: str = DEVICE, **overrides: Any) -> str:
    args: dict[str, Any] = {
        "user_id": USER,
        "role": role,
        "device_id": device_id,
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "now": NOW - 60,
        **overrides,
    }
    token, _ = issue_access_token(keys, **args)
    return token


def _event(sample: str = "authorizer_me.json", **headers: str | None) -> dict[str, Any]:
    """A sample REQUEST authorizer event with headers replaced (None removes one)."""
    event: dict[str, Any] = copy.deepcopy(json.loads((EVENTS / sample).read_text()))
    for name, value in headers.items():
        header = name.replace("_", "-")
        for key in [k for k in event["headers"] if k.lower() == header.lower()]:
            del event["headers"][key]
            del event["multiValueHeaders"][key]
        if value is not None:
            event["headers"][header] = value
            event["multiValueHeaders"][header] = [value]
    return event


def _decide(authorizer: Authorizer, event: dict[str, Any]) -> Decision:
    return authorizer.decide(AuthorizerRequest.from_event(event))


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


# ---- allow --------------------------------------------------------------------------------------------


def _invoke_allowed(policy: dict[str, Any], arn: str) -> bool:
    """IAM's evaluation of execute-api:Invoke on `arn`, as API Gateway applies a (cached) policy: an
    explicit Deny wins, then any Allow; `*` matches any run of characters, `/` included."""
    allowed = False
    for statement in policy["Statement"]:
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        if statement["Action"] != "execute-api:Invoke":
            continue
        if not any(re.fullmatch(".*".join(map(re.escape, r.split("*"))), arn) for r in resources):
            continue
        if statement["Effect"] == "Deny":
            return False
        allowed = True
    return allowed


def _arn(event: dict[str, Any], method: str, path: str) -> str:
    return "/".join(event["methodArn"].split("/")[:2]) + f"/{method}{path}"


def test_a_valid_token_from_its_device_is_allowed_on_every_route_of_its_role(
    authorizer: Authorizer, keys: SigningKeySet
) -> None:
    # Given a customer's token presented from the device it was issued to
    event = _event(Authorization=f"Bearer {_token(keys)}")
    # When the authorizer decides
    response = _decide(authorizer, event).response()
    # Then its policy allows this request and every other customer route (API Gateway evaluates a cached
    # policy against later requests' ARNs), never an admin route, and hands the principal to the function
    assert response["principalId"] == USER
    policy = response["policyDocument"]
    assert policy["Version"] == "2012-10-17"
    assert _invoke_allowed(policy, event["methodArn"])
    for method, path in [
        ("POST", "/v1/transfers"),
        ("GET", "/v1/accounts/acc_1/statement"),
        ("GET", "/v1/me"),
    ]:
        assert _invoke_allowed(policy, _arn(event, method, path)), path
    for method, path in [("POST", "/v1/admin/deposits"), ("GET", "/v1/admin"), ("GET", "/v1/admin/audit")]:
        assert not _invoke_allowed(policy, _arn(event, method, path)), path
    assert _invoke_allowed(policy, _arn(event, "GET", "/v1/administrators-guide"))  # a look-alike prefix
    # and no other stage or API
    assert not _invoke_allowed(policy, event["methodArn"].replace("/local/", "/prod/"))
    assert response["context"] == {
        "user_id": USER,
        "role": "customer",
        "device_id": DEVICE,
        "correlation_id": "c0ffee00-0000-4000-8000-000000000002",
        "request_id": event["requestContext"]["requestId"],
        # ACCESS_DENIED's code, should this cached policy deny a later request (an admin route)
        "code": "forbidden",
        "auth_error": "",
        "retry_after": 0,
    }


def test_an_admins_policy_allows_every_route_of_the_stage(
    authorizer: Authorizer, keys: SigningKeySet
) -> None:
    event = _event(Authorization=f"Bearer {_token(keys, role='admin')}")
    policy = _decide(authorizer, event).response()["policyDocument"]
    for method, path in [("GET", "/v1/me"), ("POST", "/v1/admin/deposits"), ("GET", "/v1/admin/audit")]:
        assert _invoke_allowed(policy, _arn(event, method, path)), path


def test_an_admin_may_call_admin_routes(authorizer: Authorizer, keys: SigningKeySet) -> None:
    event = _event("authorizer_admin_deposit.json", Authorization=f"Bearer {_token(keys, role='admin')}")
    decision = _decide(authorizer, event)
    assert decision.allow
    assert decision.context["role"] == "admin"
    assert decision.auth_error == ""


def test_the_bearer_scheme_is_case_insensitive_and_headers_are_found_in_any_case(
    authorizer: Authorizer, keys: SigningKeySet
) -> None:
    event = _event(Authorization=None, X_Device_Id=None)
    event["headers"]["authorization"] = f"bearer {_token(keys)}"
    event["headers"]["x-device-id"] = DEVICE
    assert _decide(authorizer, event).auth_error == ""


def test_the_correlation_id_is_the_request_id_when_the_client_sends_none_or_a_bad_one(
    authorizer: Authorizer, keys: SigningKeySet
) -> None:
    token = f"Bearer {_token(keys)}"
    for given in (None, "has spaces in it", "x" * 129):
        event = _event(Authorization=token, X_Correlation_Id=given)
        decision = _decide(authorizer, event)
        assert decision.context["correlation_id"] == event["requestContext"]["requestId"], given


# ---- 401: not authenticated ---------------------------------------------------------------------------


def _forged_tokens(keys: SigningKeySet) -> dict[str, str]:
    genuine = _token(keys)
    header, payload, signature = genuine.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    kid = keys.active_kid
    other = SigningKeySet.from_secret(generate_signing_key_document(kid=kid))
    tampered = _b64({**claims, "role": "admin"})
    return {
        "garbage": "not-a-jwt",
        "three garbage parts": "aaa.bbb.ccc",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{payload}.",
        "alg HS256": f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{payload}.{signature}",
        "tampered claims": f"{header}.{tampered}.{signature}",
        "signed by another key with the same kid": _token(other),
        "unknown kid": _token(SigningKeySet.from_secret(generate_signing_key_document(kid="k-unknown"))),
        "expired": _token(keys, now=NOW - 3600),
        "wrong audience": _token(keys, audience="someone-else"),
        "wrong issuer": _token(keys, issuer="https://evil.example"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "garbage",
        "three garbage parts",
        "alg none",
        "alg HS256",
        "tampered claims",
        "signed by another key with the same kid",
        "unknown kid",
        "expired",
        "wrong audience",
        "wrong issuer",
    ],
)
def test_a_token_that_is_not_a_valid_current_token_of_ours_is_unauthorized(
    authorizer: Authorizer, keys: SigningKeySet, case: str
) -> None:
    event = _event(Authorization=f"Bearer {_forged_tokens(keys)[case]}")
    with pytest.raises(Unauthorized):
        _decide(authorizer, event)


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc.def.ghi"]
)
def test_a_missing_or_non_bearer_authorization_header_is_unauthorized(
    authorizer: Authorizer, authorization: str | None
) -> None:
    with pytest.raises(Unauthorized):
        _decide(authorizer, _event(Authorization=authorization))


def test_two_authorization_headers_are_unauthorized(authorizer: Authorizer, keys: SigningKeySet) -> None:
    token = f"Bearer {_token(keys)}"
    event = _event(Authorization=token)
    event["multiValueHeaders"]["Authorization"] = [token, "Bearer other"]
    with pytest.raises(Unauthorized):
        _decide(authorizer, event)


def test_the_unauthorized_message_never_contains_the_token(
    authorizer: Authorizer, keys: SigningKeySet
) -> None:
    token = _token(keys, now=NOW - 3600)
    with pytest.raises(Unauthorized) as caught:
        _decide(authorizer, _event(Authorization=f"Bearer {token}"))
    assert token not in str(caught.value)
    assert caught.value.code == "token_expired"


# ---- 403: authenticated, wrong role -------------------------------------------------------------------


@pytest.mark.parametrize(
    "resource",
    ["/v1/admin/deposits", "/v1/admin/audit", "/v1/admin/fraud/reviews/{transfer_id}", "/v1/admin"],
)
def test_a_customer_on_an_admin_route_gets_a_deny_with_code_forbidden(
    authorizer: Authorizer, keys: SigningKeySet, resource: str
) -> None:
    event = _event("authorizer_admin_deposit.json", Authorization=f"Bearer {_token(keys)}")
    event["resource"] = event["requestContext"]["resourcePath"] = resource
    decision = _decide(authorizer, event)
    response = decision.response()
    assert not decision.allow
    # The policy is the customer's whole-role policy (a cached decision serves the next route too): this
    # admin route is denied, a customer route is not.
    assert not _invoke_allowed(response["policyDocument"], event["methodArn"])
    assert _invoke_allowed(response["policyDocument"], _arn(event, "GET", "/v1/me"))
    assert response["context"]["code"] == "forbidden"
    assert "auth_error" not in response["context"]


def test_the_role_rule_reads_the_matched_route_not_a_look_alike_prefix() -> None:
    assert not role_may_call("customer", "/v1/admin/audit")
    assert role_may_call("customer", "/v1/administrators-guide")
    assert role_may_call("customer", "/v1/accounts/{account_id}")
    assert role_may_call("admin", "/v1/admin/audit")
    assert role_may_call("admin", "/v1/me")


# ---- what a decision cached by the token may hold ------------------------------------------------------


@pytest.mark.parametrize("device_id", [DEVICE, "attacker-phone", None, "", "x" * 129])
def test_the_decision_is_the_same_whatever_device_the_request_names(
    authorizer: Authorizer, keys: SigningKeySet, device_id: str | None
) -> None:
    # Given the token of DEVICE, on a request from that device, another one or none
    token = f"Bearer {_token(keys)}"
    baseline = _decide(authorizer, _event(Authorization=token)).response()
    # When the authorizer decides
    decision = _decide(authorizer, _event(Authorization=token, X_Device_Id=device_id))
    # Then the decision is about the token only (API Gateway caches it by the token and serves it to the
    # token's later requests): an Allow naming the token's device, which each function compares with the
    # request's own X-Device-Id (vaultpay.shared.caller_checks)
    assert (decision.allow, decision.auth_error) == (True, "")
    assert decision.context["device_id"] == DEVICE
    assert decision.response()["policyDocument"] == baseline["policyDocument"]


# ---- what API Gateway accepts -------------------------------------------------------------------------


def test_every_context_value_is_a_scalar_and_every_code_is_safe_in_the_gateway_template(
    authorizer: Authorizer, keys: SigningKeySet
) -> None:
    events = [
        _event(Authorization=f"Bearer {_token(keys)}"),
        _event("authorizer_admin_deposit.json", Authorization=f"Bearer {_token(keys)}"),
    ]
    for event in events:
        context = _decide(authorizer, event).response()["context"]
        # API Gateway refuses objects, arrays and nulls as context values
        assert all(isinstance(value, str | int | bool) for value in context.values()), context
        # The ACCESS_DENIED template puts `code` into JSON unescaped
        for key in ("code", "auth_error"):
            if key in context:
                assert re.fullmatch(r"[a-z_]*", str(context[key])), context


# ---- sessions that have ended ---------------------------------------------------------------------------


class EndedSessions:
    def __init__(self, *ended: str, users_ended_at: dict[str, int] | None = None) -> None:
        self.ended = set(ended)
        self.users_ended_at = users_ended_at or {}
        self.asked: list[str | None] = []

    def revoked(self, *, user_id: str, session_id: str | None, issued_at: int) -> bool:
        self.asked.append(session_id)
        ended_at = self.users_ended_at.get(user_id)
        return session_id in self.ended or (ended_at is not None and issued_at <= ended_at)


def _with_sessions(keys: SigningKeySet, sessions: EndedSessions) -> Authorizer:
    return Authorizer(
        keys=StaticKeys(keys), issuer=ISSUER, audience=AUDIENCE, sessions=sessions, clock=lambda: NOW
    )


def test_a_token_of_an_ended_session_is_token_revoked_before_anything_else(keys: SigningKeySet) -> None:
    authorizer = _with_sessions(keys, EndedSessions("fam_ended"))
    ended = _token(keys, session_id="fam_ended")
    # Even on a route its role may not call, from another device: the session's end is what it is told
    for event in (
        _event(Authorization=f"Bearer {ended}"),
        _event("authorizer_admin_deposit.json", Authorization=f"Bearer {ended}"),
        _event(Authorization=f"Bearer {ended}", X_Device_Id="other-device"),
    ):
        decision = _decide(authorizer, event)
        assert (decision.allow, decision.auth_error) == (True, "token_revoked")


def test_a_token_of_a_live_session_passes_and_a_token_without_one_is_not_looked_up(
    keys: SigningKeySet,
) -> None:
    sessions = EndedSessions("fam_ended")
    authorizer = _with_sessions(keys, sessions)
    live = _decide(authorizer, _event(Authorization=f"Bearer {_token(keys, session_id='fam_live')}"))
    assert (live.allow, live.auth_error) == (True, "")
    older = _decide(authorizer, _event(Authorization=f"Bearer {_token(keys)}"))  # issued before sessions
    assert (older.allow, older.auth_error) == (True, "")
    assert sessions.asked == ["fam_live", None]  # a token without a session is still checked for its user


def test_a_token_issued_before_its_user_was_disabled_is_token_revoked(keys: SigningKeySet) -> None:
    authorizer = _with_sessions(keys, EndedSessions(users_ended_at={USER: int(NOW - 30)}))
    before = _decide(authorizer, _event(Authorization=f"Bearer {_token(keys, session_id='fam_1')}"))
    assert before.auth_error == "token_revoked"  # issued at NOW - 60
    after = _decide(
        authorizer, _event(Authorization=f"Bearer {_token(keys, session_id='fam_2', now=NOW - 10)}")
    )
    assert after.auth_error == ""


def test_the_resolver_answers_token_revoked_as_a_401() -> None:
    from vaultpay.shared.http import authorizer_refusal

    refusal = authorizer_refusal({"requestContext": {"authorizer": {"auth_error": "token_revoked"}}})
    assert refusal is not None
    assert (refusal.status, refusal.code) == (401, "token_revoked")

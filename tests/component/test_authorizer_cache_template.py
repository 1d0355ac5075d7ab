"""The template's authorizer cache: keyed on the token, a TTL that keeps revocation within 60 s, and the
checks a cached decision cannot make (the per-user count, a device mismatch's event) granted to exactly the
functions behind the authorizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from localcloud.template import load_template, translate

pytestmark = pytest.mark.component
ROOT = Path(__file__).resolve().parents[2]
REVOCATION_BOUND_S = 60  # the hardening issue: an ended session's tokens stop working within a minute


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


@pytest.fixture(scope="module")
def cfn(sam: dict[str, Any]) -> dict[str, Any]:
    return dict(translate(sam, ROOT, {}).template)


def _authorizer(cfn: dict[str, Any]) -> dict[str, Any]:
    body = cfn["Resources"]["VaultPayApi"]["Properties"]["Body"]
    (definition,) = body["securityDefinitions"].values()
    return dict(definition["x-amazon-apigateway-authorizer"])


def test_the_decision_is_cached_by_the_token_alone(cfn: dict[str, Any]) -> None:
    # Not by the device too: a request without X-Device-Id would then be API Gateway's 401 `unauthorized`
    # (an identity source missing), where the contract says 400 `device_id_required`. The function checks
    # the device on every request (vaultpay.shared.caller_checks).
    sources = [s.strip() for s in _authorizer(cfn)["identitySource"].split(",")]
    assert sources == ["method.request.header.Authorization"]


def test_the_cache_and_the_session_check_together_end_a_session_within_a_minute(
    sam: dict[str, Any], cfn: dict[str, Any]
) -> None:
    # The TTL is the SessionCheckSeconds parameter, which the authorizer's own session cache also uses: a
    # decision cached just before the session ends may have been made on a session answer that old.
    parameter = sam["Parameters"]["SessionCheckSeconds"]
    assert int(_authorizer(cfn)["authorizerResultTtlInSeconds"]) == int(parameter["Default"])
    assert 2 * int(parameter["MaxValue"]) <= REVOCATION_BOUND_S
    authorizer_env = sam["Resources"]["AuthorizerFunction"]["Properties"]["Environment"]["Variables"]
    assert authorizer_env["SESSION_CHECK_TTL_S"] == {"Ref": "SessionCheckSeconds"}


def _functions_behind_the_authorizer(cfn: dict[str, Any]) -> set[str]:
    body = cfn["Resources"]["VaultPayApi"]["Properties"]["Body"]
    (authorizer,) = body["securityDefinitions"]
    functions = set()
    for operations in body["paths"].values():
        for operation in operations.values():
            if isinstance(operation, dict) and operation.get("security") == [{authorizer: []}]:
                uri = json.dumps(operation["x-amazon-apigateway-integration"]["uri"])
                # ${<Function>.Arn}, or ${<Function>Aliaslive} once the function deploys gradually
                target = uri.split("${", 2)[-1].split("}", 1)[0]
                functions.add(target.removesuffix(".Arn").removesuffix("Aliaslive"))
    return functions


def test_exactly_the_functions_behind_the_authorizer_may_count_calls_and_report_mismatches(
    cfn: dict[str, Any],
) -> None:
    policy = cfn["Resources"]["ApiCallerChecksPolicy"]["Properties"]
    roles = {ref["Ref"].removesuffix("Role") for ref in policy["Roles"]}
    assert roles == _functions_behind_the_authorizer(cfn)
    count, report = policy["PolicyDocument"]["Statement"]
    assert (count["Effect"], count["Action"]) == ("Allow", "dynamodb:UpdateItem")
    assert count["Resource"] == {"Fn::GetAtt": ["ApiCallsTable", "Arn"]}
    assert count["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["RL#api#*"]}}
    # Outbox items of the auth table only: no user, session or token item, nothing read
    assert (report["Effect"], report["Action"]) == ("Allow", "dynamodb:PutItem")
    assert report["Resource"] == {"Fn::GetAtt": ["AuthTable", "Arn"]}
    assert report["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["OUTBOX#*"]}}


def test_the_authorizer_writes_nothing(sam: dict[str, Any]) -> None:
    # It decides about the token only: no counter, no event (the functions write those)
    statements = sam["Resources"]["AuthorizerFunction"]["Properties"]["Policies"][0]["Statement"]
    actions = {statement["Action"] for statement in statements}
    assert actions == {"kms:GetPublicKey", "dynamodb:BatchGetItem"}

"""template.yaml: it lints clean, every function gets both layers, and IAM stays least-privilege."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.component
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# The only statements allowed a "*" resource: List calls that IAM cannot scope, documented in the template.
WILDCARD_RESOURCE_ACTIONS = {"HealthFunction": {"dynamodb:ListTables", "states:ListStateMachines"}}
# What SAM itself attaches: CloudWatch Logs for every function, X-Ray because Tracing is Active.
ALLOWED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    # No telemetry: CI reaches package registries only, and a blocked upload would only slow the run.
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    return dict(yaml_parse((ROOT / "template.yaml").read_text()))


@pytest.fixture(scope="module")
def cfn(sam: dict[str, Any]) -> dict[str, Any]:
    """The template after the SAM transform, as CloudFormation (and the local cloud) sees it."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    source = json.loads(json.dumps(sam))
    key = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}
    for logical_id, resource in source["Resources"].items():
        if resource["Type"] in key:
            # The transform wants S3 code locations; sam build/package puts them there later.
            resource["Properties"][key[resource["Type"]]] = f"s3://placeholder/{logical_id}"
    translator = Translator(
        managed_policy_map=None,
        sam_parser=Parser(),
        boto_session=boto3.session.Session(region_name="us-east-1"),
    )
    result: dict[str, Any] = translator.translate(
        source, parameter_values={"AWS::Region": "us-east-1"}, get_managed_policy_map=lambda: {}
    )
    return result


def _of_type(template: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == rtype}


def test_cfn_lint_reports_nothing() -> None:
    result = _run(str(BIN / "cfn-lint"), "template.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout


def test_sam_validate_with_lint_passes() -> None:
    result = _run(str(BIN / "sam"), "validate", "--lint", "--region", "us-east-1")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "is a valid SAM Template" in output
    assert not re.search(r"^[WE]\d{4}", output, re.MULTILINE), output


def test_every_function_uses_the_core_and_the_deps_layer(cfn: dict[str, Any]) -> None:
    layers = _of_type(cfn, "AWS::Lambda::LayerVersion")
    core = {k for k in layers if k.startswith("CoreLayer")}
    deps = {k for k in layers if k.startswith("DepsLayer")}
    assert len(core) == len(deps) == 1
    functions = _of_type(cfn, "AWS::Lambda::Function")
    assert functions
    for name, function in functions.items():
        refs = [layer["Ref"] for layer in function["Properties"].get("Layers", [])]
        assert set(refs) == core | deps, name


def test_every_function_runs_python313_on_arm64_with_active_tracing(cfn: dict[str, Any]) -> None:
    for name, function in _of_type(cfn, "AWS::Lambda::Function").items():
        props = function["Properties"]
        assert props["Runtime"] == "python3.13", name
        assert props["Architectures"] == ["arm64"], name
        assert props["TracingConfig"] == {"Mode": "Active"}, name
        env = props["Environment"]["Variables"]
        for variable in ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "STAGE", "NATS_URL"):
            assert variable in env, (name, variable)


def _roles_by_function(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    roles = _of_type(cfn, "AWS::IAM::Role")
    out = {}
    for name, function in _of_type(cfn, "AWS::Lambda::Function").items():
        role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
        out[name] = roles[role_id]["Properties"]
    return out


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_function_is_granted_a_wildcard_beyond_the_documented_health_probes(cfn: dict[str, Any]) -> None:
    for function, role in _roles_by_function(cfn).items():
        assert set(role.get("ManagedPolicyArns", [])) <= ALLOWED_MANAGED_POLICIES, function
        for policy in role.get("Policies", []):
            # Without it IAM reads the 2008 policy language (no policy variables); moto refuses it outright.
            assert policy["PolicyDocument"].get("Version") == "2012-10-17", (function, policy["PolicyName"])
            for statement in _as_list(policy["PolicyDocument"]["Statement"]):
                actions = [str(a) for a in _as_list(statement.get("Action", []))]
                assert "NotAction" not in statement and "NotResource" not in statement, (function, statement)
                assert not any("*" in action for action in actions), (function, statement)
                if statement.get("Effect") == "Allow" and "*" in _as_list(statement.get("Resource", [])):
                    allowed = WILDCARD_RESOURCE_ACTIONS.get(function, set())
                    assert set(actions) <= allowed, (function, statement)


def test_the_health_function_may_only_list_tables_and_state_machines(cfn: dict[str, Any]) -> None:
    role = _roles_by_function(cfn)["HealthFunction"]
    actions = {
        str(action)
        for policy in role["Policies"]
        for statement in _as_list(policy["PolicyDocument"]["Statement"])
        for action in _as_list(statement["Action"])
    }
    assert actions == {"dynamodb:ListTables", "states:ListStateMachines"}


def test_get_v1_health_reaches_the_health_function_without_auth(cfn: dict[str, Any]) -> None:
    body = cfn["Resources"]["VaultPayApi"]["Properties"]["Body"]
    operation = body["paths"]["/v1/health"]["get"]
    assert "HealthFunction.Arn" in json.dumps(operation["x-amazon-apigateway-integration"]["uri"])
    assert not operation.get("security")


def test_the_api_has_one_stage_named_after_the_stage_parameter(cfn: dict[str, Any]) -> None:
    stages = _of_type(cfn, "AWS::ApiGateway::Stage")
    assert len(stages) == 1
    (stage,) = stages.values()
    assert stage["Properties"]["StageName"] == {"Ref": "Stage"}
    (setting,) = stage["Properties"]["MethodSettings"]
    assert (setting["ResourcePath"], setting["HttpMethod"]) == ("/*", "*")
    assert "Fn::FindInMap" in setting["ThrottlingRateLimit"]
    assert "Fn::FindInMap" in setting["ThrottlingBurstLimit"]


def test_every_stage_has_throttling_limits(sam: dict[str, Any]) -> None:
    stages = sam["Parameters"]["Stage"]["AllowedValues"]
    limits = sam["Mappings"]["StageConfig"]
    for stage in stages:
        assert limits[stage]["ThrottlingBurstLimit"] >= limits[stage]["ThrottlingRateLimit"] > 0, stage


def test_gateway_responses_are_problem_json(cfn: dict[str, Any]) -> None:
    body = cfn["Resources"]["VaultPayApi"]["Properties"]["Body"]
    responses = body["x-amazon-apigateway-gateway-responses"]
    assert {"UNAUTHORIZED", "ACCESS_DENIED", "DEFAULT_4XX", "DEFAULT_5XX"} <= set(responses)
    for response_type, response in responses.items():
        headers = response["responseParameters"]
        assert headers["gatewayresponse.header.Content-Type"] == "'application/problem+json'", response_type
        assert headers["gatewayresponse.header.X-Correlation-Id"] == "context.requestId", response_type
        template = response["responseTemplates"]["application/json"]
        # Render the two variables the templates use the way API Gateway does, then it must be JSON.
        rendered = template.replace("$context.error.messageString", '"Unauthorized"').replace(
            "$context.requestId", "req-1"
        )
        problem = json.loads(rendered)
        assert problem["type"] == "https://vaultpay.dev/problems/" + problem["code"], response_type
        assert problem["correlation_id"] == "req-1", response_type
        if "statusCode" in response:
            assert problem["status"] == int(response["statusCode"]), response_type


def test_the_template_uses_only_intrinsics_the_local_cloud_resolves(sam: dict[str, Any]) -> None:
    allowed = {"Ref", "Fn::GetAtt", "Fn::Sub", "Fn::If", "Fn::Join", "Fn::Select", "Fn::FindInMap"}
    used: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            used.update(k for k in node if k == "Ref" or k.startswith("Fn::"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(sam)
    assert used <= allowed, sorted(used - allowed)

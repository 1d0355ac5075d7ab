"""template.yaml: it lints clean, every function gets both layers, and IAM stays least-privilege."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.component
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# The only statements allowed a "*" resource: List calls that IAM cannot scope, documented in the template.
WILDCARD_RESOURCE_ACTIONS = {"HealthFunction": {"dynamodb:ListTables", "states:ListStateMachines"}}
# What SAM itself attaches: CloudWatch Logs for every function (which FunctionPermissionsBoundary narrows to
# the function's own log group), X-Ray because Tracing is Active.
ALLOWED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    # For the functions that may run in a VPC (VpcSubnetIds): their network interfaces.
    "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
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
    key = {
        "AWS::Serverless::Function": "CodeUri",
        "AWS::Serverless::LayerVersion": "ContentUri",
        "AWS::Serverless::StateMachine": "DefinitionUri",
    }
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
    assert actions == {"dynamodb:ListTables", "states:ListStateMachines", "secretsmanager:GetSecretValue"}
    assert _grants(role)["NatsHealthCredentials"] == {"secretsmanager:GetSecretValue"}


def test_get_v1_health_reaches_the_health_function_without_auth(cfn: dict[str, Any]) -> None:
    body = cfn["Resources"]["VaultPayApi"]["Properties"]["Body"]
    operation = body["paths"]["/v1/health"]["get"]
    # Through its `live` alias, which CodeDeploy moves on a deploy (tests/component/test_template_deploy.py).
    assert "${HealthFunctionAliaslive}" in json.dumps(operation["x-amazon-apigateway-integration"]["uri"])
    # With a default authorizer, SAM marks a public route with the pseudo-scheme NONE.
    assert operation.get("security") in (None, [], [{"NONE": []}])


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
        # A Deny's code comes from the authorizer's context; rendered with it and without it (a quiet
        # reference renders empty), the body must be JSON either way.
        for authorizer_code in ("forbidden", ""):
            problem = json.loads(rendered.replace("$!context.authorizer.code", authorizer_code))
            assert problem["type"] == "https://vaultpay.dev/problems/" + problem["code"], response_type
            assert problem["correlation_id"] == "req-1", response_type
            if "statusCode" in response:
                assert problem["status"] == int(response["statusCode"]), response_type


def test_the_template_uses_only_intrinsics_the_local_cloud_resolves(sam: dict[str, Any]) -> None:
    allowed = {
        "Ref",
        "Fn::GetAtt",
        "Fn::Sub",
        "Fn::If",
        "Fn::Join",
        "Fn::Select",
        "Fn::FindInMap",
        "Fn::Split",
    }
    allowed |= {"Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"}  # in Conditions (localcloud.template.Resolver)
    used: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            used.update(k for k in node if k == "Ref" or k.startswith("Fn::"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    # Rules are CloudFormation's check of the parameters before a deploy; the local cloud has none to make.
    walk({k: v for k, v in sam.items() if k != "Rules"})
    assert used <= allowed, sorted(used - allowed)


# ---- identity (docs/identity-contract.md): least privilege, the authorizer, the public routes ---------

# Every grant of every identity function: (resource logical id -> actions). Anything wider fails here, so
# widening a role is a reviewed change of this table, never a side effect.
IDENTITY_GRANTS: dict[str, dict[str, set[str]]] = {
    "RegisterFunction": {
        "AuthTable": {"dynamodb:GetItem", "dynamodb:PutItem"},
        "AuthRateLimitTable": {"dynamodb:UpdateItem"},
        "PiiKey": {"kms:GenerateDataKey"},
        "BlindIndexKeySecret": {"secretsmanager:GetSecretValue"},
    },
    "LoginFunction": {
        "AuthTable": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
        "AuthRateLimitTable": {"dynamodb:UpdateItem"},
        "BlindIndexKeySecret": {"secretsmanager:GetSecretValue"},
    },
    "MfaVerifyFunction": {
        "AuthTable": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
        "AuthRateLimitTable": {"dynamodb:UpdateItem"},
        "PiiKey": {"kms:Decrypt"},
        "TokenSigningKey": {"kms:Sign"},
    },
    "RefreshFunction": {
        "AuthTable": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
        "AuthRateLimitTable": {"dynamodb:UpdateItem"},
        "TokenSigningKey": {"kms:Sign"},
    },
    "LogoutFunction": {"AuthTable": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}},
    "MeFunction": {"AuthTable": {"dynamodb:GetItem"}, "PiiKey": {"kms:Decrypt"}},
    "DevicesFunction": {"AuthTable": {"dynamodb:Query"}},
    "JwksFunction": {"TokenSigningKey": {"kms:GetPublicKey"}},
    "AdminUsersFunction": {"AuthTable": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}},
    # It decides about the token only; the count and a device mismatch's event are the functions' own
    # (ApiCallerChecksPolicy, test_authorizer_cache_template.py).
    "AuthorizerFunction": {
        "AuthTable": {"dynamodb:BatchGetItem"},
        "TokenSigningKey": {"kms:GetPublicKey"},
    },
    "CreateAdminFunction": {
        "AuthTable": {"dynamodb:GetItem", "dynamodb:PutItem"},
        "PiiKey": {"kms:GenerateDataKey"},
        "BlindIndexKeySecret": {"secretsmanager:GetSecretValue"},
    },
}
IDENTITY_RESOURCES = {"AuthTable", "AuthRateLimitTable", "PiiKey", "BlindIndexKeySecret", "TokenSigningKey"}
# The signing key as every function is told of it: the stack's key unless the TokenSigningKeyArn parameter
# names another (a rotation).
TOKEN_SIGNER = {
    "Fn::If": [
        "UseStackSigningKey",
        {"Fn::GetAtt": ["TokenSigningKey", "Arn"]},
        {"Ref": "TokenSigningKeyArn"},
    ]
}
PUBLIC_ROUTES = {
    ("GET", "/v1/health"),
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/mfa/verify"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
}
# The contract's variables and the resource (or value) each must name.
IDENTITY_ENVIRONMENT = {
    "AUTH_TABLE": {"Ref": "AuthTable"},
    "RATE_LIMIT_TABLE": {"Ref": "AuthRateLimitTable"},
    "PII_KEY_ID": {"Fn::GetAtt": ["PiiKey", "Arn"]},
    "BLIND_INDEX_SECRET_ARN": {"Ref": "BlindIndexKeySecret"},
    "TOKEN_SIGNING_KEY_ID": TOKEN_SIGNER,
    "TOKEN_VERIFY_KEY_IDS": {"Ref": "TokenVerifyOnlyKeyArns"},
    "TOKEN_ISSUER": {"Fn::Sub": "https://auth.vaultpay.dev/${Stage}"},
    "TOKEN_AUDIENCE": "vaultpay-api",
}
# Secrets Manager calls that change a secret: no function may make one.
SECRET_WRITES = {
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecret",
    "secretsmanager:CreateSecret",
    "secretsmanager:DeleteSecret",
    "secretsmanager:RotateSecret",
    "secretsmanager:RestoreSecret",
    "secretsmanager:UpdateSecretVersionStage",
    "secretsmanager:PutResourcePolicy",
}


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        statement
        for policy in role.get("Policies", [])
        for statement in _as_list(policy["PolicyDocument"]["Statement"])
    ]


# The template's conditions as they are with the parameters' defaults (no rotation in progress).
DEFAULT_CONDITIONS = {"UseStackSigningKey": True, "HasVerifyOnlyKeys": False}


def _default_branch(value: Any) -> Any:
    """`value` with every Fn::If replaced by its branch under DEFAULT_CONDITIONS."""
    if isinstance(value, dict) and "Fn::If" in value:
        condition, then, otherwise = value["Fn::If"]
        return _default_branch(then if DEFAULT_CONDITIONS[condition] else otherwise)
    return value


def _resource_id(resource: Any) -> str:
    """The logical id a policy Resource names (!Ref X or !GetAtt X.Arn); anything else as text."""
    resource = _default_branch(resource)
    if isinstance(resource, dict) and "Ref" in resource:
        return str(resource["Ref"])
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        logical_id, attribute = resource["Fn::GetAtt"]
        assert attribute == "Arn", resource
        return str(logical_id)
    return json.dumps(resource)


def _grants(role: dict[str, Any]) -> dict[str, set[str]]:
    grants: dict[str, set[str]] = {}
    for statement in _statements(role):
        assert statement["Effect"] == "Allow", statement
        for resource in _as_list(_default_branch(statement["Resource"])):
            grants.setdefault(_resource_id(resource), set()).update(map(str, _as_list(statement["Action"])))
    return grants


def _assert_built_from_its_folder(sam: dict[str, Any], logical_id: str, folder: str) -> None:
    """The function's code is `folder` (functions/<domain>/<name>): app.handler, built by its Makefile."""
    resource = sam["Resources"][logical_id]
    assert resource["Type"] == "AWS::Serverless::Function", logical_id
    assert resource["Metadata"] == {"BuildMethod": "makefile"}, logical_id
    assert resource["Properties"]["CodeUri"] == f"{folder}/", logical_id
    assert resource["Properties"]["Handler"] == "app.handler", logical_id
    assert f"build-{logical_id}:" in (ROOT / folder / "Makefile").read_text(), logical_id
    assert (ROOT / folder / "app.py").is_file(), logical_id


def _assert_granted_exactly(cfn: dict[str, Any], grants: dict[str, dict[str, set[str]]]) -> None:
    roles = _roles_by_function(cfn)
    for function, expected in grants.items():
        assert _grants(roles[function]) == expected, function


def _outbox_paths(table: str) -> dict[str, dict[str, set[str]]]:
    """What the relay and the sweeper hold on `table` beyond its outbox items: its stream and its index."""
    return {
        "RelayFunction": {
            json.dumps({"Fn::Sub": f"${{{table}.Arn}}/stream/*"}): {
                "dynamodb:DescribeStream",
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
                "dynamodb:ListStreams",
            }
        },
        "OutboxSweeperFunction": {
            json.dumps({"Fn::Sub": f"${{{table}.Arn}}/index/OutboxPending"}): {"dynamodb:Query"},
            # The rescue reads given-up batches back from the stream.
            json.dumps({"Fn::Sub": f"${{{table}.Arn}}/stream/*"}): {
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
            },
        },
    }


def _names_one_of(resources: set[str], resource_key: str) -> bool:
    """Whether a `_grants` key is one of `resources`, its index or its stream (!Sub "${X.Arn}/...")."""
    return resource_key in resources or any(f"${{{r}." in resource_key for r in resources)


def test_every_identity_function_exists_with_its_contract_code_location(sam: dict[str, Any]) -> None:
    directories = {
        "RegisterFunction": "register",
        "LoginFunction": "login",
        "MfaVerifyFunction": "mfa_verify",
        "RefreshFunction": "refresh",
        "LogoutFunction": "logout",
        "MeFunction": "me",
        "DevicesFunction": "devices",
        "JwksFunction": "jwks",
        "AuthorizerFunction": "authorizer",
        "AdminUsersFunction": "admin_users",
        "CreateAdminFunction": "create_admin",
    }
    assert set(directories) == set(IDENTITY_GRANTS)
    for logical_id, directory in directories.items():
        _assert_built_from_its_folder(sam, logical_id, f"functions/auth/{directory}")


def test_each_identity_function_is_granted_exactly_its_own_resources_and_actions(cfn: dict[str, Any]) -> None:
    _assert_granted_exactly(cfn, IDENTITY_GRANTS)


# The event path's grants on the domain tables: outbox items only (the LeadingKeys condition below).
EVENTS_GRANTS: dict[str, dict[str, set[str]]] = {
    # The relay writes nothing back: what it could not publish, the sweeper's rescue finds.
    "RelayFunction": {"NatsRelayCredentials": {"secretsmanager:GetSecretValue"}},
    "OutboxSweeperFunction": {
        **{
            table: {"dynamodb:BatchWriteItem", "dynamodb:UpdateItem"}
            for table in ("AuthTable", "AccountsTable", "TransfersTable", "FraudTable")
        },
        "NatsRelayCredentials": {"secretsmanager:GetSecretValue"},
    },
}
OUTBOX_TABLES = ("AuthTable", "AccountsTable", "TransfersTable", "FraudTable")


def test_no_other_function_touches_an_identity_resource(cfn: dict[str, Any]) -> None:
    for function, role in _roles_by_function(cfn).items():
        if function in EVENTS_GRANTS:
            identity = {k: v for k, v in _grants(role).items() if k in IDENTITY_RESOURCES}
            expected = {k: v for k, v in EVENTS_GRANTS[function].items() if k in IDENTITY_RESOURCES}
            assert identity == expected, function
        elif function not in IDENTITY_GRANTS:
            assert not set(_grants(role)) & IDENTITY_RESOURCES, function


def test_the_relay_writes_nothing_and_the_sweeper_only_outbox_items(cfn: dict[str, Any]) -> None:
    roles = _roles_by_function(cfn)
    relay_tables = {k for k in _grants(roles["RelayFunction"]) if k in OUTBOX_TABLES}
    assert relay_tables == set()
    writes = [
        s
        for s in _statements(roles["OutboxSweeperFunction"])
        if {"dynamodb:BatchWriteItem", "dynamodb:UpdateItem"} & set(_as_list(s["Action"]))
    ]
    assert len(writes) == 2
    for statement in writes:
        assert statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] == ["OUTBOX#*"]
    sweeper = _grants(roles["OutboxSweeperFunction"])
    assert sweeper == {
        "NatsRelayCredentials": {"secretsmanager:GetSecretValue"},
        "RelayDeadLetterQueue": {"sqs:ReceiveMessage", "sqs:DeleteMessage"},
        **{table: {"dynamodb:BatchWriteItem", "dynamodb:UpdateItem"} for table in OUTBOX_TABLES},
        **{
            json.dumps({"Fn::Sub": f"${{{table}.Arn}}/index/OutboxPending"}): {"dynamodb:Query"}
            for table in OUTBOX_TABLES
        },
        **{
            json.dumps({"Fn::Sub": f"${{{table}.Arn}}/stream/*"}): {
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
            }
            for table in OUTBOX_TABLES
        },
    }


def test_a_given_up_batch_is_still_in_its_stream_when_the_rescue_reads_it(sam: dict[str, Any]) -> None:
    """DynamoDB Streams keep a record 24 hours: a mapping must give up well before, or the rescue
    (vaultpay.events.rescue) would find the batch gone."""
    for resource in sam["Resources"].values():
        if resource["Type"] == "AWS::Lambda::EventSourceMapping":
            props = resource["Properties"]
            assert props["MaximumRecordAgeInSeconds"] <= 6 * 3600
            assert props["DestinationConfig"]["OnFailure"]["Destination"] == {
                "Fn::GetAtt": ["RelayDeadLetterQueue", "Arn"]
            }
    sweeper = sam["Resources"]["OutboxSweeperFunction"]["Properties"]["Environment"]["Variables"]
    assert sweeper["RELAY_FAILURES_QUEUE_URL"] == {"Ref": "RelayDeadLetterQueue"}


def test_the_relay_reads_exactly_the_domain_tables_streams(cfn: dict[str, Any]) -> None:
    role = _roles_by_function(cfn)["RelayFunction"]
    (reads,) = [s for s in _statements(role) if "dynamodb:GetRecords" in _as_list(s["Action"])]
    assert sorted(map(json.dumps, _as_list(reads["Resource"]))) == sorted(
        json.dumps({"Fn::Sub": f"${{{table}.Arn}}/stream/*"}) for table in OUTBOX_TABLES
    )


def test_every_domain_tables_stream_feeds_the_relay_through_the_outbox_filter(sam: dict[str, Any]) -> None:
    from vaultpay.shared.outbox import STREAM_FILTER_PATTERN

    mappings = {
        props["EventSourceArn"]["Fn::GetAtt"][0]: props
        for resource in sam["Resources"].values()
        if resource["Type"] == "AWS::Lambda::EventSourceMapping"
        for props in [resource["Properties"]]
    }
    assert set(mappings) == set(OUTBOX_TABLES)
    auth = mappings["AuthTable"]
    for table, props in mappings.items():
        assert props["EventSourceArn"] == {"Fn::GetAtt": [table, "StreamArn"]}, table
        assert props["FunctionName"] == {"Ref": "RelayFunction"}, table
        (pattern,) = props["FilterCriteria"]["Filters"]
        assert json.loads(pattern["Pattern"]) == STREAM_FILTER_PATTERN, table
        # The same retry, bisect and dead-letter behaviour as the auth table's mapping.
        assert {k: v for k, v in props.items() if k != "EventSourceArn"} == {
            k: v for k, v in auth.items() if k != "EventSourceArn"
        }, table
    assert sam["Resources"]["RelayAccountsOutboxMapping"]["Properties"]["EventSourceArn"] == {
        "Fn::GetAtt": ["AccountsTable", "StreamArn"]
    }


def test_the_sweeper_sweeps_every_domain_table(sam: dict[str, Any]) -> None:
    variables = sam["Resources"]["OutboxSweeperFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["OUTBOX_TABLES"] == {"Fn::Join": [",", [{"Ref": t} for t in OUTBOX_TABLES]]}


def test_no_statement_grants_a_whole_service_or_every_action(cfn: dict[str, Any]) -> None:
    # The audit rule: never Action "*", never "<service>:*" (dynamodb:*, kms:*, ...), never a NotAction.
    for function, role in _roles_by_function(cfn).items():
        for statement in _statements(role):
            actions = [str(a) for a in _as_list(statement.get("Action", []))]
            assert "NotAction" not in statement, (function, statement)
            assert "*" not in actions, (function, statement)
            assert not [a for a in actions if a.endswith(":*")], (function, statement)
            assert "dynamodb:*" not in actions, (function, statement)


def test_no_function_may_write_a_secret(cfn: dict[str, Any]) -> None:
    for function, role in _roles_by_function(cfn).items():
        writes = {
            (resource, action)
            for resource, actions in _grants(role).items()
            for action in actions
            if action in SECRET_WRITES
        }
        assert writes == set(), function


def test_the_authorizer_may_only_read_whether_a_session_has_ended(cfn: dict[str, Any]) -> None:
    role = _roles_by_function(cfn)["AuthorizerFunction"]
    leading_keys = {}
    for statement in _statements(role):
        if str(statement["Action"]).startswith("dynamodb:"):
            condition = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
            leading_keys[(_resource_id(statement["Resource"]), statement["Action"])] = condition
    # No write: the per-user count and a device mismatch's event are the functions' (ApiCallerChecksPolicy)
    assert leading_keys == {("AuthTable", "dynamodb:BatchGetItem"): ["FAMILY#*", "USER#*"]}
    # It reads whether a session has ended (a family's flag, a user's status), never a hash, a device or PII
    [read] = [s for s in _statements(role) if s["Action"] == "dynamodb:BatchGetItem"]
    attributes = read["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]
    assert attributes == ["pk", "revoked", "status", "sessions_ended_at"]
    assert read["Condition"]["StringEqualsIfExists"] == {"dynamodb:Select": "SPECIFIC_ATTRIBUTES"}


# The key context fieldcrypt binds each key's data keys to (vaultpay.bootstrap wires these).
KEY_CONTEXTS = {
    "PiiKey": {"app": "vaultpay", "purpose": "pii"},
    "AccountNumberKey": {"app": "vaultpay", "purpose": "account_number"},
    "WebhookSecretKey": {"app": "vaultpay", "purpose": "webhook_secret"},
}


# The TOTP secrets' data keys have a context of their own: sealed by the functions that enrol a user, and
# decrypted by the MFA function alone (which may also open the secrets sealed under the PII context before).
TOTP_PURPOSES = {
    ("RegisterFunction", "kms:GenerateDataKey"): ["pii", "totp_secret"],
    ("CreateAdminFunction", "kms:GenerateDataKey"): ["pii", "totp_secret"],
    ("MfaVerifyFunction", "kms:Decrypt"): ["totp_secret", "pii"],
}


def test_each_kms_key_is_usable_only_with_its_own_key_context(cfn: dict[str, Any]) -> None:
    from vaultpay.shared.fieldcrypt import DEFAULT_KEY_CONTEXT, TOTP_KEY_CONTEXT

    assert dict(DEFAULT_KEY_CONTEXT) == KEY_CONTEXTS["PiiKey"]
    assert dict(TOTP_KEY_CONTEXT) == {**KEY_CONTEXTS["PiiKey"], "purpose": "totp_secret"}
    seen = set()
    for function, role in _roles_by_function(cfn).items():
        for statement in _statements(role):
            if any(str(action).startswith("kms:") for action in _as_list(statement["Action"])):
                (key,) = {_resource_id(r) for r in _as_list(_default_branch(statement["Resource"]))}
                if key in ("TokenSigningKey", "AuditCheckpointKey"):
                    continue  # an asymmetric signing key: no data keys, no encryption context
                expected: dict[str, Any] = {
                    f"kms:EncryptionContext:{k}": v for k, v in KEY_CONTEXTS[key].items()
                }
                special = TOTP_PURPOSES.get((function, str(statement["Action"])))
                if special is not None:
                    expected["kms:EncryptionContext:purpose"] = special
                    seen.add((function, str(statement["Action"])))
                assert statement["Condition"] == {"StringEquals": expected}, function
    assert seen == set(TOTP_PURPOSES)  # and no other function may use the totp_secret context at all


def test_the_authorizer_is_the_apis_default_request_authorizer_cached_by_the_token(
    cfn: dict[str, Any],
) -> None:
    body = cfn["Resources"]["VaultPayApi"]["Properties"]["Body"]
    (name,) = body["securityDefinitions"]
    authorizer = body["securityDefinitions"][name]["x-amazon-apigateway-authorizer"]
    assert authorizer["type"] == "request"
    # The Authorization header alone: API Gateway answers 401 itself when it is missing; the function checks
    # the device (test_authorizer_cache_template.py checks the TTL).
    assert authorizer["identitySource"] == "method.request.header.Authorization"
    assert "AuthorizerFunction" in json.dumps(authorizer["authorizerUri"])


def test_the_public_routes_are_exactly_the_listed_ones_and_every_other_route_is_authorized(
    cfn: dict[str, Any],
) -> None:
    body = cfn["Resources"]["VaultPayApi"]["Properties"]["Body"]
    (authorizer,) = body["securityDefinitions"]
    public, protected = set(), set()
    for path, operations in body["paths"].items():
        for method, operation in operations.items():
            security = operation.get("security")
            route = (method.upper(), path)
            if security == [{"NONE": []}]:
                public.add(route)
            else:
                assert security == [{authorizer: []}], route
                protected.add(route)
    assert public == PUBLIC_ROUTES
    assert {("GET", "/v1/me"), ("GET", "/v1/auth/devices")} <= protected


def test_identity_functions_get_the_contracts_environment(sam: dict[str, Any]) -> None:
    for function in IDENTITY_GRANTS:
        variables = sam["Resources"][function]["Properties"]["Environment"]["Variables"]
        assert variables["POWERTOOLS_SERVICE_NAME"] == "auth", function
        for name, value in variables.items():
            if name in IDENTITY_ENVIRONMENT:
                assert value == IDENTITY_ENVIRONMENT[name], (function, name)
    authorizer = sam["Resources"]["AuthorizerFunction"]["Properties"]["Environment"]["Variables"]
    assert {
        "AUTH_TABLE",
        "TOKEN_SIGNING_KEY_ID",
        "TOKEN_ISSUER",
        "TOKEN_AUDIENCE",
    } <= set(authorizer)


def test_functions_with_their_own_composition_are_told_only_of_resources_they_may_use(
    cfn: dict[str, Any], sam: dict[str, Any]
) -> None:
    # The identity service's functions share vaultpay.bootstrap.auth.auth_service, which reads all seven
    # variables; these three compose their own adapters and get only the names they use.
    roles = _roles_by_function(cfn)
    parameters = set(sam["Parameters"])
    for function in ("AuthorizerFunction", "JwksFunction"):
        variables = sam["Resources"][function]["Properties"]["Environment"]["Variables"]
        granted = set(_grants(roles[function]))
        for name, value in variables.items():
            if name in IDENTITY_ENVIRONMENT and isinstance(value, dict) and "Fn::Sub" not in value:
                if value.get("Ref") in parameters:
                    continue  # a parameter's value (verify-only key ARNs), granted as TokenSigningKey's are
                assert _resource_id(value) in granted, (function, name)


def _keys(definition: dict[str, Any]) -> list[tuple[str, str]]:
    """A table's or an index's KeySchema as (attribute, HASH or RANGE) pairs."""
    return [(k["AttributeName"], k["KeyType"]) for k in definition["KeySchema"]]


def _indexes(props: dict[str, Any]) -> dict[str, tuple[list[tuple[str, str]], dict[str, Any]]]:
    """A table's global secondary indexes: name -> (keys, projection)."""
    indexes = props["GlobalSecondaryIndexes"]
    return {index["IndexName"]: (_keys(index), index["Projection"]) for index in indexes}


# What every domain table with an outbox sets exactly as the accounts table does.
TABLE_SETTINGS_AS_ACCOUNTS = (
    "TimeToLiveSpecification",
    "StreamSpecification",
    "PointInTimeRecoverySpecification",
    "SSESpecification",
    "BillingMode",
    "DeletionProtectionEnabled",
)


def test_the_identity_tables_match_the_contract(sam: dict[str, Any]) -> None:
    auth = sam["Resources"]["AuthTable"]
    props = auth["Properties"]
    assert _keys(props) == [("pk", "HASH"), ("sk", "RANGE")]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    # Users' data survives a stack deletion or a replacement
    assert auth["DeletionPolicy"] == auth["UpdateReplacePolicy"] == "Retain"
    limits = sam["Resources"]["AuthRateLimitTable"]["Properties"]
    assert _keys(limits) == [("pk", "HASH")]
    assert limits["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert "StreamSpecification" not in limits


def test_the_pii_key_rotates_and_outlives_the_stack(sam: dict[str, Any]) -> None:
    key = sam["Resources"]["PiiKey"]
    assert key["Properties"]["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == key["UpdateReplacePolicy"] == "Retain"
    # Nobody but the account (through IAM) is named in the key policy
    for statement in key["Properties"]["KeyPolicy"]["Statement"]:
        principal = statement["Principal"]["AWS"]
        assert principal == {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    alias = sam["Resources"]["PiiKeyAlias"]["Properties"]
    assert alias["TargetKeyId"] == {"Ref": "PiiKey"}


def test_access_tokens_are_signed_inside_kms_and_verifiers_read_public_keys_only(cfn: dict[str, Any]) -> None:
    key = cfn["Resources"]["TokenSigningKey"]["Properties"]
    assert (key["KeySpec"], key["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    for statement in key["KeyPolicy"]["Statement"]:
        assert statement["Principal"]["AWS"] == {
            "Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"
        }
    roles = _roles_by_function(cfn)
    signers = {f for f, role in roles.items() if "kms:Sign" in _grants(role).get("TokenSigningKey", set())}
    readers = {
        f for f, role in roles.items() if "kms:GetPublicKey" in _grants(role).get("TokenSigningKey", set())
    }
    assert signers == {"MfaVerifyFunction", "RefreshFunction"}
    assert readers == {"AuthorizerFunction", "JwksFunction"}
    # No secret holds a private key any more, and no role reads the key's private half in any way
    assert "SigningKeysSecret" not in cfn["Resources"]
    for function, role in roles.items():
        actions = _grants(role).get("TokenSigningKey", set())
        assert actions <= {"kms:Sign", "kms:GetPublicKey"}, (function, actions)
    # During a rotation the verify-only keys are readable (public halves) by the verifiers, signable by none
    for statement in _statements(roles["AuthorizerFunction"]):
        if statement["Action"] == "kms:GetPublicKey":
            assert statement["Resource"]["Fn::If"][0] == "HasVerifyOnlyKeys"


def test_the_blind_index_key_outlives_the_stack(sam: dict[str, Any]) -> None:
    blind = sam["Resources"]["BlindIndexKeySecret"]
    assert blind["Properties"]["GenerateSecretString"]["PasswordLength"] == 64
    assert blind["DeletionPolicy"] == blind["UpdateReplacePolicy"] == "Retain"


@pytest.mark.parametrize(
    ("authorizer", "code"), [({"code": "forbidden", "user_id": "u"}, "forbidden"), ({}, "")]
)
def test_an_authorizer_deny_renders_as_problem_json_with_its_code_in_the_local_gateway(
    cfn: dict[str, Any], authorizer: dict[str, Any], code: str
) -> None:
    # The local cloud's renderer (the same VTL subset API Gateway is given) accepts the template, and the
    # body is JSON whether or not the Deny's context carries a code.
    from localcloud.apigw import GatewayResponses, RenderScope
    from localcloud.spec import GatewayResponseSpec

    spec = cfn["Resources"]["VaultPayApi"]["Properties"]["Body"]["x-amazon-apigateway-gateway-responses"]
    responses = GatewayResponses(
        [
            GatewayResponseSpec(
                response_type=name,
                status_code=int(value["statusCode"]) if value.get("statusCode") else None,
                response_parameters=dict(value.get("responseParameters", {})),
                response_templates=dict(value.get("responseTemplates", {})),
            )
            for name, value in spec.items()
        ]
    )
    context = {"requestId": "req-1", "authorizer": authorizer, "error": {"messageString": '"denied"'}}
    scope = RenderScope(context=context, stage_variables={}, request=None, path_parameters=None)
    rendered = responses.render("ACCESS_DENIED", scope)
    assert rendered.status == 403
    assert ("Content-Type", "application/problem+json") in rendered.headers
    problem = json.loads(rendered.body)
    assert problem["code"] == code
    assert problem["type"] == "https://vaultpay.dev/problems/" + code
    assert problem["correlation_id"] == "req-1"


# ---- accounts and the ledger (docs/accounts-contract.md) --------------------------------------------------

ACCOUNTS_BY_OWNER = json.dumps({"Fn::Sub": "${AccountsTable.Arn}/index/ByOwner"})
IDEMPOTENCY_RECORDS = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
# Every grant of every accounts function, as IDENTITY_GRANTS. TransactWriteItems is authorised per item:
# the ledger's transactions hold only Puts and Updates (no ConditionCheck), so PutItem/UpdateItem it is.
# The saga steps read an account with its hold in one BatchGetItem. ReconcileLedgerFunction joins this
# table when it joins the template (the test below that no other function touches an accounts resource
# fails until it does).
ACCOUNTS_GRANTS: dict[str, dict[str, set[str]]] = {
    "CreateAccountFunction": {
        # GetItem and Decrypt only for a replay, which shows the full number again without storing it.
        "AccountsTable": {"dynamodb:GetItem", "dynamodb:PutItem"},
        "AccountsIdempotencyTable": IDEMPOTENCY_RECORDS,
        "AccountNumberKey": {"kms:GenerateDataKey", "kms:Decrypt"},
        "AccountNumberIndexSecret": {"secretsmanager:GetSecretValue"},
    },
    "ListAccountsFunction": {ACCOUNTS_BY_OWNER: {"dynamodb:Query"}},
    "GetAccountFunction": {"AccountsTable": {"dynamodb:GetItem"}, "AccountNumberKey": {"kms:Decrypt"}},
    "GetStatementFunction": {"AccountsTable": {"dynamodb:GetItem", "dynamodb:Query"}},
    "AdminDepositFunction": {
        "AccountsTable": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
        json.dumps({"Fn::Sub": "${AccountsTable.Arn}/index/DepositApprovals"}): {"dynamodb:Query"},
        "AccountsIdempotencyTable": IDEMPOTENCY_RECORDS,
    },
    "ReserveFundsFunction": {
        "AccountsTable": {"dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
    },
    "SettleTransferFunction": {
        "AccountsTable": {
            "dynamodb:BatchGetItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
        },
    },
    "ReleaseFundsFunction": {
        "AccountsTable": {"dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
    },
    # Reads only: a reconciliation that could write could also hide what it found.
    "ReconcileLedgerFunction": {"AccountsTable": {"dynamodb:Scan"}},
    # The release step's grants, plus the one index that finds expired holds.
    "HoldSweeperFunction": {
        json.dumps({"Fn::Sub": "${AccountsTable.Arn}/index/OpenHolds"}): {"dynamodb:Query"},
        "AccountsTable": {"dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
    },
    # The transfers domain's question (no route): accounts and number claims by key, the number hashed with
    # the index key; it decrypts nothing and writes nothing.
    "ResolveTransferPartiesFunction": {
        "AccountsTable": {"dynamodb:GetItem"},
        "AccountNumberIndexSecret": {"secretsmanager:GetSecretValue"},
    },
}
ACCOUNTS_DIRECTORIES = {
    "CreateAccountFunction": "create",
    "ListAccountsFunction": "list",
    "GetAccountFunction": "get",
    "GetStatementFunction": "statement",
    "AdminDepositFunction": "admin_deposit",
    "ReserveFundsFunction": "reserve",
    "SettleTransferFunction": "settle",
    "ReleaseFundsFunction": "release",
    "ReconcileLedgerFunction": "reconcile",
    "HoldSweeperFunction": "hold_sweeper",
    "ResolveTransferPartiesFunction": "resolve",
}
ACCOUNTS_ROUTES = {
    "CreateAccountFunction": {("POST", "/v1/accounts")},
    "ListAccountsFunction": {("GET", "/v1/accounts")},
    "GetAccountFunction": {("GET", "/v1/accounts/{account_id}")},
    "GetStatementFunction": {("GET", "/v1/accounts/{account_id}/statement")},
    "AdminDepositFunction": {
        ("POST", "/v1/admin/deposits"),
        ("GET", "/v1/admin/deposits"),
        ("POST", "/v1/admin/deposits/{deposit_id}/approve"),
        ("POST", "/v1/admin/deposits/{deposit_id}/reject"),
    },
}
SAGA_STEPS = {"ReserveFundsFunction", "SettleTransferFunction", "ReleaseFundsFunction"}
SCHEDULED = {"ReconcileLedgerFunction", "HoldSweeperFunction"}
INTERNAL = {"ResolveTransferPartiesFunction"}  # invoked by other domains' functions, never routed
IDEMPOTENT_ROUTES = {"CreateAccountFunction", "AdminDepositFunction"}
ACCOUNTS_RESOURCES = {
    "AccountsTable",
    "AccountsIdempotencyTable",
    "AccountNumberKey",
    "AccountNumberIndexSecret",
}
ACCOUNTS_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": "accounts",
    "ACCOUNTS_TABLE": {"Ref": "AccountsTable"},
    "ACCOUNT_NUMBER_KEY_ID": {"Fn::GetAtt": ["AccountNumberKey", "Arn"]},
    "ACCOUNT_NUMBER_INDEX_SECRET_ARN": {"Ref": "AccountNumberIndexSecret"},
    "ENABLED_CURRENCIES": "INR",
}


def test_every_accounts_function_exists_with_its_contract_code_location(sam: dict[str, Any]) -> None:
    assert set(ACCOUNTS_DIRECTORIES) == set(ACCOUNTS_ROUTES) | SAGA_STEPS | SCHEDULED | INTERNAL
    assert set(ACCOUNTS_DIRECTORIES) <= set(ACCOUNTS_GRANTS)
    for logical_id, directory in ACCOUNTS_DIRECTORIES.items():
        _assert_built_from_its_folder(sam, logical_id, f"functions/accounts/{directory}")


def test_each_accounts_function_is_granted_exactly_its_own_resources_and_actions(cfn: dict[str, Any]) -> None:
    _assert_granted_exactly(cfn, ACCOUNTS_GRANTS)


def test_no_function_outside_accounts_touches_an_accounts_resource(cfn: dict[str, Any]) -> None:
    outbox_paths = _outbox_paths("AccountsTable")
    for function, role in _roles_by_function(cfn).items():
        if function in ACCOUNTS_GRANTS:
            continue
        touched = {k: v for k, v in _grants(role).items() if _names_one_of(ACCOUNTS_RESOURCES, k)}
        if function in outbox_paths:
            # Outbox items only: the UpdateItem is held to OUTBOX#* keys (tested above).
            own = EVENTS_GRANTS[function].get("AccountsTable")
            expected = {**({"AccountsTable": own} if own else {}), **outbox_paths[function]}
            assert touched == expected, function
        elif function == "FraudReviewFunction":
            assert touched == {"AccountsTable": {"dynamodb:GetItem"}}, function  # held to owners, below
        else:
            assert touched == {}, function


def test_the_review_function_reads_only_the_owner_of_account_items(cfn: dict[str, Any]) -> None:
    (statement,) = [
        s
        for s in _statements(_roles_by_function(cfn)["FraudReviewFunction"])
        if _resource_id(_as_list(s["Resource"])[0]) == "AccountsTable"
    ]
    assert statement["Action"] == "dynamodb:GetItem"
    condition = statement["Condition"]
    assert condition["ForAllValues:StringLike"] == {
        "dynamodb:LeadingKeys": ["ACCOUNT#acc_*"],
        "dynamodb:Attributes": ["pk", "sk", "owner_id"],
    }
    assert condition["StringEqualsIfExists"] == {"dynamodb:Select": "SPECIFIC_ATTRIBUTES"}


def test_no_accounts_function_touches_an_identity_resource(cfn: dict[str, Any]) -> None:
    roles = _roles_by_function(cfn)
    for function in ACCOUNTS_GRANTS:
        assert not set(_grants(roles[function])) & IDENTITY_RESOURCES, function


def test_only_the_idempotency_key_routes_use_the_idempotency_table(
    cfn: dict[str, Any], sam: dict[str, Any]
) -> None:
    for function, role in _roles_by_function(cfn).items():
        granted = _grants(role).get("AccountsIdempotencyTable")
        variables = sam["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})
        if function in IDEMPOTENT_ROUTES:
            assert granted == IDEMPOTENCY_RECORDS, function
            assert variables["IDEMPOTENCY_TABLE"] == {"Ref": "AccountsIdempotencyTable"}, function
        else:
            assert granted is None, function
            # Another domain's Idempotency-Key route names its own table (POST /v1/transfers).
            assert variables.get("IDEMPOTENCY_TABLE") != {"Ref": "AccountsIdempotencyTable"}, function


def test_accounts_routes_reach_their_functions_through_the_authorizer(cfn: dict[str, Any]) -> None:
    body = cfn["Resources"]["VaultPayApi"]["Properties"]["Body"]
    (authorizer,) = body["securityDefinitions"]
    for function, routes in ACCOUNTS_ROUTES.items():
        for method, path in routes:
            operation = body["paths"][path][method.lower()]
            integration = json.dumps(operation["x-amazon-apigateway-integration"]["uri"])
            assert f"${{{function}Aliaslive}}" in integration, function
            assert operation["security"] == [{authorizer: []}], function


def test_http_accounts_functions_have_exactly_their_routes_and_saga_steps_have_none(
    sam: dict[str, Any],
) -> None:
    for function in SAGA_STEPS | INTERNAL:
        props = sam["Resources"][function]["Properties"]
        assert "Events" not in props, function
    for function in ACCOUNTS_ROUTES:
        props = sam["Resources"][function]["Properties"]
        events = props["Events"].values()
        for event in events:
            assert event["Type"] == "Api", function
            assert event["Properties"]["RestApiId"] == {"Ref": "VaultPayApi"}, function
            assert "Auth" not in event["Properties"], function  # the default authorizer, never NONE
        routed = {(event["Properties"]["Method"], event["Properties"]["Path"]) for event in events}
        assert routed == ACCOUNTS_ROUTES[function], function


def test_accounts_functions_get_the_contracts_environment(sam: dict[str, Any]) -> None:
    reconcile = sam["Resources"]["ReconcileLedgerFunction"]["Properties"]["Environment"]["Variables"]
    assert reconcile == {"POWERTOOLS_SERVICE_NAME": "accounts", "ACCOUNTS_TABLE": {"Ref": "AccountsTable"}}
    for function in set(ACCOUNTS_DIRECTORIES) - {"ReconcileLedgerFunction"}:
        variables = sam["Resources"][function]["Properties"]["Environment"]["Variables"]
        for name, value in ACCOUNTS_ENVIRONMENT.items():
            assert variables.get(name) == value, (function, name)
        allowed = (
            set(ACCOUNTS_ENVIRONMENT)
            | ({"IDEMPOTENCY_TABLE"} if function in IDEMPOTENT_ROUTES else set())
            | ({"DEPOSIT_APPROVAL_THRESHOLD"} if function == "AdminDepositFunction" else set())
        )
        assert set(variables) == allowed, function


def test_the_accounts_tables_match_the_contract(sam: dict[str, Any]) -> None:
    table = sam["Resources"]["AccountsTable"]
    props = table["Properties"]
    assert _keys(props) == [("pk", "HASH"), ("sk", "RANGE")]
    indexes = _indexes(props)
    assert indexes == {
        "OutboxPending": ([("pending", "HASH"), ("time", "RANGE")], {"ProjectionType": "ALL"}),
        "ByOwner": ([("owner_id", "HASH"), ("created_sk", "RANGE")], {"ProjectionType": "ALL"}),
        "DepositApprovals": (
            [("approval_queue", "HASH"), ("created_sk", "RANGE")],
            {"ProjectionType": "ALL"},
        ),
        "OpenHolds": (
            [("open_hold_shard", "HASH"), ("hold_expires_at", "RANGE")],
            {"ProjectionType": "ALL"},
        ),
    }
    assert {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]} == {
        **{
            name: "S"
            for name in (
                "pk",
                "sk",
                "pending",
                "time",
                "owner_id",
                "created_sk",
                "open_hold_shard",
                "approval_queue",
            )
        },
        "hold_expires_at": "N",
    }
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert (
        props["DeletionProtectionEnabled"]
        == sam["Resources"]["AuthTable"]["Properties"]["DeletionProtectionEnabled"]
    )
    # Money survives a stack deletion or a replacement
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    # The ByOwner index is what the store queries, under that name.
    from vaultpay.accounts.store import BY_OWNER_INDEX, DEPOSIT_APPROVALS_INDEX, OPEN_HOLDS_INDEX
    from vaultpay.shared.outbox import PENDING_INDEX

    assert set(indexes) == {BY_OWNER_INDEX, PENDING_INDEX, OPEN_HOLDS_INDEX, DEPOSIT_APPROVALS_INDEX}

    records = sam["Resources"]["AccountsIdempotencyTable"]["Properties"]
    assert _keys(records) == [("id", "HASH")]
    assert records["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert records["SSESpecification"] == {"SSEEnabled": True}
    assert "StreamSpecification" not in records


def test_idempotency_records_are_kept_at_least_a_day() -> None:
    from vaultpay.shared import idempotency

    assert idempotency.EXPIRES_AFTER_S >= 24 * 3600
    config = idempotency.idempotency_config()
    assert config.expires_after_seconds >= 24 * 3600
    assert config.payload_validation_jmespath
    assert config.response_hook is not None


def test_the_account_number_key_and_index_secret_outlive_the_stack(sam: dict[str, Any]) -> None:
    key = sam["Resources"]["AccountNumberKey"]
    assert key["Properties"]["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == key["UpdateReplacePolicy"] == "Retain"
    for statement in key["Properties"]["KeyPolicy"]["Statement"]:
        principal = statement["Principal"]["AWS"]
        assert principal == {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    assert sam["Resources"]["AccountNumberKeyAlias"]["Properties"]["TargetKeyId"] == {
        "Ref": "AccountNumberKey"
    }
    secret = sam["Resources"]["AccountNumberIndexSecret"]
    assert secret["Properties"]["GenerateSecretString"]["PasswordLength"] == 64
    assert secret["DeletionPolicy"] == secret["UpdateReplacePolicy"] == "Retain"


def test_the_stack_outputs_the_accounts_table_name(sam: dict[str, Any]) -> None:
    assert sam["Outputs"]["AccountsTableName"]["Value"] == {"Ref": "AccountsTable"}


def test_the_ledger_is_reconciled_every_hour_and_a_violation_or_a_failed_run_alarms(
    sam: dict[str, Any],
) -> None:
    props = sam["Resources"]["ReconcileLedgerFunction"]["Properties"]
    (event,) = props["Events"].values()
    assert event == {"Type": "Schedule", "Properties": {"Schedule": "rate(1 hour)"}}
    violations = sam["Resources"]["LedgerViolationsAlarm"]["Properties"]
    assert (violations["Namespace"], violations["MetricName"]) == ("VaultPay", "LedgerViolations")
    assert (violations["Threshold"], violations["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    errors = sam["Resources"]["ReconcileLedgerErrorsAlarm"]["Properties"]
    assert (errors["Namespace"], errors["MetricName"]) == ("AWS/Lambda", "Errors")
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "ReconcileLedgerFunction"}}]


# ---- transfers (docs/transfers-contract.md) ---------------------------------------------------------------

TRANSFERS_BY_SOURCE = json.dumps({"Fn::Sub": "${TransfersTable.Arn}/index/BySource"})
# Every grant of every transfers function. A transfer and its events are Puts of one TransactWriteItems.
TRANSFERS_GRANTS: dict[str, dict[str, set[str]]] = {
    "CreateTransferFunction": {
        "TransfersTable": {"dynamodb:GetItem", "dynamodb:PutItem"},
        "TransfersIdempotencyTable": IDEMPOTENCY_RECORDS,
        "TransfersRateLimitTable": {"dynamodb:UpdateItem"},
        "ResolveTransferPartiesFunction": {"lambda:InvokeFunction"},
        "TransferStateMachine": {"states:StartExecution"},
    },
    "GetTransferFunction": {"TransfersTable": {"dynamodb:GetItem"}},
    "ListTransfersFunction": {
        TRANSFERS_BY_SOURCE: {"dynamodb:Query"},
        "ResolveTransferPartiesFunction": {"lambda:InvokeFunction"},
    },
    "TransferStatusFunction": {"TransfersTable": {"dynamodb:GetItem", "dynamodb:PutItem"}},
}
TRANSFERS_DIRECTORIES = {
    "CreateTransferFunction": "create",
    "GetTransferFunction": "get",
    "ListTransfersFunction": "list",
    "TransferStatusFunction": "status",
}
TRANSFERS_ROUTES = {
    "CreateTransferFunction": ("POST", "/v1/transfers"),
    "GetTransferFunction": ("GET", "/v1/transfers/{transfer_id}"),
    "ListTransfersFunction": ("GET", "/v1/transfers"),
}
TRANSFERS_RESOURCES = {"TransfersTable", "TransfersIdempotencyTable", "TransfersRateLimitTable"}
TRANSFERS_ENVIRONMENT = {
    "CreateTransferFunction": {
        "POWERTOOLS_SERVICE_NAME": "transfers",
        "TRANSFERS_TABLE": {"Ref": "TransfersTable"},
        "IDEMPOTENCY_TABLE": {"Ref": "TransfersIdempotencyTable"},
        "RATE_LIMIT_TABLE": {"Ref": "TransfersRateLimitTable"},
        "RESOLVE_PARTIES_FUNCTION": {"Ref": "ResolveTransferPartiesFunction"},
        "TRANSFER_STATE_MACHINE_ARN": {"Ref": "TransferStateMachine"},
        "ENABLED_CURRENCIES": "INR",
    },
    "GetTransferFunction": {
        "POWERTOOLS_SERVICE_NAME": "transfers",
        "TRANSFERS_TABLE": {"Ref": "TransfersTable"},
    },
    "ListTransfersFunction": {
        "POWERTOOLS_SERVICE_NAME": "transfers",
        "TRANSFERS_TABLE": {"Ref": "TransfersTable"},
        "RESOLVE_PARTIES_FUNCTION": {"Ref": "ResolveTransferPartiesFunction"},
    },
    "TransferStatusFunction": {
        "POWERTOOLS_SERVICE_NAME": "transfers",
        "TRANSFERS_TABLE": {"Ref": "TransfersTable"},
    },
}


def test_every_transfers_function_exists_with_its_contract_code_location(sam: dict[str, Any]) -> None:
    assert set(TRANSFERS_DIRECTORIES) == set(TRANSFERS_GRANTS)
    for logical_id, directory in TRANSFERS_DIRECTORIES.items():
        _assert_built_from_its_folder(sam, logical_id, f"functions/transfers/{directory}")


def test_each_transfers_function_is_granted_exactly_its_own_resources_and_actions(
    cfn: dict[str, Any],
) -> None:
    _assert_granted_exactly(cfn, TRANSFERS_GRANTS)


def test_transfer_counters_are_the_transfer_scope_only(cfn: dict[str, Any]) -> None:
    from vaultpay.shared.ratelimit import KEY_PREFIX
    from vaultpay.transfers.service import RATE_LIMIT_SCOPE

    role = _roles_by_function(cfn)["CreateTransferFunction"]
    (counting,) = [s for s in _statements(role) if _resource_id(s["Resource"]) == "TransfersRateLimitTable"]
    keys = counting["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
    assert keys == [f"{KEY_PREFIX}#{RATE_LIMIT_SCOPE}#*"]


def test_no_function_outside_transfers_touches_a_transfers_resource(cfn: dict[str, Any]) -> None:
    outbox_paths = _outbox_paths("TransfersTable")
    for function, role in _roles_by_function(cfn).items():
        if function in TRANSFERS_GRANTS:
            continue
        touched = {k: v for k, v in _grants(role).items() if _names_one_of(TRANSFERS_RESOURCES, k)}
        if function in outbox_paths:
            own = EVENTS_GRANTS[function].get("TransfersTable")
            expected = {**({"TransfersTable": own} if own else {}), **outbox_paths[function]}
            assert touched == expected, function
        else:
            assert touched == {}, function


def test_transfers_functions_touch_no_identity_or_accounts_resource(cfn: dict[str, Any]) -> None:
    roles = _roles_by_function(cfn)
    for function in TRANSFERS_GRANTS:
        granted = set(_grants(roles[function]))
        assert not granted & IDENTITY_RESOURCES, function
        assert not [key for key in granted if _names_one_of(ACCOUNTS_RESOURCES, key)], function


def _assert_routed_through_the_authorizer(
    cfn: dict[str, Any], sam: dict[str, Any], routes: dict[str, tuple[str, str]]
) -> None:
    """Each function's (method, path) integrates it behind the API's one authorizer (the default, never
    NONE)."""
    body = cfn["Resources"]["VaultPayApi"]["Properties"]["Body"]
    (authorizer,) = body["securityDefinitions"]
    for function, (method, path) in routes.items():
        operation = body["paths"][path][method.lower()]
        integration = json.dumps(operation["x-amazon-apigateway-integration"]["uri"])
        assert f"${{{function}Aliaslive}}" in integration, function
        assert operation["security"] == [{authorizer: []}], function
        props = sam["Resources"][function]["Properties"]
        (event,) = props["Events"].values()
        assert "Auth" not in event["Properties"], function


def test_transfers_routes_reach_their_functions_through_the_authorizer(
    cfn: dict[str, Any], sam: dict[str, Any]
) -> None:
    _assert_routed_through_the_authorizer(cfn, sam, TRANSFERS_ROUTES)
    status = sam["Resources"]["TransferStatusFunction"]["Properties"]
    assert "Events" not in status


def test_transfers_functions_are_told_only_of_the_resources_they_use(sam: dict[str, Any]) -> None:
    for function, expected in TRANSFERS_ENVIRONMENT.items():
        assert sam["Resources"][function]["Properties"]["Environment"]["Variables"] == expected, function


def test_the_transfers_tables_match_the_contract(sam: dict[str, Any]) -> None:
    from vaultpay.shared.outbox import PENDING_INDEX
    from vaultpay.transfers.store import BY_SOURCE_INDEX

    table = sam["Resources"]["TransfersTable"]
    props = table["Properties"]
    accounts = sam["Resources"]["AccountsTable"]["Properties"]
    assert _keys(props) == [("pk", "HASH"), ("sk", "RANGE")]
    indexes = _indexes(props)
    assert indexes == {
        PENDING_INDEX: ([("pending", "HASH"), ("time", "RANGE")], {"ProjectionType": "ALL"}),
        BY_SOURCE_INDEX: (
            [("source_account_id", "HASH"), ("created_sk", "RANGE")],
            {"ProjectionType": "ALL"},
        ),
    }
    # The outbox's TTL, stream, backups, encryption and protection exactly as the accounts table's.
    for name in TABLE_SETTINGS_AS_ACCOUNTS:
        assert props[name] == accounts[name], name
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    records = sam["Resources"]["TransfersIdempotencyTable"]["Properties"]
    assert records == sam["Resources"]["AccountsIdempotencyTable"]["Properties"]
    limits = sam["Resources"]["TransfersRateLimitTable"]["Properties"]
    assert limits == sam["Resources"]["AuthRateLimitTable"]["Properties"]


def test_the_stack_outputs_the_transfers_table_name(sam: dict[str, Any]) -> None:
    assert sam["Outputs"]["TransfersTableName"]["Value"] == {"Ref": "TransfersTable"}


# ---- fraud (issue 6: the fraud engine, review, alerts, consumer) -------------------------------------------

FRAUD_CONFIG_PARAMETER_ARN = json.dumps(
    {
        "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter"
        "/vaultpay/${Stage}/fraud/config"
    }
)
FRAUD_GRANTS: dict[str, dict[str, set[str]]] = {
    # Decision, profile and devices read; the decision and its two events written in one transaction.
    "EvaluateFraudFunction": {
        "FraudTable": {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:PutItem"},
        "FraudCountersTable": {"dynamodb:GetItem", "dynamodb:UpdateItem"},
        FRAUD_CONFIG_PARAMETER_ARN: {"ssm:GetParameter"},
    },
    "AwaitReviewFunction": {"FraudTable": {"dynamodb:GetItem", "dynamodb:UpdateItem"}},
    # SendTaskSuccess only, to the review machine that waits: a review never fails the task, a decline is a
    # successful decision.
    "FraudReviewFunction": {
        "FraudTable": {"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem"},
        "TransferReviewStateMachine": {"states:SendTaskSuccess"},
        "TransferStatusFunction": {"lambda:InvokeFunction"},
        "AccountsTable": {"dynamodb:GetItem"},  # four eyes: the owner of an account, nothing else
    },
    "FraudAlertsFunction": {
        json.dumps({"Fn::Sub": "${FraudTable.Arn}/index/Alerts"}): {"dynamodb:Query"},
        "FraudTable": {"dynamodb:BatchGetItem"},
    },
    "FraudConsumeFunction": {
        "FraudTable": {"dynamodb:PutItem", "dynamodb:UpdateItem"},
        "NatsFraudConsumerCredentials": {"secretsmanager:GetSecretValue"},
    },
}
FRAUD_DIRECTORIES = {
    "EvaluateFraudFunction": "evaluate",
    "AwaitReviewFunction": "await_review",
    "FraudReviewFunction": "review",
    "FraudAlertsFunction": "alerts",
    "FraudConsumeFunction": "consume",
}
FRAUD_ROUTES = {
    "FraudReviewFunction": ("POST", "/v1/admin/fraud/reviews/{transfer_id}"),
    "FraudAlertsFunction": ("GET", "/v1/admin/fraud/alerts"),
}
FRAUD_RESOURCES = {"FraudTable", "FraudCountersTable"}


def test_every_fraud_function_exists_with_its_contract_code_location(sam: dict[str, Any]) -> None:
    assert set(FRAUD_DIRECTORIES) == set(FRAUD_GRANTS)
    for logical_id, directory in FRAUD_DIRECTORIES.items():
        _assert_built_from_its_folder(sam, logical_id, f"functions/fraud/{directory}")


def test_each_fraud_function_is_granted_exactly_its_own_resources_and_actions(cfn: dict[str, Any]) -> None:
    _assert_granted_exactly(cfn, FRAUD_GRANTS)


def test_no_function_outside_fraud_touches_a_fraud_resource_but_the_outbox_path(cfn: dict[str, Any]) -> None:
    outbox_only = {"RelayFunction", "OutboxSweeperFunction"}
    for function, role in _roles_by_function(cfn).items():
        if function in FRAUD_GRANTS or function in outbox_only:
            continue
        touched = {
            k: v for k, v in _grants(role).items() if _names_one_of(FRAUD_RESOURCES, k) or "fraud/config" in k
        }
        assert touched == {}, function


def test_fraud_admin_routes_reach_their_functions_through_the_authorizer(
    cfn: dict[str, Any], sam: dict[str, Any]
) -> None:
    _assert_routed_through_the_authorizer(cfn, sam, FRAUD_ROUTES)
    for step in ("EvaluateFraudFunction", "AwaitReviewFunction"):
        assert "Events" not in sam["Resources"][step]["Properties"], step


def test_the_fraud_tables_match_the_contract(sam: dict[str, Any]) -> None:
    from vaultpay.fraud.store import ALERTS_INDEX
    from vaultpay.shared.outbox import PENDING_INDEX

    table = sam["Resources"]["FraudTable"]
    props = table["Properties"]
    accounts = sam["Resources"]["AccountsTable"]["Properties"]
    assert _keys(props) == [("pk", "HASH"), ("sk", "RANGE")]
    indexes = {name: keys for name, (keys, _) in _indexes(props).items()}
    assert indexes == {
        PENDING_INDEX: [("pending", "HASH"), ("time", "RANGE")],
        ALERTS_INDEX: [("alert_decision", "HASH"), ("alert_sk", "RANGE")],
    }
    for name in TABLE_SETTINGS_AS_ACCOUNTS:
        assert props[name] == accounts[name], name
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    counters = sam["Resources"]["FraudCountersTable"]["Properties"]
    assert counters == sam["Resources"]["AuthRateLimitTable"]["Properties"]


def test_the_fraud_config_parameter_holds_exactly_the_bundled_defaults(sam: dict[str, Any]) -> None:
    from vaultpay.fraud.config import DEFAULT_CONFIG, load_fraud_config

    parameter = sam["Resources"]["FraudConfigParameter"]["Properties"]
    assert parameter["Name"] == {"Fn::Sub": "/vaultpay/${Stage}/fraud/config"}
    assert parameter["Type"] == "String"
    assert load_fraud_config(parameter["Value"]) == DEFAULT_CONFIG
    evaluate = sam["Resources"]["EvaluateFraudFunction"]["Properties"]["Environment"]["Variables"]
    assert evaluate["FRAUD_CONFIG_PARAMETER"] == {"Ref": "FraudConfigParameter"}


def test_the_fraud_consumer_runs_every_minute_alone_and_its_outbox_reaches_the_relay(
    sam: dict[str, Any],
) -> None:
    props = sam["Resources"]["FraudConsumeFunction"]["Properties"]
    audit = sam["Resources"]["ConsumeAuditEventsFunction"]["Properties"]
    assert props["Events"] == audit["Events"]
    assert (props["Timeout"], props["ReservedConcurrentExecutions"]) == (
        audit["Timeout"],
        audit["ReservedConcurrentExecutions"],
    )
    mapping = sam["Resources"]["RelayFraudOutboxMapping"]["Properties"]
    accounts = sam["Resources"]["RelayAccountsOutboxMapping"]["Properties"]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["FraudTable", "StreamArn"]}
    assert {k: v for k, v in mapping.items() if k != "EventSourceArn"} == {
        k: v for k, v in accounts.items() if k != "EventSourceArn"
    }


# ---- operations: alarms and the dashboard (issue 7) ------------------------------------------------------


def test_the_operators_alarms_watch_what_the_issue_names(sam: dict[str, Any]) -> None:
    watched = {
        (props["Namespace"], props["MetricName"])
        for resource in sam["Resources"].values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        for props in [resource["Properties"]]
    }
    assert {
        ("AWS/States", "ExecutionsFailed"),  # saga failures
        ("AWS/States", "ExecutionsTimedOut"),  # an Express saga past its 5 minutes
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),  # DLQ depth
        ("VaultPay", "LedgerViolations"),  # reconcile violations
        ("AWS/Lambda", "Errors"),  # authorizer (and reconciliation) errors
        ("AWS/ApiGateway", "Latency"),  # p99 latency
    } <= watched
    latency = sam["Resources"]["ApiLatencyP99Alarm"]["Properties"]
    assert latency["ExtendedStatistic"] == "p99"
    # Both state machines are watched: the saga's failures and time-outs, the review's failures
    machines = {
        json.dumps(props["Dimensions"][0]["Value"])
        for resource in sam["Resources"].values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        for props in [resource["Properties"]]
        if props["Namespace"] == "AWS/States"
    }
    assert machines == {
        json.dumps({"Ref": "TransferStateMachine"}),
        json.dumps({"Ref": "TransferReviewStateMachine"}),
    }


def test_the_dashboard_body_is_json_once_substituted(sam: dict[str, Any]) -> None:
    body, names = sam["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    text = re.sub(r"\$\{[^}]+\}", "x", body)
    widgets = json.loads(text)["widgets"]
    titles = {w["properties"]["title"] for w in widgets}
    assert {"Transfer saga executions", "API latency (ms)", "Ledger and holds"} <= titles
    placeholders = set(re.findall(r"\$\{([\w:]+)\}", body))
    assert set(names) == placeholders - {
        "AWS::Region",
        "Stage",
        "TransferStateMachine",
        "TransferReviewStateMachine",
    }


def test_the_unauthenticated_functions_touch_only_the_kinds_of_items_they_own(cfn: dict[str, Any]) -> None:
    # Register and login answer anyone on the internet: a bug in them must not reach sessions, tokens or
    # devices, so IAM holds their auth-table access to these key prefixes (vaultpay.auth.store's keys).
    expected = {
        "RegisterFunction": ["EMAIL#*", "USER#*", "OUTBOX#*"],
        "CreateAdminFunction": ["EMAIL#*", "USER#*", "OUTBOX#*"],
        "LoginFunction": ["EMAIL#*", "USER#*", "CHALLENGE#*", "OUTBOX#*"],
    }
    roles = _roles_by_function(cfn)
    for function, prefixes in expected.items():
        statements = [s for s in _statements(roles[function]) if _resource_id(s["Resource"]) == "AuthTable"]
        assert statements, function
        for statement in statements:
            condition = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
            assert condition == prefixes, function


# ---- audit checkpoints (vaultpay.audit.checkpoints) ------------------------------------------------------

AUDIT_CHECKPOINT_GRANTS = {
    "AuditCheckpointFunction": {
        "AuditTable": {"dynamodb:Query"},
        "AuditCheckpointBucket": {"s3:ListBucketVersions"},
        json.dumps({"Fn::Sub": "${AuditCheckpointBucket.Arn}/checkpoints/*"}): {
            "s3:GetObjectVersion",
            "s3:PutObject",
            "s3:PutObjectRetention",
        },
        "AuditCheckpointKey": {"kms:Sign", "kms:GetPublicKey"},
    },
    "VerifyAuditChainFunction": {
        "AuditTable": {"dynamodb:Query"},
        "AuditCheckpointBucket": {"s3:ListBucketVersions"},
        json.dumps({"Fn::Sub": "${AuditCheckpointBucket.Arn}/checkpoints/*"}): {"s3:GetObjectVersion"},
        "AuditCheckpointKey": {"kms:GetPublicKey"},
    },
}


def test_only_the_checkpoint_function_signs_and_no_function_may_delete_a_checkpoint(
    cfn: dict[str, Any],
) -> None:
    _assert_granted_exactly(cfn, AUDIT_CHECKPOINT_GRANTS)
    for function, role in _roles_by_function(cfn).items():
        if function in AUDIT_CHECKPOINT_GRANTS:
            continue
        touched = {k for k in _grants(role) if "AuditCheckpoint" in k}
        assert touched == set(), function


def test_the_checkpoint_bucket_is_compliance_locked_and_the_audit_table_denies_other_writers(
    sam: dict[str, Any],
) -> None:
    bucket = sam["Resources"]["AuditCheckpointBucket"]
    assert bucket["DeletionPolicy"] == bucket["UpdateReplacePolicy"] == "Retain"
    props = bucket["Properties"]
    assert props["ObjectLockEnabled"] is True
    assert props["ObjectLockConfiguration"]["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert sam["Mappings"]["StageConfig"]["prod"]["AuditCheckpointRetentionDays"] >= 7 * 365
    key = sam["Resources"]["AuditCheckpointKey"]["Properties"]
    assert (key["KeySpec"], key["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    (deny,) = sam["Resources"]["AuditTable"]["Properties"]["ResourcePolicy"]["PolicyDocument"]["Statement"]
    assert (deny["Effect"], deny["Principal"]) == ("Deny", "*")
    assert set(deny["Action"]) == {
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
    }
    exempt = deny["Condition"]["ArnNotLike"]["aws:PrincipalArn"]["Fn::Sub"]
    assert exempt.endswith(":role/${AWS::StackName}-ConsumeAuditEventsFunctionRole-*")
    schedule = sam["Resources"]["AuditCheckpointFunction"]["Properties"]["Events"]["Hourly"]
    assert schedule == {"Type": "Schedule", "Properties": {"Schedule": "rate(1 hour)"}}
    alarm = sam["Resources"]["AuditChainBrokenAlarm"]["Properties"]
    assert (alarm["MetricName"], alarm["Threshold"]) == ("AuditChainBroken", 0)


# ---- logs: each function writes only its own log group (issue 16) ----------------------------------------

LOG_GROUP_TAG = "vaultpay-log-group"
# CloudWatch Logs' accepted retentions, in days.
RETENTION_DAYS = {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922}
# What SAM's AWSXrayWriteOnlyAccess lets a function with Tracing: Active do.
XRAY_ACTIONS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "xray:GetSamplingStatisticSummaries",
}
ACCOUNT = "123456789012"


def _serverless_functions(sam: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return _of_type(sam, "AWS::Serverless::Function")


def _api_functions(sam: dict[str, Any]) -> set[str]:
    return {
        name
        for name, function in _serverless_functions(sam).items()
        if any(event["Type"] == "Api" for event in function["Properties"].get("Events", {}).values())
    }


def _deployed(text: str, principal_tags: dict[str, str], stage: str = "dev") -> str | None:
    """A Fn::Sub string as IAM sees it on a stage, policy variables read from the principal's tags; None
    when a variable names a tag the principal does not have (IAM then skips the statement)."""
    for name, value in {
        "AWS::Partition": "aws",
        "AWS::Region": "us-east-1",
        "AWS::AccountId": ACCOUNT,
        "Stage": stage,
    }.items():
        text = text.replace("${" + name + "}", value)
    for tag in re.findall(r"\$\{!aws:PrincipalTag/([^}]+)\}", text):
        if tag not in principal_tags:
            return None
        text = text.replace("${!aws:PrincipalTag/" + tag + "}", principal_tags[tag])
    assert "${" not in text, text
    return text


def _boundary_allows(cfn: dict[str, Any], action: str, resource: str, principal_tags: dict[str, str]) -> bool:
    """Whether FunctionPermissionsBoundary lets a role with these tags do `action` on `resource`."""
    document = cfn["Resources"]["FunctionPermissionsBoundary"]["Properties"]["PolicyDocument"]
    for statement in _as_list(document["Statement"]):
        assert statement["Effect"] == "Allow", statement  # a boundary that only allows: nothing else to weigh
        if "NotAction" in statement:
            named = not any(fnmatchcase(action, pattern) for pattern in _as_list(statement["NotAction"]))
        else:
            named = any(fnmatchcase(action, pattern) for pattern in _as_list(statement["Action"]))
        patterns = [
            _deployed(r["Fn::Sub"], principal_tags) if isinstance(r, dict) else r
            for r in _as_list(statement["Resource"])
        ]
        if named and any(p is not None and fnmatchcase(resource, p) for p in patterns):
            return True
    return False


def _log_group_name(sam: dict[str, Any], function: str, stage: str = "dev") -> str:
    group = sam["Resources"][f"{function}LogGroup"]["Properties"]["LogGroupName"]["Fn::Sub"]
    deployed = _deployed(group, {}, stage)
    assert deployed is not None
    return deployed


def _log_stream_arn(group: str) -> str:
    return f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{group}:log-stream:2026/01/01/[$LATEST]0a1b2c"


def test_every_function_logs_to_a_group_of_its_own_named_after_it(sam: dict[str, Any]) -> None:
    api = _api_functions(sam)
    functions = _serverless_functions(sam)
    assert len(api) > 20 and len(functions) - len(api) > 10
    for function, resource in functions.items():
        props = resource["Properties"]
        group = f"{function}LogGroup"
        assert props["LoggingConfig"] == {"LogGroup": {"Ref": group}}, function
        assert props["Tags"] == {LOG_GROUP_TAG: {"Ref": group}}, function
        assert sam["Resources"][group]["Type"] == "AWS::Logs::LogGroup", function
        # API functions' groups under .../api/ (RelayLogPermission covers that prefix), the others apart.
        kind = "api" if function in api else "functions"
        assert _log_group_name(sam, function) == f"/vaultpay/dev/{kind}/{function}", function
        assert sam["Resources"][group]["Properties"]["RetentionInDays"] == {
            "Fn::FindInMap": ["StageConfig", {"Ref": "Stage"}, "FunctionLogRetentionDays"]
        }, function
    # No group is shared, and none is left over (the state machines' and the API's access log are the others).
    groups = set(_of_type(sam, "AWS::Logs::LogGroup"))
    others = {"TransferStateMachineLogGroup", "TransferReviewStateMachineLogGroup", "ApiAccessLogGroup"}
    assert groups == {f"{function}LogGroup" for function in functions} | others
    for stage, config in sam["Mappings"]["StageConfig"].items():
        assert config["FunctionLogRetentionDays"] in RETENTION_DAYS, stage
    assert sam["Mappings"]["StageConfig"]["prod"]["FunctionLogRetentionDays"] >= 366


def test_every_function_role_is_bounded_and_tagged_with_its_own_log_group(cfn: dict[str, Any]) -> None:
    # SAM copies a function's Tags onto the role it generates for it (aws/serverless-application-model#1194,
    # without PropagateTags); a role's tags are its sessions' aws:PrincipalTag, which the boundary reads.
    roles = _roles_by_function(cfn)
    assert len(roles) == len(_of_type(cfn, "AWS::Lambda::Function"))
    for function, role in roles.items():
        assert role["PermissionsBoundary"] == {"Ref": "FunctionPermissionsBoundary"}, function
        tag = {"Key": LOG_GROUP_TAG, "Value": {"Ref": f"{function}LogGroup"}}
        assert [t for t in role["Tags"] if t["Key"] == LOG_GROUP_TAG] == [tag], function
    assert cfn["Resources"]["FunctionPermissionsBoundary"]["Type"] == "AWS::IAM::ManagedPolicy"


def test_the_boundary_lets_a_role_write_logs_only_into_the_group_it_is_tagged_with(
    cfn: dict[str, Any], sam: dict[str, Any]
) -> None:
    own, other = _log_group_name(sam, "MeFunction"), _log_group_name(sam, "LoginFunction")
    lambdas_default = "/aws/lambda/vaultpay-dev-MeFunction"
    tags = {LOG_GROUP_TAG: own}
    group_arn = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{own}"
    for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
        assert _boundary_allows(cfn, action, _log_stream_arn(own), tags), action
        assert _boundary_allows(cfn, action, group_arn, tags), action
        assert _boundary_allows(cfn, action, group_arn + ":*", tags), action
        # Not another's group, one whose name only starts with its own, Lambda's default, nor untagged.
        assert not _boundary_allows(cfn, action, _log_stream_arn(other), tags), action
        assert not _boundary_allows(cfn, action, _log_stream_arn(own + "Copy"), tags), action
        assert not _boundary_allows(cfn, action, _log_stream_arn(lambdas_default), tags), action
        assert not _boundary_allows(cfn, action, _log_stream_arn(own), {}), action
    # Nothing else in CloudWatch Logs: no new group, no subscription, no reading, no deleting.
    for action in (
        "logs:CreateLogGroup",
        "logs:PutSubscriptionFilter",
        "logs:DeleteLogGroup",
        "logs:PutRetentionPolicy",
        "logs:FilterLogEvents",
    ):
        assert not _boundary_allows(cfn, action, group_arn, tags), action
    # A role that could re-tag itself could choose its group.
    for action in ("iam:TagRole", "iam:UntagRole", "iam:PassRole"):
        assert not _boundary_allows(cfn, action, "*", tags), action


def test_the_boundary_takes_back_nothing_the_functions_own_policies_grant(cfn: dict[str, Any]) -> None:
    granted = set(XRAY_ACTIONS)
    for role in _roles_by_function(cfn).values():
        for statement in _statements(role):
            granted.update(map(str, _as_list(statement["Action"])))
    assert {
        "dynamodb:PutItem",
        "kms:Sign",
        "s3:PutObject",
        "states:StartExecution",
        "sqs:SendMessage",
    } <= granted
    for action in sorted(granted):
        assert _boundary_allows(cfn, action, "arn:aws:service:us-east-1:123456789012:any", {}), action


def test_every_api_functions_group_sends_request_lines_to_the_relay_and_no_other_group_does(
    sam: dict[str, Any],
) -> None:
    from vaultpay.shared.http import REQUEST_LOGGED

    api = _api_functions(sam)
    subscriptions = _of_type(sam, "AWS::Logs::SubscriptionFilter")
    by_group = {filter_["Properties"]["LogGroupName"]["Ref"]: filter_ for filter_ in subscriptions.values()}
    assert len(by_group) == len(subscriptions)
    assert set(by_group) == {f"{function}LogGroup" for function in api}
    for group, resource in by_group.items():
        assert resource["DependsOn"] == "RelayLogPermission", group
        assert resource["Properties"] == {
            "LogGroupName": {"Ref": group},
            "FilterPattern": f'{{ $.message = "{REQUEST_LOGGED}" }}',
            "DestinationArn": {"Fn::GetAtt": ["RelayFunction", "Arn"]},
        }, group
    # The relay may be invoked for exactly the API functions' groups (Lambda compares with ArnLike; CloudWatch
    # Logs names a group as arn:...:log-group:<name>:*).
    permission = sam["Resources"]["RelayLogPermission"]["Properties"]
    assert permission["Principal"] == "logs.amazonaws.com"
    assert permission["FunctionName"] == {"Ref": "RelayFunction"}
    assert permission["SourceAccount"] == {"Ref": "AWS::AccountId"}
    source = _deployed(permission["SourceArn"]["Fn::Sub"], {})
    assert source is not None
    groups = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:"
    for function in _serverless_functions(sam):
        group_arn = f"{groups}{_log_group_name(sam, function)}:*"
        assert fnmatchcase(group_arn, source) is (function in api), function
    assert not fnmatchcase(f"{groups}/vaultpay/prod/api/MeFunction:*", source)  # another stage's


# ---- NATS credentials and network (docs/nats-on-aws.md) ------------------------------------------------

NATS_USERS = {
    "RelayFunction": "NatsRelayCredentials",
    "OutboxSweeperFunction": "NatsRelayCredentials",
    "ConsumeAuditEventsFunction": "NatsAuditConsumerCredentials",
    "FraudConsumeFunction": "NatsFraudConsumerCredentials",
    "HealthFunction": "NatsHealthCredentials",
}


def test_each_nats_function_reads_only_its_own_nats_user_and_no_function_reads_the_operators(
    cfn: dict[str, Any], sam: dict[str, Any]
) -> None:
    secrets = {
        f"Nats{role}Credentials" for role in ("Relay", "AuditConsumer", "FraudConsumer", "Health", "Operator")
    }
    for name in secrets:
        generated = sam["Resources"][name]["Properties"]["GenerateSecretString"]
        assert generated["GenerateStringKey"] == "password" and generated["PasswordLength"] >= 32, name
    for function, role in _roles_by_function(cfn).items():
        readable = {
            k for k, v in _grants(role).items() if k in secrets and "secretsmanager:GetSecretValue" in v
        }
        expected = {NATS_USERS[function]} if function in NATS_USERS else set()
        assert readable == expected, function
    for function, secret in NATS_USERS.items():
        props = sam["Resources"][function]["Properties"]
        assert props["Environment"]["Variables"]["NATS_CREDENTIALS_SECRET_ARN"] == {"Ref": secret}, function
        assert props["VpcConfig"]["Fn::If"][0] == "InVpc", function


def test_dev_and_prod_refuse_a_loopback_or_placeholder_nats(sam: dict[str, Any]) -> None:
    rule = sam["Rules"]["NatsIsTheClusterOutsideLocal"]
    assert rule["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "Stage"}, "local"]}]}
    (assertion,) = rule["Assertions"]
    refused, parameter = assertion["Assert"]["Fn::Not"][0]["Fn::Contains"]
    assert parameter == {"Ref": "NatsUrls"}
    assert "nats://127.0.0.1:4222" in refused and sam["Parameters"]["NatsUrls"]["Default"] in refused
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    for stage in ("dev", "prod"):
        overrides = config[stage]["global"]["parameters"]["parameter_overrides"]
        (value,) = [part.split("=", 1)[1] for part in overrides.split() if part.startswith("NatsUrls=")]
        assert value in refused, stage  # a placeholder the rule refuses: never a silent loopback

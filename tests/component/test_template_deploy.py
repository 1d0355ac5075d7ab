"""template.yaml's deployment and compliance defaults: gradual deploys through a `live` alias, alarms that
reach a person, access logs, a web ACL, log retention and the region (docs/deployment.md)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from localcloud.template import load_template, translate

pytestmark = pytest.mark.component
ROOT = Path(__file__).resolve().parents[2]
ALARM_TOPIC = [{"Ref": "AlarmTopic"}]
ROLLBACK_ALARMS = ["ApiServerErrorsAlarm", "AuthorizerErrorsAlarm"]
# CERT-In's direction (April 2022): logs of every ICT system kept 180 days.
MINIMUM_LOG_RETENTION_DAYS = 180
RETENTION = {"Fn::FindInMap": ["StageConfig", {"Ref": "Stage"}, "FunctionLogRetentionDays"]}
# What an access-log line may carry: API Gateway's $context variables, never a body, a header or a token.
ACCESS_LOG_KEYS = {
    "requestId",
    "ip",
    "caller",
    "requestTime",
    "httpMethod",
    "resourcePath",
    "status",
    "protocol",
    "responseLength",
    "integrationLatency",
}


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


@pytest.fixture(scope="module")
def cfn(sam: dict[str, Any]) -> dict[str, Any]:
    """After the SAM transform, as CloudFormation and the local cloud see it."""
    return translate(sam, ROOT, {}).template


def _of_type(template: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == rtype}


def _behind_the_api(sam: dict[str, Any]) -> set[str]:
    """Every function API Gateway invokes: those with an Api event, and the authorizer."""
    functions = _of_type(sam, "AWS::Serverless::Function")
    routed = {
        name
        for name, function in functions.items()
        if any(event["Type"] == "Api" for event in function["Properties"].get("Events", {}).values())
    }
    return routed | {"AuthorizerFunction"}


# ---- gradual deployments ---------------------------------------------------------------------------------


def test_every_function_behind_the_api_and_no_other_publishes_a_live_alias(sam: dict[str, Any]) -> None:
    api = _behind_the_api(sam)
    assert len(api) > 20
    for name, function in _of_type(sam, "AWS::Serverless::Function").items():
        props = function["Properties"]
        if name in api:
            assert props["AutoPublishAlias"] == "live", name
            # A configuration or layer change publishes a version too, or the alias would run the old one.
            assert props["AutoPublishAliasAllProperties"] is True, name
            assert props["DeploymentPreference"] == {"Enabled": True}, name
        else:
            # Streams, schedules and the saga invoke the unqualified function: an alias would change nothing.
            assert "AutoPublishAlias" not in props and "DeploymentPreference" not in props, name
    for layer in _of_type(sam, "AWS::Serverless::LayerVersion").values():
        assert layer["Properties"]["PublishLambdaVersion"] is True


def test_prod_shifts_a_canary_dev_and_local_all_at_once_and_the_error_alarms_roll_back(
    sam: dict[str, Any],
) -> None:
    preference = sam["Globals"]["Function"]["DeploymentPreference"]
    assert preference["Enabled"] is False  # each function behind the API turns it on
    assert preference["Type"] == {"Fn::If": ["IsProd", "Canary10Percent5Minutes", "AllAtOnce"]}
    assert sam["Conditions"]["IsProd"] == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}
    assert preference["Alarms"] == [{"Ref": alarm} for alarm in ROLLBACK_ALARMS]
    api_errors = sam["Resources"]["ApiServerErrorsAlarm"]["Properties"]
    assert (api_errors["Namespace"], api_errors["MetricName"]) == ("AWS/ApiGateway", "5XXError")
    assert {d["Name"] for d in api_errors["Dimensions"]} == {"ApiName", "Stage"}


def test_each_function_behind_the_api_has_a_deployment_group_that_rolls_back_on_the_alarms(
    cfn: dict[str, Any], sam: dict[str, Any]
) -> None:
    groups = _of_type(cfn, "AWS::CodeDeploy::DeploymentGroup")
    assert set(groups) == {f"{name}DeploymentGroup" for name in _behind_the_api(sam)}
    for name, group in groups.items():
        props = group["Properties"]
        assert props["AlarmConfiguration"] == {
            "Enabled": True,
            "Alarms": [{"Name": {"Ref": alarm}} for alarm in ROLLBACK_ALARMS],
        }, name
        assert "DEPLOYMENT_STOP_ON_ALARM" in props["AutoRollbackConfiguration"]["Events"], name
        condition, canary, at_once = props["DeploymentConfigName"]["Fn::If"]
        assert condition == "IsProd", name
        assert canary["Fn::Sub"][1] == {"ConfigName": "Canary10Percent5Minutes"}, name
        assert at_once["Fn::Sub"][1] == {"ConfigName": "AllAtOnce"}, name


def test_codedeploy_may_move_only_this_stacks_live_aliases(cfn: dict[str, Any]) -> None:
    # Not SAM's default role with AWSCodeDeployRoleForLambda (UpdateAlias on every function of the account).
    assert "CodeDeployServiceRole" not in cfn["Resources"]
    for name, group in _of_type(cfn, "AWS::CodeDeploy::DeploymentGroup").items():
        assert group["Properties"]["ServiceRoleArn"] == {"Fn::GetAtt": ["CodeDeployRole", "Arn"]}, name
    role = cfn["Resources"]["CodeDeployRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "codedeploy.amazonaws.com"}
    assert "ManagedPolicyArns" not in role
    (policy,) = role["Policies"]
    aliases, alarms = policy["PolicyDocument"]["Statement"]
    assert set(aliases["Action"]) == {
        "lambda:GetAlias",
        "lambda:UpdateAlias",
        "lambda:GetProvisionedConcurrencyConfig",
    }
    assert aliases["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:"
        "${AWS::StackName}-*:live"
    }
    assert (alarms["Action"], alarms["Resource"]) == ("cloudwatch:DescribeAlarms", "*")


def test_api_gateway_invokes_every_route_and_the_authorizer_through_the_live_alias(
    cfn: dict[str, Any], sam: dict[str, Any]
) -> None:
    body = cfn["Resources"]["VaultPayApi"]["Properties"]["Body"]
    uris = [
        json.dumps(operation["x-amazon-apigateway-integration"]["uri"])
        for operations in body["paths"].values()
        for operation in operations.values()
    ]
    (authorizer,) = body["securityDefinitions"].values()
    uris.append(json.dumps(authorizer["x-amazon-apigateway-authorizer"]["authorizerUri"]))
    invoked = {match for uri in uris for match in re.findall(r"(\w+)Aliaslive\b", uri)}
    assert invoked == _behind_the_api(sam)
    assert not any(".Arn" in uri for uri in uris), uris
    # API Gateway's permission to invoke is on the alias, which is what it calls.
    for name, permission in _of_type(cfn, "AWS::Lambda::Permission").items():
        props = permission["Properties"]
        if props["Principal"] == "apigateway.amazonaws.com":
            assert props["FunctionName"]["Ref"].endswith("Aliaslive"), name


# ---- alarms reach a person -------------------------------------------------------------------------------


def test_every_alarm_notifies_the_alarm_topic_when_it_fires_and_when_it_clears(cfn: dict[str, Any]) -> None:
    alarms = _of_type(cfn, "AWS::CloudWatch::Alarm")
    assert len(alarms) >= 12
    for name, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == ALARM_TOPIC, name
        assert alarm["Properties"]["OKActions"] == ALARM_TOPIC, name


def test_the_alarm_topic_is_encrypted_with_a_key_only_this_stacks_alarms_may_use(sam: dict[str, Any]) -> None:
    resources = sam["Resources"]
    assert resources["AlarmTopic"]["Properties"]["KmsMasterKeyId"] == {"Ref": "AlarmTopicKey"}
    key = resources["AlarmTopicKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    (cloudwatch,) = [s for s in key["KeyPolicy"]["Statement"] if "Service" in s["Principal"]]
    assert cloudwatch["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert cloudwatch["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
    this_stacks_alarms = {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
        "ArnLike": {
            "aws:SourceArn": {
                "Fn::Sub": "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:"
                "${AWS::StackName}-*"
            }
        },
    }
    assert cloudwatch["Condition"] == this_stacks_alarms
    policy = resources["AlarmTopicPolicy"]["Properties"]
    assert policy["Topics"] == [{"Ref": "AlarmTopic"}]
    allow, deny = policy["PolicyDocument"]["Statement"]
    assert (allow["Effect"], allow["Action"], allow["Condition"]) == (
        "Allow",
        "sns:Publish",
        this_stacks_alarms,
    )
    assert (deny["Effect"], deny["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})


def test_the_e_mail_subscription_exists_only_when_alarm_email_is_set(sam: dict[str, Any]) -> None:
    assert sam["Parameters"]["AlarmEmail"]["Default"] == ""
    assert re.fullmatch(sam["Parameters"]["AlarmEmail"]["AllowedPattern"], "")
    assert re.fullmatch(sam["Parameters"]["AlarmEmail"]["AllowedPattern"], "oncall@vaultpay.dev")
    assert not re.fullmatch(sam["Parameters"]["AlarmEmail"]["AllowedPattern"], "a@b.c,d@e.f")
    assert sam["Conditions"]["HasAlarmEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}
    subscription = sam["Resources"]["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"] == {
        "TopicArn": {"Ref": "AlarmTopic"},
        "Protocol": "email",
        "Endpoint": {"Ref": "AlarmEmail"},
    }


# ---- compliance defaults (issue 18, item 9) --------------------------------------------------------------


def test_every_log_group_keeps_its_lines_at_least_180_days_on_every_stage(
    cfn: dict[str, Any], sam: dict[str, Any]
) -> None:
    groups = _of_type(cfn, "AWS::Logs::LogGroup")
    assert len(groups) > 30
    for name, group in groups.items():
        assert group["Properties"]["RetentionInDays"] == RETENTION, name
    for stage, config in sam["Mappings"]["StageConfig"].items():
        assert config["FunctionLogRetentionDays"] >= MINIMUM_LOG_RETENTION_DAYS, stage


def test_the_stage_writes_a_json_access_log_line_without_bodies_headers_or_tokens(
    cfn: dict[str, Any], sam: dict[str, Any]
) -> None:
    (stage,) = _of_type(cfn, "AWS::ApiGateway::Stage").values()
    setting = stage["Properties"]["AccessLogSetting"]
    assert setting["DestinationArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
        "${ApiAccessLogGroup}"
    }
    line = setting["Format"]
    variables = set(re.findall(r"\$context\.[\w.]+", line))
    assert variables, line
    for variable in variables:
        assert not re.search(r"body|header|token|authorization|requestOverride", variable, re.I), variable
    assert "$input" not in line and "$util" not in line
    # With every variable replaced by a value (numbers unquoted, as the format writes them), it is JSON.
    rendered = json.loads(re.sub(r"\$context\.[\w.]+", "1", line))
    assert set(rendered) >= ACCESS_LOG_KEYS
    group = sam["Resources"]["ApiAccessLogGroup"]["Properties"]
    assert group["LogGroupName"] == {"Fn::Sub": "/vaultpay/${Stage}/access/VaultPayApi"}


def test_api_gateway_logs_through_an_account_role_that_writes_only_vaultpays_access_logs(
    sam: dict[str, Any],
) -> None:
    resources = sam["Resources"]
    assert resources["VaultPayApi"]["DependsOn"] == "ApiGatewayAccount"
    account = resources["ApiGatewayAccount"]["Properties"]
    assert account == {"CloudWatchRoleArn": {"Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]}}
    role = resources["ApiGatewayCloudWatchRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "apigateway.amazonaws.com"}
    assert "ManagedPolicyArns" not in role  # not AmazonAPIGatewayPushToCloudWatchLogs: logs on every group
    (policy,) = role["Policies"]
    write, find = policy["PolicyDocument"]["Statement"]
    assert set(write["Action"]) == {"logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"}
    for resource in write["Resource"]:
        assert "log-group:/vaultpay/*/access/*" in resource["Fn::Sub"], resource
    assert find["Action"] == "logs:DescribeLogGroups"


def test_a_regional_web_acl_with_the_managed_rule_groups_and_a_per_ip_rate_limit_guards_the_stage(
    sam: dict[str, Any],
) -> None:
    acl = sam["Resources"]["ApiWebAcl"]["Properties"]
    assert acl["Scope"] == "REGIONAL"
    assert acl["DefaultAction"] == {"Allow": {}}
    visibilities = [acl["VisibilityConfig"]] + [rule["VisibilityConfig"] for rule in acl["Rules"]]
    for visibility in visibilities:
        assert visibility["CloudWatchMetricsEnabled"] is True and visibility["SampledRequestsEnabled"] is True
    rules = {rule["Name"]: rule for rule in acl["Rules"]}
    assert len({rule["Priority"] for rule in acl["Rules"]}) == len(acl["Rules"])
    for group in ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"):
        statement = rules[group]["Statement"]["ManagedRuleGroupStatement"]
        assert (statement["VendorName"], statement["Name"]) == ("AWS", group)
        assert rules[group]["OverrideAction"] == {"None": {}}  # their blocks block: not count-only
    rate = rules["RateLimitPerSourceIp"]
    assert rate["Statement"]["RateBasedStatement"]["AggregateKeyType"] == "IP"
    assert rate["Statement"]["RateBasedStatement"]["Limit"] == {"Ref": "WafRateLimitPerIp"}
    response = rate["Action"]["Block"]["CustomResponse"]
    assert response["ResponseCode"] == 429
    problem = json.loads(acl["CustomResponseBodies"][response["CustomResponseBodyKey"]]["Content"])
    assert (problem["status"], problem["code"]) == (429, "rate_limited")
    assert problem["type"] == "https://vaultpay.dev/problems/rate_limited"
    association = sam["Resources"]["ApiWebAclAssociation"]["Properties"]
    assert association["WebACLArn"] == {"Fn::GetAtt": ["ApiWebAcl", "Arn"]}
    assert association["ResourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${VaultPayApi}/stages/"
        "${VaultPayApi.Stage}"
    }


def test_dev_and_prod_deploy_to_mumbai() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    for stage in ("dev", "prod"):
        assert config[stage]["global"]["parameters"]["region"] == "ap-south-1", stage


def test_the_local_cloud_skips_what_only_aws_has_and_provisions_the_rest(cfn: dict[str, Any]) -> None:
    from localcloud.provision import CLOUD_ONLY, LOCAL_NOOP, PROVISIONED

    types = {resource["Type"] for resource in cfn["Resources"].values()}
    assert {
        "AWS::CodeDeploy::Application",
        "AWS::CodeDeploy::DeploymentGroup",
        "AWS::SNS::Subscription",
        "AWS::WAFv2::WebACL",
        "AWS::WAFv2::WebACLAssociation",
    } <= types & CLOUD_ONLY
    assert {"AWS::Lambda::Version", "AWS::Lambda::Alias", "AWS::SNS::Topic"} <= types & PROVISIONED
    assert {"AWS::SNS::TopicPolicy", "AWS::ApiGateway::Account"} <= types & LOCAL_NOOP

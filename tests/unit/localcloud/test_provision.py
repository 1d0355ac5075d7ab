"""The local cloud provisions what a gradual deployment adds: aliases and versions are names of the function's
code, the API's routes keep the alias, the alarm topic exists, and CodeDeploy and WAF are skipped unread."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from localcloud.provision import Provisioner
from localcloud.spec import Deployment
from localcloud.template import translate

pytestmark = pytest.mark.unit
ACCOUNT = "000000000000"

TEMPLATE: dict[str, Any] = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Transform": "AWS::Serverless-2016-10-31",
    "Parameters": {"Stage": {"Type": "String", "Default": "local"}},
    "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}},
    "Resources": {
        "PayFunction": {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "CodeUri": "pay/",
                "Handler": "app.handler",
                "Runtime": "python3.13",
                "AutoPublishAlias": "live",
                "DeploymentPreference": {
                    "Type": {"Fn::If": ["IsProd", "Canary10Percent5Minutes", "AllAtOnce"]},
                    "Alarms": [{"Ref": "PayErrorsAlarm"}],
                },
                "Events": {
                    "Pay": {
                        "Type": "Api",
                        "Properties": {"RestApiId": {"Ref": "Api"}, "Path": "/pay", "Method": "post"},
                    }
                },
            },
        },
        "Api": {"Type": "AWS::Serverless::Api", "Properties": {"StageName": {"Ref": "Stage"}}},
        "AlarmTopic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "pay-alarms"}},
        "PayErrorsAlarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "Namespace": "AWS/Lambda",
                "MetricName": "Errors",
                "Statistic": "Sum",
                "Period": 60,
                "EvaluationPeriods": 1,
                "Threshold": 0,
                "ComparisonOperator": "GreaterThanThreshold",
                "AlarmActions": [{"Ref": "AlarmTopic"}],
            },
        },
        "Acl": {"Type": "AWS::WAFv2::WebACL", "Properties": {"Scope": "REGIONAL"}},
        # Resolving it would ask for the web ACL's ARN, which only AWS has.
        "AclAssociation": {
            "Type": "AWS::WAFv2::WebACLAssociation",
            "Properties": {
                "ResourceArn": "arn:aws:apigateway:x",
                "WebACLArn": {"Fn::GetAtt": ["Acl", "Arn"]},
            },
        },
    },
}


# One provisioning for the module: the tests only read what it made.
@pytest.fixture(scope="module")
def clients() -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)
        with mock_aws():
            yield lambda service: boto3.client(
                service, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
            )


@pytest.fixture(scope="module")
def provisioned(clients: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Provisioner, Deployment]:
    base = tmp_path_factory.mktemp("stack")
    (base / "pay").mkdir()
    provisioner = Provisioner(translate(TEMPLATE, base, {}), {}, clients)
    return provisioner, provisioner.run()


def test_an_alias_and_a_version_are_qualified_arns_of_the_function(
    provisioned: tuple[Provisioner, Deployment],
) -> None:
    provisioner, deployment = provisioned
    (name,) = deployment.functions
    arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}"
    assert provisioner.resolver.resolve({"Ref": "PayFunctionAliaslive"}) == f"{arn}:live"
    version = next(k for k in provisioner.resources if k.startswith("PayFunctionVersion"))
    assert provisioner.resolver.resolve({"Ref": version}) == f"{arn}:1"
    assert provisioner.resolver.resolve({"Fn::GetAtt": [version, "Version"]}) == "1"


def test_the_apis_route_invokes_the_alias_as_on_aws(provisioned: tuple[Provisioner, Deployment]) -> None:
    _, deployment = provisioned
    (name,) = deployment.functions
    (api,) = deployment.apis
    (route,) = api.routes
    assert (route.method, route.resource, route.function_name) == ("POST", "/pay", f"{name}:live")


def test_the_alarm_topic_is_created_in_sns_and_codedeploy_and_waf_are_skipped_unresolved(
    provisioned: tuple[Provisioner, Deployment], clients: Any
) -> None:
    provisioner, _ = provisioned
    topics = [t["TopicArn"] for t in clients("sns").list_topics()["Topics"]]
    assert topics == [f"arn:aws:sns:us-east-1:{ACCOUNT}:pay-alarms"]
    assert provisioner.resolver.resolve({"Ref": "AlarmTopic"}) == topics[0]
    skipped = dict(provisioner.skipped)
    assert skipped["AclAssociation"] == "AWS::WAFv2::WebACLAssociation"
    assert skipped["ServerlessDeploymentApplication"] == "AWS::CodeDeploy::Application"
    assert skipped["PayFunctionDeploymentGroup"] == "AWS::CodeDeploy::DeploymentGroup"
    assert skipped["PayErrorsAlarm"] == "AWS::CloudWatch::Alarm"

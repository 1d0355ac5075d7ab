"""infra/deploy/preflight.py: `make deploy` refuses, naming each, what CloudFormation would refuse later."""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support.handlers import load_module

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]

TEMPLATE = """\
Parameters:
  Stage:
    Type: String
    AllowedValues: [local, dev, prod]
    Default: local
  NatsUrls:
    Type: String
    Default: nats://127.0.0.1:4222
    AllowedPattern: ^(nats|tls)://[^,\\s]+(,(nats|tls)://[^,\\s]+)*$
    ConstraintDescription: must be nats:// or tls:// URLs, comma-separated
  AlarmEmail:
    Type: String
    Default: ""
  OperatorRoleArn:
    Type: String
  RateLimit:
    Type: Number
    Default: 2000
    MinValue: 10
    MaxValue: 2000000000
Rules:
  NatsIsTheClusterOutsideLocal:
    RuleCondition: !Not [!Equals [!Ref Stage, local]]
    Assertions:
      - Assert: !Not
          - !Contains [[nats://127.0.0.1:4222, tls://REPLACE-WITH-THE-NATS-CLUSTER:4222], !Ref NatsUrls]
        AssertDescription: NatsUrls must be the NATS cluster's URLs on dev and prod.
Resources: {}
"""


def samconfig(dev_overrides: str, region: str = "ap-south-1") -> str:
    return textwrap.dedent(f"""\
        version = 0.1
        [local.global.parameters]
        parameter_overrides = "Stage=local"
        [dev.global.parameters]
        stack_name = "vaultpay-dev"
        region = "{region}"
        parameter_overrides = "{dev_overrides}"
        [dev.deploy.parameters]
        capabilities = "CAPABILITY_IAM"
        [prod.global.parameters]
        region = "ap-south-1"
        parameter_overrides = "Stage=prod"
        [prod.deploy.parameters]
        confirm_changeset = true
        """)


READY = "Stage=dev NatsUrls=tls://nats-1.internal:4222 OperatorRoleArn=arn:aws:iam::1:role/ops"


@pytest.fixture(scope="module")
def preflight() -> ModuleType:
    return load_module(ROOT / "infra" / "deploy" / "preflight.py", "vaultpay_deploy_preflight", register=True)


def problems_of(preflight: ModuleType, tmp_path: Path, config: str, stage: str = "dev") -> list[str]:
    template_path, config_path = tmp_path / "template.yaml", tmp_path / "samconfig.toml"
    template_path.write_text(TEMPLATE)
    config_path.write_text(config)
    found = preflight.check(stage, preflight.load_template(template_path), config_path)
    return [str(problem) for problem in found]


def test_a_stage_with_every_parameter_set_is_ready(preflight: ModuleType, tmp_path: Path) -> None:
    assert problems_of(preflight, tmp_path, samconfig(READY)) == []


def test_a_required_parameter_that_no_override_sets_is_named(preflight: ModuleType, tmp_path: Path) -> None:
    # Given a parameter without a default, and dev's overrides that leave it out
    overrides = "Stage=dev NatsUrls=tls://nats-1.internal:4222"
    # Then the preflight names it
    assert problems_of(preflight, tmp_path, samconfig(overrides)) == [
        "OperatorRoleArn: required (no default) and not set in [dev] parameter_overrides"
    ]


def test_a_placeholder_value_is_refused_once_although_a_rule_refuses_it_too(
    preflight: ModuleType, tmp_path: Path
) -> None:
    overrides = (
        "Stage=dev NatsUrls=tls://REPLACE-WITH-THE-NATS-CLUSTER:4222 OperatorRoleArn=arn:aws:iam::1:role/ops"
    )
    assert problems_of(preflight, tmp_path, samconfig(overrides)) == [
        "NatsUrls: placeholder value 'tls://REPLACE-WITH-THE-NATS-CLUSTER:4222': set the real value in "
        "samconfig.toml"
    ]


def test_a_default_a_template_rule_refuses_on_the_stage_is_named_with_the_rule(
    preflight: ModuleType, tmp_path: Path
) -> None:
    # Given dev's overrides without NatsUrls: its default is the loopback the rule refuses outside local
    overrides = "Stage=dev OperatorRoleArn=arn:aws:iam::1:role/ops"
    assert problems_of(preflight, tmp_path, samconfig(overrides)) == [
        "NatsUrls: refused by rule NatsIsTheClusterOutsideLocal: NatsUrls must be the NATS cluster's "
        "URLs on dev and prod."
    ]


def test_values_outside_a_parameters_constraints_are_named(preflight: ModuleType, tmp_path: Path) -> None:
    overrides = "Stage=qa NatsUrls=http://nats:4222 OperatorRoleArn=x RateLimit=5 Unknown=1"
    assert problems_of(preflight, tmp_path, samconfig(overrides)) == [
        "Unknown: set in parameter_overrides but not a parameter of the template",
        "Stage: 'qa' is not one of local, dev, prod",
        "NatsUrls: must be nats:// or tls:// URLs, comma-separated",
        "RateLimit: 5 is below the minimum 10",
    ]


def test_a_region_outside_india_is_refused(preflight: ModuleType, tmp_path: Path) -> None:
    assert problems_of(preflight, tmp_path, samconfig(READY, region="us-east-1")) == [
        "region: us-east-1 is outside India; deploy to ap-south-1 or ap-south-2"
    ]


@pytest.mark.parametrize("stage", ["", "staging", "local"])
def test_a_stage_samconfig_does_not_deploy_is_refused_with_the_ones_it_does(
    preflight: ModuleType, tmp_path: Path, stage: str
) -> None:
    assert problems_of(preflight, tmp_path, samconfig(READY), stage) == [
        f"STAGE: {stage!r} is not a stage samconfig.toml deploys (dev, prod)"
    ]


def test_main_prints_every_problem_on_stderr_and_exits_1(
    preflight: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    (tmp_path / "samconfig.toml").write_text(samconfig("Stage=dev", region="eu-west-1"))
    argv = ["--stage", "dev", "--template", str(tmp_path / "template.yaml")]
    code = preflight.main([*argv, "--samconfig", str(tmp_path / "samconfig.toml")])
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert err == [
        "preflight: dev cannot be deployed:",
        "  region: eu-west-1 is outside India; deploy to ap-south-1 or ap-south-2",
        "  OperatorRoleArn: required (no default) and not set in [dev] parameter_overrides",
        "  NatsUrls: refused by rule NatsIsTheClusterOutsideLocal: NatsUrls must be the NATS cluster's "
        "URLs on dev and prod.",
    ]


def test_main_says_ready_and_exits_0(
    preflight: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    (tmp_path / "samconfig.toml").write_text(samconfig(READY))
    argv = ["--stage", "dev", "--template", str(tmp_path / "template.yaml")]
    assert preflight.main([*argv, "--samconfig", str(tmp_path / "samconfig.toml")]) == 0
    assert (
        capsys.readouterr().out
        == "preflight: dev is ready to deploy (stack vaultpay-dev, region ap-south-1)\n"
    )


def test_a_rule_the_preflight_cannot_evaluate_fails_loudly(preflight: ModuleType, tmp_path: Path) -> None:
    rule: dict[str, Any] = {"Assertions": [{"Assert": {"Fn::ValueOfAll": ["AWS::EC2::VPC::Id", "Tags"]}}]}
    (tmp_path / "samconfig.toml").write_text(samconfig(READY))
    with pytest.raises(preflight.PreflightError, match="Fn::ValueOfAll"):
        preflight.check("dev", {"Parameters": {}, "Rules": {"R": rule}}, tmp_path / "samconfig.toml")


def test_the_repositorys_dev_and_prod_wait_only_for_the_nats_cluster(preflight: ModuleType) -> None:
    # The committed samconfig.toml: both stages in Mumbai, and nothing missing but the NATS cluster's URLs,
    # which only the person deploying has (docs/nats-on-aws.md).
    config_path = ROOT / "samconfig.toml"
    template = preflight.load_template(ROOT / "template.yaml")
    for stage in ("dev", "prod"):
        found = preflight.check(stage, template, config_path)
        assert [problem.subject for problem in found] == ["NatsUrls"], stage
        assert "placeholder" in found[0].reason, stage


def test_a_local_endpoint_on_dev_is_refused_by_the_repositorys_rule(
    preflight: ModuleType, tmp_path: Path
) -> None:
    # Given dev's settings with the cluster's URLs and, by mistake, the local stage's endpoint
    config_path = tmp_path / "samconfig.toml"
    config_path.write_text(
        samconfig(
            "Stage=dev NatsUrls=tls://nats-1.internal:4222 LocalEndpointUrl=http://127.0.0.1:4566",
        )
    )

    # When the repository's template is checked
    found = preflight.check("dev", preflight.load_template(ROOT / "template.yaml"), config_path)

    # Then the rule that keeps AWS_ENDPOINT_URL off the cloud's functions refuses it
    assert [problem.subject for problem in found] == ["LocalEndpointUrl"]
    assert "LocalEndpointOnlyOnLocal" in found[0].reason

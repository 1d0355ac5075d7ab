"""`vaultpay admin create-user` (and `invoke`) against AWS (moto, in process): the function comes from the
stack's resources, the target line names the account, profile, region and stack, the write waits for --yes,
and the new admin's event names the operator's IAM principal. The function's own behaviour is tested on the
local cloud (tests/component/test_cli.py); here moto's Lambda answers what CreateAdminFunction answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from vaultpay_cli.main import app

pytestmark = pytest.mark.unit

REGION = "ap-south-1"
STACK = "vaultpay-dev"
ACCOUNT = "123456789012"  # moto's
# Two functions named after CreateAdminFunction: only the stack tells which one is the stage's.
TEMPLATE = {
    "Resources": {
        "CreateAdminFunction": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Runtime": "python3.13",
                "Handler": "app.handler",
                "Role": f"arn:aws:iam::{ACCOUNT}:role/create-admin",
                "Code": {"ZipFile": "def handler(event, context):\n    return {}\n"},
            },
        }
    }
}
CREATED = {
    "user_id": "usr_0123456789abcdef0123456789abcdef",
    "role": "admin",
    "mfa": {"type": "totp", "secret": "JBSWY3DPEHPK3PXP", "otpauth_uri": "otpauth://totp/VaultPay:ops"},
}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A profile `ops` in ap-south-1, no local cloud in the state dir, and the stack deployed in moto."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "VAULTPAY_STACK"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "config"
    config.write_text(f"[profile ops]\nregion = {REGION}\n")
    credentials = tmp_path / "credentials"
    credentials.write_text("[ops]\naws_access_key_id = AKIAOPS\naws_secret_access_key = ops-secret\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("VAULTPAY_STATE_DIR", str(tmp_path / "no-local-cloud"))
    with mock_aws(config={"lambda": {"use_docker": False}}):
        session = boto3.session.Session(profile_name="ops")
        trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                "Action": "sts:AssumeRole"}]}  # fmt: skip
        session.client("iam").create_role(RoleName="create-admin", AssumeRolePolicyDocument=json.dumps(trust))
        session.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(TEMPLATE))
        resources = session.client("cloudformation").list_stack_resources(StackName=STACK)
        function = resources["StackResourceSummaries"][0]["PhysicalResourceId"]
        # A function of another stage, with a name that would match too
        session.client("lambda").create_function(
            FunctionName="vaultpay-prod-CreateAdminFunction-Other",
            Runtime="python3.13",
            Role=f"arn:aws:iam::{ACCOUNT}:role/create-admin",
            Handler="app.handler",
            Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
        )
        yield {"function": function, "session": session}


def _queue_answer(body: dict[str, Any]) -> None:
    """What moto's Docker-free Lambda answers to the next invoke."""
    from moto.awslambda_simple.models import lambda_simple_backends

    lambda_simple_backends[ACCOUNT][REGION].lambda_simple_results_queue.append(json.dumps(body))


def create_user(*extra: str) -> Any:
    args = ["admin", "create-user", "--email", "ops@vaultpay.dev", "--full-name", "Ops Admin",
            "--phone", "+919812345678", "--password", "an operator's long password",
            "--profile", "ops", *extra]  # fmt: skip
    return CliRunner().invoke(app, args)


def test_create_user_on_aws_refuses_to_write_without_yes_when_no_one_can_confirm(aws: dict[str, Any]) -> None:
    done = create_user("--stack", STACK)

    assert done.exit_code == 2
    assert (
        f"target: AWS account {ACCOUNT}, profile ops, region {REGION}, stack {STACK} (--profile)"
        in done.stderr
    )
    assert "Refusing to create the admin ops@vaultpay.dev" in done.stderr and "--yes" in done.stderr
    assert done.stdout == ""


def test_create_user_on_aws_invokes_the_stacks_function_and_prints_the_enrolment(aws: dict[str, Any]) -> None:
    _queue_answer(CREATED)

    done = create_user("--stack", STACK, "--yes")

    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == CREATED
    assert aws["function"] in done.stderr  # the confirmation names the function it chose
    assert aws["function"].startswith(STACK)


def test_create_user_on_aws_without_a_stack_asks_for_one_when_several_functions_match(
    aws: dict[str, Any],
) -> None:
    done = create_user("--yes")

    assert done.exit_code == 2
    assert "Pass --stack or --function-name" in done.stderr
    assert aws["function"] in done.stderr and "vaultpay-prod-CreateAdminFunction-Other" in done.stderr


def test_create_user_on_aws_names_a_stack_without_the_function(aws: dict[str, Any]) -> None:
    aws["session"].client("cloudformation").create_stack(
        StackName="empty", TemplateBody=json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}})
    )

    done = create_user("--stack", "empty", "--yes")

    assert done.exit_code == 2
    assert "Stack empty has no resource CreateAdminFunction." in done.stderr


def test_create_user_on_aws_reports_the_functions_refusal_without_the_password(aws: dict[str, Any]) -> None:
    _queue_answer({"error": "email_taken", "message": "An account with this email exists."})

    done = create_user("--stack", STACK, "--yes")

    assert done.exit_code == 1
    assert "Could not create the admin" in done.stderr and "email_taken" in done.stderr
    assert "long password" not in done.output


def test_invoke_on_aws_finds_the_stacks_function_and_asks_before_running_it(aws: dict[str, Any]) -> None:
    _queue_answer({"statusCode": 200, "body": "{}"})
    args = ["invoke", "CreateAdminFunction", "--profile", "ops", "--stack", STACK]

    refused = CliRunner().invoke(app, args)
    done = CliRunner().invoke(app, [*args, "--yes"])

    assert refused.exit_code == 2 and f"Refusing to invoke {aws['function']}" in refused.stderr
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"statusCode": 200, "body": "{}"}


def test_the_operator_on_aws_is_the_iam_principal_and_locally_the_login_name(
    aws: dict[str, Any], tmp_path: Path
) -> None:
    from vaultpay_cli.main import _operator_identity
    from vaultpay_cli.target import resolve_target

    on_aws = _operator_identity(resolve_target(profile="ops"))
    local = _operator_identity(resolve_target(endpoint_url="http://127.0.0.1:4566", state_dir=tmp_path))

    assert on_aws.startswith("arn:aws:") and f":{ACCOUNT}:" in on_aws
    assert local.startswith("local:")

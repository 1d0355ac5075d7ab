"""vaultpay_cli.target: the one rule that picks where a command goes (flags, environment, the running local
cloud, AWS), the line that names it, the confirmation before a write off this machine, and the local clients
made with localstack-client."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
import typer

from vaultpay_cli import target as targets
from vaultpay_cli.target import is_loopback, local_client, resolve_target

pytestmark = pytest.mark.unit

EDGE = "http://127.0.0.1:45666"
TARGET_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_REGION", "VAULTPAY_STACK")


@pytest.fixture(autouse=True)
def no_aws_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS configuration of the machine's leaks in: no target variable, a region, no config files."""
    for name in TARGET_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    config = tmp_path / "aws-config"
    config.write_text("[profile ops]\nregion = ap-south-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


def _running_cloud(state_dir: Path) -> Path:
    """A state file as a running local cloud writes it (this process's pid: read_state checks it lives)."""
    state_dir.mkdir()
    state = {
        "pid": os.getpid(),
        "endpoints": {"edge": EDGE},
        "functions": {"vaultpay-HealthFunction": {"logical_id": "HealthFunction"}},
    }
    (state_dir / "state.json").write_text(json.dumps(state))
    return state_dir


def test_loopback_means_this_machine_and_nothing_else() -> None:
    for url in (
        "http://127.0.0.1:4566",
        "http://localhost:8000",
        "http://[::1]:4566",
        "tls://127.0.0.5:4222",
    ):
        assert is_loopback(url), url
    for url in (
        "https://dynamodb.ap-south-1.amazonaws.com",
        "http://10.0.0.4:4566",
        "http://host.docker.internal",
    ):
        assert not is_loopback(url), url


def test_without_flags_or_variables_the_running_local_cloud_is_the_target(tmp_path: Path) -> None:
    running = _running_cloud(tmp_path / "running")

    target = resolve_target(state_dir=running)

    assert (target.kind, target.endpoint_url, target.is_local) == ("local cloud", EDGE, True)
    assert target.describe() == f"local cloud at {EDGE} (state {running.resolve()})"
    client = target.client("stepfunctions")
    assert (client.meta.endpoint_url, client.meta.region_name) == (EDGE, "us-east-1")
    assert target.resource("HealthFunction") == "vaultpay-HealthFunction"


def test_without_a_local_cloud_the_target_is_aws_with_boto3s_own_configuration(tmp_path: Path) -> None:
    target = resolve_target(state_dir=tmp_path / "idle")

    assert (target.kind, target.is_local) == ("AWS", False)
    assert target.client("stepfunctions").meta.endpoint_url == "https://states.eu-west-1.amazonaws.com"


def test_the_environment_wins_over_the_local_cloud_and_a_flag_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    running = _running_cloud(tmp_path / "running")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4567")

    by_variable = resolve_target(state_dir=running)
    assert (by_variable.kind, by_variable.endpoint_url, by_variable.chosen_by) == (
        "endpoint", "http://127.0.0.1:4567", "AWS_ENDPOINT_URL"
    )  # fmt: skip
    assert by_variable.is_local  # loopback: an emulator on this machine
    by_flag = resolve_target(endpoint_url="https://localstack.example:4566", state_dir=running)
    assert (by_flag.endpoint_url, by_flag.chosen_by, by_flag.is_local) == (
        "https://localstack.example:4566", "--endpoint-url", False
    )  # fmt: skip
    # A profile or region flag means AWS, over the variable's endpoint and the running cloud
    assert resolve_target(profile="ops", state_dir=running).kind == "AWS"
    by_region = resolve_target(region="ap-south-1", state_dir=running)
    assert (by_region.kind, by_region.chosen_by) == ("AWS", "--region")
    assert by_region.client("dynamodb").meta.region_name == "ap-south-1"


def test_aws_profile_or_region_in_the_environment_means_aws_over_the_local_cloud(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    running = _running_cloud(tmp_path / "running")
    monkeypatch.setenv("AWS_PROFILE", "ops")
    monkeypatch.delenv("AWS_DEFAULT_REGION")  # botocore prefers it to the profile's region

    target = resolve_target(state_dir=running)

    assert (target.kind, target.profile, target.chosen_by) == ("AWS", "ops", "AWS_PROFILE")
    assert target.client("dynamodb").meta.region_name == "ap-south-1"  # the profile's region
    monkeypatch.delenv("AWS_PROFILE")
    monkeypatch.setenv("AWS_REGION", "ap-south-2")
    assert resolve_target(state_dir=running).region == "ap-south-2"


def test_an_endpoint_that_is_the_running_clouds_edge_is_the_local_cloud(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    running = _running_cloud(tmp_path / "running")
    monkeypatch.setenv("AWS_ENDPOINT_URL", EDGE + "/")

    target = resolve_target(state_dir=running)

    assert (target.kind, target.chosen_by, target.state is not None) == (
        "local cloud",
        "AWS_ENDPOINT_URL",
        True,
    )


def test_the_stack_comes_from_the_flag_else_vaultpay_stack_and_never_picks_the_target(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    running = _running_cloud(tmp_path / "running")
    monkeypatch.setenv("VAULTPAY_STACK", "vaultpay-dev")

    assert resolve_target(state_dir=running).stack == "vaultpay-dev"
    on_cloud = resolve_target(stack="other", state_dir=running)
    assert (on_cloud.kind, on_cloud.stack) == ("local cloud", "other")
    # The local cloud's resources are `<stack>-<LogicalId>`: another stack's function is not this one's
    assert on_cloud.resource("HealthFunction") is None
    assert (
        resolve_target(stack="vaultpay", state_dir=running).resource("HealthFunction")
        == "vaultpay-HealthFunction"
    )


def test_a_local_client_keeps_its_edge_whatever_aws_endpoint_url_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # localstack-client's session would take AWS_ENDPOINT_URL over the edge it is given
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")

    client = local_client("dynamodb", EDGE)

    assert (client.meta.endpoint_url, client.meta.region_name) == (EDGE, "us-east-1")
    assert client._request_signer._credentials.access_key == "test"
    assert client.meta.config.retries["total_max_attempts"] == 4  # three retries
    assert (
        local_client("lambda", EDGE).meta.config.retries["total_max_attempts"] == 1
    )  # invokes never retried


def test_a_write_to_this_machine_is_announced_and_needs_no_confirmation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = resolve_target(state_dir=_running_cloud(tmp_path / "running"))

    target.confirm_write("replay dead letter 3", yes=False)

    assert capsys.readouterr().err.startswith(f"target: local cloud at {EDGE}")


def test_a_write_off_this_machine_without_a_terminal_or_yes_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = resolve_target(endpoint_url="https://localstack.example:4566", state_dir=tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))

    with pytest.raises(typer.Exit) as refused:
        target.confirm_write("replay the audit log", yes=False)

    assert refused.value.exit_code == 2
    err = capsys.readouterr().err
    assert "target: endpoint https://localstack.example:4566 (--endpoint-url)" in err
    assert "Refusing to replay the audit log" in err and "--yes" in err
    target.confirm_write("replay the audit log", yes=True)  # the script said it means it


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_write_off_this_machine_asks_on_a_terminal_and_no_means_nothing_done(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = resolve_target(endpoint_url="https://localstack.example:4566", state_dir=tmp_path)
    monkeypatch.setattr("sys.stdin", _Terminal("n\n"))

    with pytest.raises(typer.Exit) as declined:
        target.confirm_write("replay the audit log", yes=False)

    assert declined.value.exit_code == 1
    assert "Replay the audit log on endpoint https://localstack.example:4566" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", _Terminal("y\n"))
    target.confirm_write("replay the audit log", yes=False)


def test_resources_are_named_after_their_logical_ids() -> None:
    assert targets.named_after("vaultpay-CreateAdminFunction", "CreateAdminFunction")
    assert targets.named_after("vaultpay-dev-CreateAdminFunction-AbC123", "CreateAdminFunction")
    assert not targets.named_after("vaultpay-CreateAdminFunctionLogGroup", "CreateAdminFunction")


def test_a_nats_write_off_this_machine_is_refused_without_yes_before_connecting() -> None:
    from typer.testing import CliRunner

    from vaultpay_cli.main import app

    done = CliRunner().invoke(app, ["ops", "dlq", "replay", "3", "--nats-url", "tls://nats.example:4222"])

    assert done.exit_code == 2
    assert done.stderr.startswith("target: NATS tls://nats.example:4222\n")
    assert "Refusing to replay dead letter 3 on NATS tls://nats.example:4222" in done.stderr


def test_two_local_stacks_namesakes_are_never_a_guess(tmp_path: Path) -> None:
    running = _running_cloud(tmp_path / "running")
    state = json.loads((running / "state.json").read_text())
    state["functions"]["fixtures-HealthFunction"] = {"logical_id": "HealthFunction"}
    (running / "state.json").write_text(json.dumps(state))

    target = resolve_target(state_dir=running)

    assert target.resource("HealthFunction") is None
    with pytest.raises(typer.Exit) as ambiguous:
        target.function_name("HealthFunction")
    assert ambiguous.value.exit_code == 2
    assert resolve_target(stack="fixtures", state_dir=running).function_name("HealthFunction") == (
        "fixtures-HealthFunction"
    )


def test_a_local_client_takes_an_https_or_ipv6_edge_as_given() -> None:
    assert local_client("sqs", "https://127.0.0.1:4566").meta.endpoint_url == "https://127.0.0.1:4566"
    assert local_client("sqs", "http://[::1]:4566").meta.endpoint_url == "http://[::1]:4566"


def test_an_invoke_lambda_throttled_is_tried_again_and_no_other_failure_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A throttled invoke never ran the function (reserved concurrency: a scheduled checkpoint may be
    running), so only it is safe to try again; any other error is the caller's to judge."""
    from botocore.exceptions import ClientError

    target = targets
    monkeypatch.setattr("time.sleep", lambda seconds: None)

    def error(code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "m"}}, "Invoke")

    class Lambda:
        def __init__(self, *outcomes: Any) -> None:
            self.outcomes, self.calls = list(outcomes), 0

        def invoke(self, **request: Any) -> Any:
            self.calls += 1
            outcome = self.outcomes.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

    throttled_twice = Lambda(error("TooManyRequestsException"), error("TooManyRequestsException"), {"ok": 1})
    assert target.invoke_when_not_throttled(throttled_twice, FunctionName="f") == {"ok": 1}
    assert throttled_twice.calls == 3
    failed = Lambda(error("ServiceException"), {"ok": 1})
    with pytest.raises(ClientError):
        target.invoke_when_not_throttled(failed, FunctionName="f")
    assert failed.calls == 1
    always = Lambda(*[error("TooManyRequestsException")] * target.THROTTLED_INVOKE_ATTEMPTS)
    with pytest.raises(ClientError):
        target.invoke_when_not_throttled(always, FunctionName="f")
    assert always.calls == target.THROTTLED_INVOKE_ATTEMPTS

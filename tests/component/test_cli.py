"""The `vaultpay` command against a running local cloud: `invoke` (Docker-free sam local invoke), `status`,
`down`, `--version`, `admin create-user`, `smoke`, `local env-vars`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.component
ROOT = Path(__file__).resolve().parents[2]


# What would send a command somewhere else than the running local cloud (vaultpay_cli.target's rule).
TARGET_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_REGION", "VAULTPAY_STACK")


def _vaultpay(cloud: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in TARGET_VARIABLES}
    env["VAULTPAY_STATE_DIR"] = str(cloud.state_dir)
    return subprocess.run(
        [sys.executable, "-m", "vaultpay_cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_invoke_runs_a_function_by_logical_id_with_a_sample_event(local_cloud: Any) -> None:
    done = _vaultpay(local_cloud, "invoke", "HealthFunction", "-e", "events/ops/health.json")

    assert done.returncode == 0, done.stderr
    response = json.loads(done.stdout)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["status"] == "ok"
    # Like `sam local invoke`: the function's log on stderr, the response on stdout.
    assert "START RequestId:" in done.stderr
    assert "REPORT RequestId:" in done.stderr


def test_invoke_exits_non_zero_when_the_function_fails(local_cloud: Any) -> None:
    done = _vaultpay(local_cloud, "invoke", "BoomFunction", "-e", "tests/fixtures/localcloud/boom-event.json")
    assert done.returncode == 1
    assert json.loads(done.stdout)["errorType"] == "PaymentRejected"


def test_invoke_names_the_deployed_functions_when_asked_for_an_unknown_one(local_cloud: Any) -> None:
    done = _vaultpay(local_cloud, "invoke", "NoSuchFunction")
    assert done.returncode == 2
    assert "HealthFunction" in done.stderr


def test_status_lists_every_piece_as_up(local_cloud: Any) -> None:
    done = _vaultpay(local_cloud, "local", "status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    # The tests' cloud runs NATS as a three-node cluster (tests/conftest.py): one process per node,
    # and the report names the VAULTPAY stream's leader and its replicas.
    nodes = {f"nats-{i}": True for i in (1, 2, 3)}
    assert status["services"] == {"dynamodb": True, "moto": True, **nodes}
    assert any(s["name"] == "vaultpay-local" for s in status["stacks"])
    nats = status["nats"]
    assert nats["cluster"] == "vaultpay-local" and nats["nodes_up"] == 3
    assert nats["stream_leader"] in {node["name"] for node in nats["nodes"]}
    assert nats["replicas"] == 3


def test_status_shows_the_nats_cluster(local_cloud: Any) -> None:
    done = _vaultpay(local_cloud, "local", "status")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "NATS cluster vaultpay-local: 3/3 nodes up, stream VAULTPAY leader vaultpay-local-" in text


def test_status_says_so_when_no_cloud_is_running(tmp_path: Path) -> None:
    env = {**os.environ, "VAULTPAY_STATE_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "vaultpay_cli.main", "local", "status"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 1
    assert "not running" in done.stdout


def test_version_prints_the_projects_version() -> None:
    import tomllib

    done = subprocess.run(
        [sys.executable, "-m", "vaultpay_cli.main", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert done.stdout == f"vaultpay {version}\n"


def test_down_stops_a_running_local_cloud_and_waits_for_it_to_exit(tmp_path: Path) -> None:
    from support.cloud import CloudProcess

    # Given a `vaultpay local up` of its own (the local cloud's small test template: ready in seconds)
    cloud = CloudProcess(
        tmp_path / "state", "--in-memory", "--template", str(ROOT / "tests/fixtures/localcloud/template.yaml")
    )
    state = cloud.start(timeout_s=60)
    try:
        # When the operator runs `local down` against its state dir
        done = subprocess.run(
            [sys.executable, "-m", "vaultpay_cli.main", "local", "down", "--state-dir", str(cloud.state_dir)],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        # Then it says what it stopped, the process has exited cleanly and its state file is gone
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"Stopped the local cloud (pid {state['pid']}" in done.stdout
        assert cloud.proc is not None and cloud.proc.wait(10) == 0, cloud.log_tail()
        assert not (cloud.state_dir / "state.json").exists()
        assert "Stopped." in cloud.log_tail()
    finally:
        cloud.kill()


def test_down_exits_non_zero_when_no_cloud_is_running(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vaultpay_cli.main", "local", "down", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "No local cloud is running" in done.stderr
    assert "nothing to stop" in done.stderr


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times come from /proc")
def test_down_leaves_alone_a_process_that_took_a_dead_clouds_pid(tmp_path: Path) -> None:
    import time

    # Given a state file left by a cloud that died an hour ago, whose pid now belongs to another process
    other = subprocess.Popen(["sleep", "60"])
    try:
        state = {"pid": other.pid, "started_at": time.time() - 3600, "endpoints": {}, "functions": {}}
        (tmp_path / "state.json").write_text(json.dumps(state))
        # When the operator runs `local down`
        done = subprocess.run(
            [sys.executable, "-m", "vaultpay_cli.main", "local", "down", "--state-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        # Then nothing is stopped: the process is not the cloud
        assert done.returncode == 1
        assert "nothing to stop" in done.stderr
        assert other.poll() is None
    finally:
        other.kill()
        other.wait(10)


def test_admin_create_user_makes_an_admin_who_can_reach_admin_routes(local_cloud: Any) -> None:
    import urllib.request
    import uuid

    import pyotp

    email = f"ops.{uuid.uuid4().hex[:8]}@vaultpay.dev"
    password = "an operator's long password"
    done = _vaultpay(
        local_cloud, "admin", "create-user", "--email", email, "--password", password,
        "--full-name", "Ops Admin", "--phone", "+919812345678",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created["role"] == "admin"
    assert created["mfa"]["otpauth_uri"].startswith("otpauth://totp/")

    def post(path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        req = urllib.request.Request(
            local_cloud.api + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "X-Device-Id": "ops-laptop", **(headers or {})},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    challenge = post("/v1/auth/login", {"email": email, "password": password})
    code = pyotp.TOTP(created["mfa"]["secret"]).now()
    tokens = post("/v1/auth/mfa/verify", {"challenge_id": challenge["challenge_id"], "code": code})
    req = urllib.request.Request(
        local_cloud.api + "/v1/admin/audit/verify",
        headers={"Authorization": f"Bearer {tokens['access_token']}", "X-Device-Id": "ops-laptop"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
        assert json.loads(resp.read())["ok"] is True


def test_admin_create_user_refuses_a_short_password(local_cloud: Any) -> None:
    done = _vaultpay(
        local_cloud, "admin", "create-user", "--email", "short@vaultpay.dev", "--password", "short",
        "--full-name", "X", "--phone", "+919812345678",
    )  # fmt: skip
    assert done.returncode == 1
    assert "short" not in done.stderr.replace("short@vaultpay.dev", "")  # the password is never echoed


def test_ops_commands_reach_the_running_clouds_nats_and_audit_table(local_cloud: Any) -> None:
    dlq = _vaultpay(local_cloud, "ops", "dlq", "list")
    assert dlq.returncode == 0, dlq.stderr
    verify = _vaultpay(local_cloud, "ops", "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "OK" in verify.stdout
    # Each names its target on stderr first, so stdout stays the command's own output
    assert verify.stderr.startswith(f"target: local cloud at {local_cloud.edge}")


def test_ops_audit_checkpoint_signs_the_head_and_verify_checks_every_checkpoint(local_cloud: Any) -> None:
    # When the operator forces a checkpoint (what the hourly schedule does)
    done = _vaultpay(local_cloud, "ops", "audit", "checkpoint", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    body = json.loads(done.stdout)
    assert body["verified"]["ok"] is True, body
    # Then the head is signed and stored (or was already, by an earlier run of the same head)
    assert body["checkpoint"] is None or body["checkpoint"]["seq"] == body["verified"]["head_seq"]
    # And verify (the CLI and the admin route alike) goes through the stored checkpoints
    verify = _vaultpay(local_cloud, "ops", "audit", "verify", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    verified = json.loads(verify.stdout)
    assert verified["ok"] is True and verified["checkpoints_checked"] >= 1, verified


def test_smoke_passes_every_step_against_the_running_stack(local_cloud: Any) -> None:
    done = _vaultpay(local_cloud, "smoke", "--api", local_cloud.api)

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[1] for line in lines[:4]] == ["health", "register", "login", "read"]
    assert all(line.startswith("ok") for line in lines[:4]), done.stdout
    assert "passed (4 steps)" in done.stdout


def test_smoke_json_is_one_document_naming_each_step(local_cloud: Any) -> None:
    done = _vaultpay(local_cloud, "smoke", "--api", local_cloud.api, "--json")

    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["failed_step"] is None
    assert [step["step"] for step in report["steps"]] == ["health", "register", "login", "read"]


def test_local_env_vars_writes_a_sam_env_vars_file_of_every_function(
    local_cloud: Any, tmp_path: Path
) -> None:
    # Given the test cloud runs two templates, both with an AuthorizerFunction
    stack = local_cloud.function_name("HealthFunction").removesuffix("-HealthFunction")
    both = _vaultpay(local_cloud, "local", "env-vars")
    assert both.returncode == 2 and "--stack" in both.stderr
    # When the developer writes the file of the project's stack for SAM's containers
    done = _vaultpay(local_cloud, "local", "env-vars", "--stack", stack)
    assert done.returncode == 0, done.stderr
    env = json.loads(done.stdout)

    # Then every function of the stack has its resolved environment under its logical id
    functions = local_cloud.state["functions"]
    mine = {info["logical_id"] for name, info in functions.items() if name == f"{stack}-{info['logical_id']}"}
    assert set(env) == mine and "CreateAdminFunction" in mine
    edge_port = local_cloud.edge.rsplit(":", 1)[1]
    health = env["HealthFunction"]
    assert health["AWS_ENDPOINT_URL"] == f"http://host.docker.internal:{edge_port}"
    # And every URL naming this machine points at the host as a container sees it, NATS nodes included
    nats_ports = [url.rsplit(":", 1)[1] for url in local_cloud.nats]
    assert health["NATS_URL"].split(",") == [f"tls://host.docker.internal:{port}" for port in nats_ports]
    assert not any(
        "127.0.0.1" in value or "localhost" in value for fn in env.values() for value in fn.values()
    )
    assert health["POWERTOOLS_SERVICE_NAME"]  # the template's own variables, resolved
    # And --out / --host write the same document with another host
    out = tmp_path / "env.json"
    written = _vaultpay(
        local_cloud, "local", "env-vars", "--stack", stack, "--out", str(out), "--host", "172.17.0.1"
    )
    assert written.returncode == 0, written.stderr
    assert (
        json.loads(out.read_text())["HealthFunction"]["AWS_ENDPOINT_URL"] == f"http://172.17.0.1:{edge_port}"
    )


def test_sam_local_invoke_with_the_env_vars_file_sends_every_function_to_the_local_cloud(
    local_cloud: Any,
) -> None:
    # Given the env-vars file of the project's stack
    stack = local_cloud.function_name("HealthFunction").removesuffix("-HealthFunction")
    done = _vaultpay(local_cloud, "local", "env-vars", "--stack", stack)
    assert done.returncode == 0, done.stderr
    env_vars = json.loads(done.stdout)

    # When SAM CLI resolves each function's container environment from the template and that file, as
    # `sam local invoke <Function> --env-vars env.json` does (it applies only variables the template declares)
    from samcli.lib.providers.sam_function_provider import SamFunctionProvider
    from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider
    from samcli.local.lambdafn.env_vars import EnvironmentVariables

    stacks, _ = SamLocalStackProvider.get_stacks(str(ROOT / "template.yaml"), parameter_overrides={})
    provider = SamFunctionProvider(stacks)
    edge_port = local_cloud.edge.rsplit(":", 1)[1]
    for logical_id, overrides in env_vars.items():
        function = provider.get(logical_id)
        assert function is not None, logical_id
        declared = (function.environment or {}).get("Variables") or {}
        resolved = EnvironmentVariables(
            logical_id,
            512,
            10,
            "app.handler",
            variables=declared,
            shell_env_values={},
            override_values=overrides,
        ).resolve()

        # Then each reaches the local cloud's edge and NATS, never AWS
        assert resolved["AWS_ENDPOINT_URL"] == f"http://host.docker.internal:{edge_port}", logical_id
        assert (
            resolved["NATS_URL"] == overrides["NATS_URL"] and "host.docker.internal" in resolved["NATS_URL"]
        )
        # And every variable the template declares has the local cloud's value (tables, ARNs, the CA)
        assert {name: resolved[name] for name in declared} == {name: overrides[name] for name in declared}

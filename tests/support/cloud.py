"""A local cloud run as `vaultpay local up` in a child process, on free ports: the tests' cloud, started and
stopped the way a developer does (SIGTERM is Ctrl-C)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
REVIEW_TIMEOUT_S = 15
# Test schedules use rate(1 minute); the test cloud runs them 60 times faster.
TIME_SCALE = 60


class RunningCloud:
    """Endpoints of a local cloud started for the tests, and boto3 clients against its edge."""

    def __init__(self, state: dict[str, Any], state_dir: Path) -> None:
        self.state = state
        self.state_dir = state_dir
        self.edge = state["endpoints"]["edge"]
        self.api = state["endpoints"]["api"]
        self.apis: dict[str, str] = state["endpoints"]["apis"]
        # Every NATS node's URL (one for a single server, three for --nats-cluster 3).
        self.nats: list[str] = state["endpoints"]["nats"].split(",")

    def nats_login(self, role: str = "operator") -> dict[str, Any]:
        """`nats.connect` options to log in to this cloud's NATS as `role` (TLS; localcloud.nats_security)."""
        from localcloud.nats_security import NatsSecurity

        return NatsSecurity(self.state_dir).client_options(role)

    def client(self, service: str) -> Any:
        """A client on the edge, made as the CLI makes one (localstack-client); botocore's default retries
        and timeouts, as a function's own client has."""
        from botocore.config import Config

        from vaultpay_cli.target import local_client

        return local_client(service, self.edge, config=Config())

    def resource(self, service: str) -> Any:
        from vaultpay_cli.target import local_resource

        return local_resource(service, self.edge)

    def function_name(self, logical_id: str) -> str:
        for name, info in self.state["functions"].items():
            if info["logical_id"] == logical_id:
                return str(name)
        raise KeyError(logical_id)

    def api_url(self, logical_id: str) -> str:
        return next(url for key, url in self.apis.items() if key.endswith("/" + logical_id))


# Paise (10^11: a thousand crore rupees). template.yaml's default, 10^7, is what a stage gets.
DEPOSIT_APPROVAL_THRESHOLD = 10**11


class CloudProcess:
    """`vaultpay local up` with the given extra arguments in `state_dir`; start() returns its state.json."""

    def __init__(self, state_dir: Path, *args: str) -> None:
        self.state_dir = state_dir
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.state_dir.parent / f"{self.state_dir.name}-up.log"

    def start(self, timeout_s: float = 180) -> dict[str, Any]:
        """Starts it and waits for Ready; fails the test with the log's tail when it does not get there."""
        state = self.start_until_ready_or_exit(timeout_s)
        if state is None:
            self.kill()
            pytest.fail("the local cloud did not start:\n" + self.log_tail())
        return state

    def start_until_ready_or_exit(self, timeout_s: float = 180) -> dict[str, Any] | None:
        """Its state once Ready, or None when the process exited first (see `exit_code`, `log_tail`)."""
        argv = [
            sys.executable, "-m", "vaultpay_cli.main", "local", "up",
            "--edge-port", "0", "--api-port", "0", "--nats-port", "0", "--nats-monitor-port", "0",
            "--time-scale", str(TIME_SCALE), "--state-dir", str(self.state_dir),
            # A review nobody decides declines after this long (the e2e test of that path waits for it).
            "--parameter", f"ReviewTimeoutSeconds={REVIEW_TIMEOUT_S}",
            # Tests fund accounts with one admin's deposit; the four-eyes tests deposit above this.
            "--parameter", f"DepositApprovalThreshold={DEPOSIT_APPROVAL_THRESHOLD}",
            # Webhooks may reach a test receiver on 127.0.0.1, and retry on the cloud's time scale.
            "--parameter", "WebhookAllowLoopback=true", "--parameter", f"WebhookTimeScale={TIME_SCALE}",
            *self.args,
        ]  # fmt: skip
        self.starts += 1
        with self.log_path.open("a") as log:
            log.write(f"\n===== start {self.starts} =====\n")
            log.flush()
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ}
            )
        deadline = time.monotonic() + timeout_s
        state_file = self.state_dir / "state.json"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return None
            try:
                state: dict[str, Any] = json.loads(state_file.read_text())
                if state.get("ready") and state.get("pid") == self.proc.pid:
                    return state
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        return None

    @property
    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text()[-chars:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 120) -> None:
        """SIGTERM (what Ctrl-C does) and wait for the stop, which saves the state."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

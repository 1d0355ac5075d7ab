"""A local cloud that is stopped and started again keeps its customers, keys, executions and stream positions.

The cloud here is its own (not the session's, which runs --in-memory): persistent, in a state dir of this
module, stopped with SIGTERM as Ctrl-C does, with JetStream's de-duplication window cut to 1 s so that a
stream replayed after a restart would show as event ids stored twice instead of hiding behind the 5-minute
window.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from support.bank import ADMIN_PASSWORD, PASSWORD, create_admin, idempotency_key
from support.cloud import ROOT, CloudProcess, RunningCloud
from support.http import ApiClient

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

TERMINAL = {"COMPLETED", "DECLINED", "FAILED"}
DUPLICATE_WINDOW_S = 1.0


class Restartable:
    """The module's cloud: `restart()` stops it as Ctrl-C does and starts it on the same state dir."""

    def __init__(self, state_dir: Path) -> None:
        self.process = CloudProcess(state_dir, "--nats-duplicate-window", str(DUPLICATE_WINDOW_S))
        self.running: RunningCloud | None = None
        self._addresses = iter(f"127.1.{a}.{b}" for a in range(1, 200) for b in range(2, 250))

    def start(self) -> None:
        self.running = RunningCloud(self.process.start(), self.process.state_dir)

    def restart(self) -> None:
        self.process.stop()
        self.start()

    @property
    def now(self) -> RunningCloud:
        assert self.running is not None, "start() first"
        return self.running

    def api(self, device_id: str) -> ApiClient:
        return ApiClient(self.now.api, next(self._addresses), device_id)

    def vaultpay(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The operator's CLI against this cloud (its state dir; the AWS endpoint of its edge)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            VAULTPAY_STATE_DIR=str(self.process.state_dir),
            AWS_ENDPOINT_URL=self.now.edge,
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            AWS_DEFAULT_REGION="us-east-1",
            COLUMNS="200",
        )
        return subprocess.run(
            [sys.executable, "-m", "vaultpay_cli.main", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=120,
            check=False,
        )


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restartable]:
    running = Restartable(tmp_path_factory.mktemp("restart-cloud"))
    running.start()
    try:
        yield running
    finally:
        running.process.stop()


class Person:
    """A customer (or admin) whose credentials outlive every session: e-mail, password, TOTP secret."""

    def __init__(self, email: str, password: str, totp_secret: str, device_id: str) -> None:
        self.email, self.password, self.totp, self.device_id = email, password, totp_secret, device_id
        self._used_steps: set[int] = set()

    def code(self) -> str:
        """A TOTP code of a 30-second step not used yet (a code is accepted once per step)."""
        while int(time.time()) // 30 in self._used_steps:
            time.sleep(0.5)
        step = int(time.time()) // 30
        self._used_steps.add(step)
        return pyotp.TOTP(self.totp).at(step * 30)

    def sign_in(self, cloud: Restartable) -> ApiClient:
        client = cloud.api(self.device_id)
        started = client.post("/v1/auth/login", {"email": self.email, "password": self.password}, token=None)
        assert started.status == 200, started.body
        answer = {"challenge_id": started.body["challenge_id"], "code": self.code()}
        tokens = client.post("/v1/auth/mfa/verify", answer, token=None)
        assert tokens.status == 200, tokens.body
        client.token = tokens.body["access_token"]
        return client


def _register(cloud: Restartable, name: str) -> Person:
    email = f"{name}.{uuid.uuid4().hex[:8]}@example.com"
    reply = cloud.api("restart-phone").post(
        "/v1/auth/register",
        {"email": email, "password": PASSWORD, "full_name": name.title(), "phone": "+919876543210"},
        token=None,
    )
    assert reply.status == 201, reply.body
    return Person(email, PASSWORD, reply.body["mfa"]["secret"], "restart-phone")


def _admin(cloud: Restartable) -> Person:
    email, secret = create_admin(cloud.now)  # the operator's way, CreateAdminFunction
    return Person(email, ADMIN_PASSWORD, secret, "treasury-laptop")


def _open_account(client: ApiClient) -> dict[str, Any]:
    reply = client.post("/v1/accounts", {"type": "SAVINGS", "currency": "INR"}, headers=idempotency_key())
    assert reply.status == 201, reply.body
    return dict(reply.body)


def _transfer(client: ApiClient, source_id: str, destination_number: str, amount: int) -> dict[str, Any]:
    body = {
        "source_account_id": source_id,
        "destination_account_number": destination_number,
        "amount": amount,
        "currency": "INR",
    }
    reply = client.post("/v1/transfers", body, headers=idempotency_key())
    assert reply.status == 202, reply.body
    deadline = time.monotonic() + 90
    while True:
        got = client.get(f"/v1/transfers/{reply.body['transfer_id']}")
        assert got.status == 200, got.body
        if got.body["status"] in TERMINAL:
            return dict(got.body)
        assert time.monotonic() < deadline, got.body
        time.sleep(0.25)


def _stream_event_ids(cloud: RunningCloud) -> list[str]:
    """Every message's Nats-Msg-Id (the event id) in stream VAULTPAY, in stream order."""
    import nats

    async def read() -> list[str]:
        nc = await nats.connect(cloud.nats, **cloud.nats_login())
        try:
            js = nc.jetstream()
            info = await js.stream_info("VAULTPAY")
            ids = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg("VAULTPAY", seq)
                ids.append((msg.headers or {}).get("Nats-Msg-Id", f"<no id at {seq}>"))
            return ids
        finally:
            await nc.close()

    return asyncio.run(read())


def _settle(seconds: float) -> None:
    """Give the stream pollers and the schedules time to do whatever a restart would make them do."""
    time.sleep(seconds)


def test_customers_money_executions_and_stream_positions_survive_restarts(cloud: Restartable) -> None:
    # Given a customer with a funded account who sent money to another customer's account
    asha, ravi, treasurer = _register(cloud, "asha"), _register(cloud, "ravi"), _admin(cloud)
    asha_client, ravi_client, admin = asha.sign_in(cloud), ravi.sign_in(cloud), treasurer.sign_in(cloud)
    source, payee = _open_account(asha_client), _open_account(ravi_client)
    funded = admin.post(
        "/v1/admin/deposits",
        {"account_id": source["account_id"], "amount": 50_000_00, "currency": "INR", "reference": "NEFT"},
        headers=idempotency_key(),
    )
    assert funded.status == 201, funded.body
    first = _transfer(asha_client, source["account_id"], payee["account_number"], 1_000_00)
    assert first["status"] == "COMPLETED", first
    before = _stream_event_ids(cloud.now)
    assert len(before) >= 10, before  # registrations, logins, accounts, deposit, a transfer...
    # ... and another transfer still in flight when the cloud is stopped (the stop waits for its saga)
    body = {
        "source_account_id": source["account_id"],
        "destination_account_number": payee["account_number"],
        "amount": 500_00,
        "currency": "INR",
    }
    in_flight = asha_client.post("/v1/transfers", body, headers=idempotency_key())
    assert in_flight.status == 202, in_flight.body

    # When the local cloud is stopped (Ctrl-C) and started again on the same state, later than JetStream's
    # de-duplication window (so a stream replayed from the start would store every event id twice)
    time.sleep(DUPLICATE_WINDOW_S * 2)
    cloud.restart()
    _settle(4)  # the stream pollers and the schedules run as they would after any restart

    # Then the customer signs in with the same password and TOTP secret, and sees her money
    asha_client = asha.sign_in(cloud)
    account = asha_client.get(f"/v1/accounts/{source['account_id']}")
    assert account.status == 200, account.body
    assert account.body["account_number"] == source["account_number"]  # decrypted with the same key
    assert account.body["balance"] == {"ledger": 48_500_00, "available": 48_500_00}, account.body
    statement = asha_client.get(f"/v1/accounts/{source['account_id']}/statement")
    assert statement.status == 200, statement.body
    lines = statement.body["items"]
    assert {(line["transfer_id"], line["kind"]) for line in lines} >= {(first["transfer_id"], "DEBIT")}, lines
    assert lines[0]["balance_after"] == 48_500_00, lines
    # ... and the transfer in flight at the stop completed, its saga with it
    landed = asha_client.get(f"/v1/transfers/{in_flight.body['transfer_id']}")
    assert landed.body["status"] == "COMPLETED", landed.body
    saga = cloud.vaultpay("ops", "execution", in_flight.body["transfer_id"], "--json")
    assert json.loads(saga.stdout)["status"] == "SUCCEEDED", saga.stdout + saga.stderr
    # ... and she sends money to the account number she used before the restart (its blind index matches)
    second = _transfer(asha_client, source["account_id"], payee["account_number"], 2_000_00)
    assert second["status"] == "COMPLETED", second
    ravi_client = ravi.sign_in(cloud)
    payee_now = ravi_client.get(f"/v1/accounts/{payee['account_id']}")
    assert payee_now.body["balance"]["ledger"] == 3_500_00, payee_now.body

    # And the transfer made before the restart still has its Step Functions execution and history
    history = cloud.vaultpay("ops", "execution", first["transfer_id"], "--json")
    assert history.returncode == 0, history.stdout + history.stderr
    execution = json.loads(history.stdout)
    assert execution["status"] == "SUCCEEDED", execution
    assert execution["events"][0]["event"] == "ExecutionStarted"
    assert execution["events"][-1]["event"] == "ExecutionSucceeded"
    assert any(e["state"] == "SettleTransfer" for e in execution["events"])

    # And the books and the audit chain are whole
    reconcile = cloud.vaultpay("ops", "reconcile", "--json")
    assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr
    _settle(3)  # the audit consumer runs every second at the test time scale
    verify = cloud.vaultpay("ops", "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # And after the restart and all of the above no event is in the stream twice (the stream pollers and the
    # sweeper ran after the restart, past the de-duplication window), and the stream kept its order
    after = _stream_event_ids(cloud.now)
    twice = {event_id: n for event_id, n in Counter(after).items() if n > 1}
    assert twice == {}, f"{len(twice)} event ids stored more than once after restarts: {list(twice)[:5]}"
    assert after[: len(before)] == before

    # And the stream checkpoints of every event-source mapping are kept in the state dir
    checkpoints = sorted(p.name for p in (cloud.process.state_dir / "streams").glob("*.json"))
    assert any("OutboxRelayMapping" in name or "Relay" in name for name in checkpoints), checkpoints


def test_status_reports_the_restored_state(cloud: Restartable) -> None:
    status = cloud.vaultpay("local", "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    state = json.loads(status.stdout)["state"]
    assert state["persisted"] is True
    assert state["restored"] is True
    assert len(state["generation"]) == 32


def test_a_start_refuses_data_whose_keys_are_gone_and_says_fresh_starts_over(cloud: Restartable) -> None:
    # Given the saved KMS / Secrets Manager state is lost while the DynamoDB data stays
    cloud.process.stop()
    snapshot = cloud.process.state_dir / "moto" / "snapshot.pickle"
    kept = snapshot.with_name("kept.pickle")
    snapshot.rename(kept)
    try:
        # When the cloud starts on it
        state = cloud.process.start_until_ready_or_exit(timeout_s=120)
        # Then it never reports Ready: it exits, naming what is inconsistent and how to start over
        assert state is None, "the local cloud reported Ready on data it cannot read"
        assert cloud.process.exit_code == 1
        log = " ".join(cloud.process.log_tail().split())  # the console wraps its lines
        assert "holds DynamoDB data, but there is no saved KMS" in log, log
        assert "--fresh" in log, log
    finally:
        kept.rename(snapshot)

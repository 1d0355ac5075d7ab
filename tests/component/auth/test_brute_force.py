"""Brute force under concurrency, on DynamoDB's engine: failure budgets hold however many arrive at once.

Before the budgets were reserved atomically (`check` before the attempt, `hit` only after a failure), all 50
wrong passwords sent at once for one account were evaluated, and so were 50 wrong codes spread over a
user's challenges. Each attempt is now counted by one conditional write before it is evaluated.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pyotp
import pytest

from vaultpay.auth.service import AuthService, NewUser
from vaultpay.shared.errors import VaultPayError

pytestmark = [pytest.mark.component, pytest.mark.dynamodb_local]

PASSWORD = "correct horse battery staple"
DEVICE = "device-4f1c2a"
ATTEMPTS = 50


def _at_once(calls: list[Callable[[], Any]]) -> Counter[str]:
    """Runs the calls in threads released together; counts the error codes ("ok" for a success)."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[str] = ["missing"] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            call()
            outcomes[index] = "ok"
        except VaultPayError as exc:
            outcomes[index] = exc.code

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return Counter(outcomes)


def _customer(service: AuthService) -> tuple[str, str]:
    enrolment = service.register(
        NewUser(email="asha@example.com", password=PASSWORD, full_name="Asha", phone="+919876543210"),
        correlation_id="c-1",
    )
    return enrolment.email, enrolment.totp_secret


def _wrong_code(secret: str) -> str:
    right = pyotp.TOTP(secret).now()
    return f"{(int(right) + 500_000) % 1_000_000:06d}"


class Evaluations:
    """How many passwords and TOTP codes the service really checked (what a guesser gets out of it)."""

    def __init__(self) -> None:
        self.passwords = 0
        self.codes = 0
        self._lock = threading.Lock()

    def count(self, kind: str) -> None:
        with self._lock:
            setattr(self, kind, getattr(self, kind) + 1)


def _slow(service: AuthService, monkeypatch: pytest.MonkeyPatch, seen: Evaluations) -> AuthService:
    """Password and code checks that take as long as they do on Lambda (Argon2id ~0.2 s; KMS + TOTP), so the
    race between counting and evaluating is as wide as there, and counted in `seen`."""
    import vaultpay.auth.service as module

    passwords = service._passwords  # the test slows the real collaborator down
    originals = (passwords.verify_password, passwords.verify_against_dummy, module.totp.verify)

    def slow(call: Callable[..., Any], seconds: float, kind: str) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            seen.count(kind)
            time.sleep(seconds)
            return call(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(passwords, "verify_password", slow(originals[0], 0.2, "passwords"))
    monkeypatch.setattr(passwords, "verify_against_dummy", slow(originals[1], 0.2, "passwords"))
    monkeypatch.setattr(module.totp, "verify", slow(originals[2], 0.1, "codes"))
    return service


def test_fifty_wrong_passwords_at_once_are_at_most_five_evaluations(
    cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vaultpay.bootstrap.auth import auth_service

    seen = Evaluations()
    service = _slow(auth_service(), monkeypatch, seen)
    email, _ = _customer(service)

    def guess(n: int) -> Callable[[], Any]:
        # Each from its own address: the per-account budget is the one under attack
        return lambda: service.login(
            email, f"wrong password {n:04d}", device_id=DEVICE, source_ip=f"203.0.113.{n}", correlation_id="c"
        )

    outcomes = _at_once([guess(n) for n in range(ATTEMPTS)])

    # Then at most 5 passwords were checked at all (each check is a guess the attacker gets)
    assert seen.passwords <= 5, (seen.passwords, outcomes)
    assert outcomes["invalid_credentials"] <= 5, outcomes
    assert outcomes["invalid_credentials"] + outcomes["rate_limited"] == ATTEMPTS, outcomes
    # And the owner's right password is refused too until the window ends (the account is locked, not the
    # guesses merely slowed)
    with pytest.raises(VaultPayError) as caught:
        service.login(email, PASSWORD, device_id=DEVICE, source_ip="198.51.100.7", correlation_id="c")
    assert caught.value.code == "rate_limited"


def test_fifty_wrong_codes_at_once_over_every_challenge_are_at_most_ten_evaluations(
    cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vaultpay.bootstrap.auth import auth_service

    seen = Evaluations()
    service = _slow(auth_service(), monkeypatch, seen)
    email, secret = _customer(service)
    # Given every challenge the password can open (the fourth is refused: at most 3 live per user)
    challenges, refused = [], []
    for n in range(6):
        try:
            opened = service.login(
                email, PASSWORD, device_id=DEVICE, source_ip=f"198.51.100.{n}", correlation_id="c"
            )
        except VaultPayError as exc:
            refused.append(exc.code)
        else:
            challenges.append(opened.challenge_id)
    wrong = _wrong_code(secret)

    def guess(n: int) -> Callable[[], Any]:
        challenge_id = challenges[n % len(challenges)]
        return lambda: service.verify_mfa(
            challenge_id, wrong, device_id=DEVICE, source_ip="198.51.100.9", correlation_id="c"
        )

    outcomes = _at_once([guess(n) for n in range(ATTEMPTS)])

    # Then at most 10 codes were checked for the user, whatever the challenges allowed between them
    assert seen.codes <= 10, (seen.codes, outcomes)
    assert outcomes["invalid_code"] <= 10, outcomes
    assert outcomes["ok"] == 0
    assert set(outcomes) <= {"invalid_code", "rate_limited", "invalid_challenge"}, outcomes
    # And one password opened at most 3 live challenges
    assert (len(challenges), refused) == (3, ["rate_limited"] * 3)


def test_ten_correct_logins_at_once_open_at_most_three_challenges(cloud: Any) -> None:
    from vaultpay.bootstrap.auth import auth_service

    service = auth_service()
    email, _ = _customer(service)

    def login(n: int) -> Callable[[], Any]:
        return lambda: service.login(
            email, PASSWORD, device_id=DEVICE, source_ip=f"192.0.2.{n}", correlation_id="c"
        )

    outcomes = _at_once([login(n) for n in range(10)])

    assert outcomes == Counter({"ok": 3, "rate_limited": 7}), outcomes

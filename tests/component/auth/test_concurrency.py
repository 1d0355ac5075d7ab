"""Real concurrent requests on one store: one refresh token used twice, one TOTP code verified twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pyotp
import pytest

from vaultpay.auth.service import AuthService, NewUser
from vaultpay.shared.errors import VaultPayError

pytestmark = [pytest.mark.component, pytest.mark.dynamodb_local]

PASSWORD = "correct horse battery staple"
DEVICE = "device-4f1c2a"
IP = "203.0.113.10"


def _together(*calls: Callable[[], Any]) -> list[Any]:
    """Runs the calls in threads released at the same instant; each result is a value or the error raised."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except VaultPayError as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def _codes(results: list[Any]) -> list[str]:
    return sorted(getattr(result, "code", "ok") for result in results)


def _registered(service: AuthService) -> tuple[str, str]:
    enrolment = service.register(
        NewUser(email="asha@example.com", password=PASSWORD, full_name="Asha", phone="+919876543210"),
        correlation_id="c-1",
    )
    return enrolment.email, enrolment.totp_secret


def _challenge(service: AuthService, email: str) -> str:
    return service.login(email, PASSWORD, device_id=DEVICE, source_ip=IP, correlation_id="c-1").challenge_id


def test_one_code_verified_twice_at_once_signs_in_once(cloud: Any) -> None:
    from vaultpay.bootstrap.auth import auth_service

    # Given two open challenges and the current code
    service = auth_service()
    email, secret = _registered(service)
    first, second = _challenge(service, email), _challenge(service, email)
    if time.time() % 30 > 27:  # keep both verifications inside one TOTP step
        time.sleep(4)
    code = pyotp.TOTP(secret).now()

    def verify(challenge_id: str) -> Callable[[], Any]:
        return lambda: service.verify_mfa(
            challenge_id, code, device_id=DEVICE, source_ip=IP, correlation_id="c"
        )

    # When both are verified with that code at the same instant
    results = _together(verify(first), verify(second))
    # Then exactly one signs in; the other is a replay
    assert _codes(results) == ["invalid_code", "ok"]
    items = cloud.dynamodb.scan(TableName="vaultpay-test-auth")["Items"]
    assert sum(item["pk"]["S"].startswith("FAMILY#") for item in items) == 1


def test_one_refresh_token_used_twice_at_once_ends_the_family(cloud: Any) -> None:
    from vaultpay.bootstrap.auth import auth_service

    # Given a signed-in session
    service = auth_service()
    email, secret = _registered(service)
    pair = service.verify_mfa(
        _challenge(service, email),
        pyotp.TOTP(secret).now(),
        device_id=DEVICE,
        source_ip=IP,
        correlation_id="c",
    )

    def refresh() -> Any:
        return service.refresh(pair.refresh_token, device_id=DEVICE, source_ip=IP, correlation_id="c")

    # When its refresh token is presented twice at the same instant
    results = _together(refresh, refresh)
    # Then at most one rotation happened, the other was taken for theft, and the family is revoked
    codes = _codes(results)
    assert codes.count("ok") <= 1 and "refresh_token_reused" in codes, codes
    for result in results:
        if hasattr(result, "refresh_token"):
            with pytest.raises(VaultPayError) as caught:
                service.refresh(result.refresh_token, device_id=DEVICE, source_ip=IP, correlation_id="c")
            assert caught.value.code == "invalid_refresh_token"
    items = cloud.dynamodb.scan(TableName="vaultpay-test-auth")["Items"]
    [family] = [item for item in items if item["pk"]["S"].startswith("FAMILY#")]
    assert family["revoked"] == {"BOOL": True}

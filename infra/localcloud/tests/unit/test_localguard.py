"""The local cloud refuses DNS-rebound hosts and cross-site requests that change state."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from localcloud.localguard import is_loopback_host, refusal

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.0.0.1:4566",
        "localhost",
        "LOCALHOST:3000",
        "[::1]:4566",
        "127.5.6.7",
        "app.localhost",
    ],
)
def test_loopback_hosts_pass(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:4566", "10.0.0.5:4566", "127.0.0.1.evil.example", "", "0.0.0.0:4566"],
)
def test_other_hosts_do_not(host: str) -> None:
    assert not is_loopback_host(host)


def _request(method: str, **headers: str) -> object:
    return make_mocked_request(method, "/_localcloud/faults", headers={"Host": "127.0.0.1:4566", **headers})


def test_a_dns_rebound_host_is_refused_even_for_a_read() -> None:
    request = make_mocked_request("GET", "/_localcloud/status", headers={"Host": "evil.example:4566"})
    assert "Host header" in (refusal(request) or "")


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},  # a sandboxed frame or a file:// page
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
def test_a_cross_site_request_may_not_change_state(headers: dict[str, str]) -> None:
    assert "cross-site" in (refusal(_request("PUT", **headers)) or "")
    assert "cross-site" in (refusal(_request("POST", **headers)) or "")


def test_a_cross_site_read_and_same_machine_writes_pass() -> None:
    assert refusal(_request("GET", Origin="https://evil.example")) is None  # a read changes nothing
    assert refusal(_request("PUT", Origin="http://127.0.0.1:4566")) is None  # the ops console itself
    assert refusal(_request("POST", Origin="http://localhost:5173")) is None  # a front end in development
    assert refusal(_request("DELETE")) is None  # boto3, the aws CLI, curl: no browser headers

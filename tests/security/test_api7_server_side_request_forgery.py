"""OWASP API7:2023 Server Side Request Forgery: no code path fetches a URL a caller chose, but the webhooks'.

The product makes one outbound call to a caller-given address, on purpose: a webhook delivery
(vaultpay.webhooks.adapters), whose defences are in vaultpay.webhooks.model and are tested there: https only,
the host resolved and every address checked at every attempt (no private, loopback, link-local, multicast or
embedded-IPv4 address), the connection made to the checked address, no redirect followed. Otherwise
functions reach AWS only through boto3 (whose endpoint comes from the environment, `AWS_ENDPOINT_URL`, never
from a request) and NATS only at `NATS_URL`. This test keeps it that way by reading the code: a new HTTP
client, a raw socket, an endpoint chosen in code, or a NATS connection opened somewhere new fails it, so
that the change is reviewed for SSRF (URL allow-list, no redirects, no private or link-local addresses)
before it lands. It reads the source, so it cannot see a URL that reaches an allowed client by another
road; SECURITY.md says so.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SCANNED = (ROOT / "functions", ROOT / "layers" / "core" / "vaultpay")
# Modules that open network connections of their own (or fetch a caller-given URL when used so).
NETWORK_MODULES = {
    "aiohttp",
    "ftplib",
    "http.client",
    "httplib2",
    "httpx",
    "pycurl",
    "requests",
    "smtplib",
    "socket",
    "telnetlib",
    "urllib.request",
    "urllib3",
    "websocket",
    "websockets",
    "xmlrpc.client",
}
# The calls that would fetch or connect wherever their argument says.
NETWORK_CALLS = {"urlopen", "urlretrieve", "create_connection", "HTTPConnection", "HTTPSConnection"}
# Keyword arguments that point a client somewhere else than its configured endpoint.
ENDPOINT_KEYWORDS = {"endpoint_url", "host", "url", "proxies"}
# Where NATS connections are opened: one place, at the configured NATS_URL (vaultpay.events.jetstream reads
# and checks it; the health check and the JetStream configuration open theirs through it).
NATS_CONNECTORS = {"layers/core/vaultpay/events/jetstream.py"}
# The one package reviewed for SSRF that does carry a caller's URL and reach its address: the webhooks (every
# URL passes vaultpay.webhooks.model's checks; its sender is pinned below).
REVIEWED_PACKAGE = "layers/core/vaultpay/webhooks/"


def _python_files() -> Iterator[Path]:
    for folder in SCANNED:
        yield from sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _called_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def findings(source: str, relative: str) -> list[str]:
    """What in `source` could send a request somewhere a caller chose (empty when nothing)."""
    tree = ast.parse(source)
    found = [
        f"{relative}: imports {name}"
        for name in sorted(_imported(tree))
        if any(name == m or name.startswith(m + ".") for m in NETWORK_MODULES)
    ]
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _called_name(node)
        if name in NETWORK_CALLS:
            found.append(f"{relative}:{node.lineno}: calls {name}")
        for keyword in node.keywords:
            if keyword.arg in ENDPOINT_KEYWORDS and name != "connect":
                found.append(f"{relative}:{node.lineno}: {name}({keyword.arg}=...)")
        target = ast.unparse(node.func.value) if isinstance(node.func, ast.Attribute) else ""
        if name == "connect" and target == "nats" and relative not in NATS_CONNECTORS:
            found.append(f"{relative}:{node.lineno}: opens a NATS connection")
    return found


def test_the_scanner_catches_a_handler_that_fetches_a_callers_url() -> None:
    # The control: the code an SSRF needs is what the scanner reports
    planted = """
import urllib.request
import requests
import boto3
import nats

def handler(event, context):
    body = event["body"]
    urllib.request.urlopen(body["webhook_url"])
    requests.post(body["callback"], json={})
    boto3.client("s3", endpoint_url=body["endpoint"])
    return nats.connect(servers=[body["bus"]])
"""
    found = "\n".join(findings(planted, "functions/evil/app.py"))
    for expected in ("imports urllib.request", "imports requests", "calls urlopen", "endpoint_url=", "NATS"):
        assert expected in found, found


def test_no_function_or_core_module_can_reach_an_address_a_caller_chose() -> None:
    scanned, found = 0, []
    for path in _python_files():
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(REVIEWED_PACKAGE):
            continue
        found += findings(path.read_text(encoding="utf-8"), relative)
        scanned += 1
    assert scanned > 100, scanned
    assert found == [], "\n".join(found)


def test_the_aws_clients_take_their_endpoint_from_the_environment_only() -> None:
    # vaultpay.shared.aws builds every boto3 client the product uses; it must not set an endpoint itself
    source = (ROOT / "layers/core/vaultpay/shared/aws.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and _called_name(node) == "client"]
    assert calls, "vaultpay.shared.aws no longer builds a client"
    for call in calls:
        assert {k.arg for k in call.keywords} <= {"config"}, ast.unparse(call)


def test_the_webhook_sender_connects_only_to_the_address_its_caller_checked() -> None:
    # The reviewed sender opens its sockets in one place each, to `self._address`: the address the delivery
    # resolved and checked (vaultpay.webhooks.model.resolve_checked), never the URL's host again.
    source = (ROOT / "layers/core/vaultpay/webhooks/adapters.py").read_text(encoding="utf-8")
    connects = [
        ast.unparse(node)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and _called_name(node) == "create_connection"
    ]
    assert connects and all("self._address" in call for call in connects), connects

"""The signature-verification example in docs/api.md works against what VaultPay sends, and stays short."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from vaultpay.webhooks.model import signature_header

pytestmark = pytest.mark.unit
API = Path(__file__).resolve().parents[3] / "docs" / "api.md"


def _example() -> tuple[str, Any]:
    section = API.read_text(encoding="utf-8").split("## Webhooks and the events feed", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "docs/api.md has no Python example under Webhooks"
    code = match.group(1)
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/api.md", "exec"), namespace)  # noqa: S102 - the project's own documentation
    return code, namespace["verify"]


def test_the_documented_verification_accepts_a_delivery_and_its_rotation() -> None:
    code, verify = _example()
    assert len(code.strip().splitlines()) <= 15
    body, now = b'{"id":"e-1","type":"vaultpay.transaction.completed"}', int(time.time())
    assert verify("whsec_a", signature_header(["whsec_a"], now, body), body)
    assert verify("whsec_old", signature_header(["whsec_new", "whsec_old"], now, body), body)


def test_the_documented_verification_refuses_a_forgery_a_tampered_body_and_a_replay() -> None:
    _, verify = _example()
    body, now = b'{"id":"e-1"}', int(time.time())
    assert not verify("whsec_b", signature_header(["whsec_a"], now, body), body)
    assert not verify("whsec_a", signature_header(["whsec_a"], now, body), body + b" ")
    assert not verify("whsec_a", signature_header(["whsec_a"], now - 3600, body), body)
    assert not verify("whsec_a", "v1=" + "0" * 64, body)

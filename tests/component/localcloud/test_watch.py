"""`vaultpay local up --watch`: a developer edits a handler and the next request runs it, with no restart."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.component


def _wait_for(
    invoke: Callable[[], dict[str, Any]], expected: dict[str, Any], timeout_s: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while (answer := invoke()) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return answer


def test_an_edited_handler_answers_the_next_invoke_of_a_watching_cloud(local_cloud: Any) -> None:
    # Given the tests' cloud, which watches the copy of the test template it runs (tests/conftest.py)
    template = next(Path(c["template"]) for c in local_cloud.state["code"] if "fixture" in c["template"])
    lam = local_cloud.client("lambda")
    name = local_cloud.function_name("EchoFunction")
    handler = template.parent / "functions" / "echo" / "app.py"
    original = handler.read_text()

    def invoke() -> dict[str, Any]:
        body: dict[str, Any] = json.loads(lam.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
        return body

    assert invoke()["greeting"] == "hello"  # a warm worker now holds the old code
    try:
        # When the developer saves a new handler
        handler.write_text("def handler(event, context):\n    return {'edited': True}\n")

        # Then the next invokes run it, in a new worker, without a restart
        assert _wait_for(invoke, {"edited": True}) == {"edited": True}
    finally:
        handler.write_text(original)  # the other tests invoke this function too
        deadline = time.monotonic() + 15
        while "greeting" not in invoke() and time.monotonic() < deadline:
            time.sleep(0.1)
    assert invoke()["greeting"] == "hello"

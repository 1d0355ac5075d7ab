"""The `live` alias locally: the project's routes go through it, and the Lambda API invokes it by every name
AWS accepts (docs/deployment.md)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.component
ROOT = Path(__file__).resolve().parents[3]


def test_a_route_of_the_project_api_reaches_its_function_through_the_alias(local_cloud: Any) -> None:
    # DocsFunction's route integrates DocsFunctionAliaslive: the answer comes from the function.
    with urllib.request.urlopen(local_cloud.api + "/openapi.json", timeout=30) as resp:
        assert resp.status == 200
        assert json.loads(resp.read())["openapi"].startswith("3.1")


@pytest.mark.parametrize("form", ["name:live", "alias arn", "qualifier"])
def test_the_lambda_api_invokes_the_live_alias_by_name_arn_or_qualifier(local_cloud: Any, form: str) -> None:
    name = local_cloud.function_name("HealthFunction")
    arn = f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    arguments = {
        "name:live": {"FunctionName": f"{name}:live"},
        "alias arn": {"FunctionName": f"{arn}:live"},
        "qualifier": {"FunctionName": name, "Qualifier": "live"},
    }[form]
    event = (ROOT / "events" / "ops" / "health.json").read_bytes()
    out = local_cloud.client("lambda").invoke(Payload=event, **arguments)
    assert "FunctionError" not in out, out["Payload"].read()
    assert json.loads(out["Payload"].read())["statusCode"] in (200, 503)  # 503: a dependency said no

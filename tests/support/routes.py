"""The API's routes as template.yaml wires them, for the attack tests to enumerate rather than list."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_PARAMETER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True, slots=True)
class Route:
    method: str  # upper case
    path: str  # the template's path, parameters in braces: /v1/accounts/{account_id}
    function: str  # the logical id of the function it reaches
    public: bool  # `Auth: Authorizer: NONE`

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(_PARAMETER.findall(self.path))

    def concrete(self, **values: str) -> str:
        """The path with each `{name}` replaced by `values[name]`."""
        return _PARAMETER.sub(lambda m: values[m.group(1)], self.path)


@functools.cache
def template_routes() -> tuple[Route, ...]:
    """Every Api event on VaultPayApi, read straight from template.yaml."""
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((ROOT / "template.yaml").read_text())
    routes = []
    for logical_id, resource in template["Resources"].items():
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            props = event.get("Properties", {})
            if event["Type"] == "Api" and props.get("RestApiId") == {"Ref": "VaultPayApi"}:
                public = (props.get("Auth") or {}).get("Authorizer") == "NONE"
                routes.append(Route(props["Method"].upper(), props["Path"], logical_id, public))
    return tuple(sorted(routes, key=lambda r: (r.path, r.method)))


@functools.cache
def template_functions() -> dict[str, dict[str, object]]:
    """Every AWS::Serverless::Function of template.yaml by logical id: its Properties."""
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((ROOT / "template.yaml").read_text())
    return {
        logical_id: dict(resource.get("Properties", {}))
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }

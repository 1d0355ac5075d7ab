"""Reads template.yaml, runs the SAM transform offline and resolves CloudFormation intrinsics locally."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from localcloud.spec import ACCOUNT_ID, REGION

PLACEHOLDER_BUCKET = "localcloud-code"


class TemplateError(ValueError):
    """The template cannot be translated or resolved locally; the message names the resource."""


class _CfnLoader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML with CloudFormation's short-form tags (!Ref, !GetAtt, !Sub, ...)."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        data = yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass with CFN tags only
    if not isinstance(data, dict) or "Resources" not in data:
        raise TemplateError(f"{path} is not a CloudFormation/SAM template (no Resources)")
    return data


def samconfig_parameters(samconfig: Path, environment: str = "local") -> dict[str, str]:
    """parameter_overrides of one samconfig.toml environment, as a dict."""
    if not samconfig.exists():
        return {}
    config = tomllib.loads(samconfig.read_text())
    env = config.get(environment, {})
    raw: Any = None
    for command in ("deploy", "global", "build", "sync"):
        raw = env.get(command, {}).get("parameters", {}).get("parameter_overrides")
        if raw:
            break
    if not raw:
        return {}
    items = raw if isinstance(raw, list) else re.findall(r'(?:[^\s"]+|"[^"]*")+', raw)
    out: dict[str, str] = {}
    for item in items:
        key, _, value = str(item).partition("=")
        out[key.strip()] = value.strip().strip('"')
    return out


@dataclass
class Translated:
    """The plain CloudFormation template and where each piece of local code lives."""

    template: dict[str, Any]
    code_dirs: dict[str, Path]  # logical id (as in the SAM template) -> CodeUri/ContentUri directory
    base_dir: Path


def translate(sam: dict[str, Any], base_dir: Path, parameters: Mapping[str, str]) -> Translated:
    """Runs the SAM transform without AWS: local paths become placeholder S3 URIs, mapped back later."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    # The translator's metrics object warns at garbage collection about metrics nobody publishes, and its
    # feature toggles warn, once per DeploymentPreference, that no toggle configuration exists offline.
    logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)
    logging.getLogger("samtranslator.feature_toggle.feature_toggle").setLevel(logging.ERROR)
    sam = copy.deepcopy(sam)
    code_dirs: dict[str, Path] = {}
    globals_fn = sam.get("Globals", {}).get("Function", {})
    default_code = globals_fn.pop("CodeUri", None)
    for logical_id, resource in sam["Resources"].items():
        rtype, props = resource.get("Type"), resource.setdefault("Properties", {})
        key = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}.get(
            rtype
        )
        if key:
            uri = props.get(key, default_code)
            if isinstance(uri, str) and not uri.startswith("s3://"):
                code_dirs[logical_id] = (base_dir / uri).resolve()
                props[key] = f"s3://{PLACEHOLDER_BUCKET}/{logical_id}"
        if rtype == "AWS::Serverless::StateMachine" and isinstance(props.get("DefinitionUri"), str):
            definition_path = base_dir / props.pop("DefinitionUri")
            props["Definition"] = json.loads(definition_path.read_text())
    params = {**_declared_defaults(sam), **parameters}
    try:
        cfn: dict[str, Any] = Translator(
            managed_policy_map=None,
            sam_parser=Parser(),
            boto_session=boto3.session.Session(region_name=REGION),
        ).translate(
            sam,
            parameter_values={**_pseudo_parameters(), **params},
            get_managed_policy_map=lambda: {},
        )
    except Exception as exc:  # the translator raises its own InvalidDocumentException tree
        causes = getattr(exc, "causes", None) or []
        detail = "; ".join(str(c) for c in causes) or str(exc)
        raise TemplateError(f"SAM transform failed: {detail}") from exc
    return Translated(template=cfn, code_dirs=code_dirs, base_dir=base_dir)


def _declared_defaults(template: Mapping[str, Any]) -> dict[str, str]:
    return {
        name: str(spec["Default"])
        for name, spec in template.get("Parameters", {}).items()
        if isinstance(spec, dict) and "Default" in spec
    }


def _pseudo_parameters(stack_name: str = "vaultpay-local") -> dict[str, str]:
    return {
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT_ID,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::StackName": stack_name,
        "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{stack_name}/local",
        "AWS::NotificationARNs": "",
        "AWS::NoValue": "",
    }


def local_id(logical_id: str, length: int = 10) -> str:
    """A stable identifier for resources whose AWS id is generated (REST API ids, for example)."""
    return hashlib.sha256(logical_id.encode()).hexdigest()[:length]


NO_VALUE = object()


@dataclass
class Resolver:
    """Evaluates intrinsic functions over a translated template.

    `ref` and `get_att` are supplied by the provisioner: they may create a resource on demand, so the
    order of creation follows the references and needs no separate dependency graph.
    """

    template: dict[str, Any]
    parameters: dict[str, str]
    ref: Callable[[str], Any]
    get_att: Callable[[str, str], Any]
    stack_name: str = "vaultpay-local"
    _conditions: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.parameters = {
            **_declared_defaults(self.template),
            **self.parameters,
            **_pseudo_parameters(self.stack_name),
        }

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            expr = self.template.get("Conditions", {}).get(name)
            if expr is None:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = bool(self.resolve(expr))
        return self._conditions[name]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                if arg == "AWS::NoValue":
                    return NO_VALUE
                if arg in self.parameters:
                    return self._parameter(arg)
                return self.ref(arg)
            if key == "Fn::GetAtt":
                parts = arg if isinstance(arg, list) else str(arg).split(".", 1)
                return self.get_att(str(parts[0]), str(self.resolve(parts[1])))
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Join":
                sep, items = arg
                return str(sep).join(str(i) for i in self.resolve(items))
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text)).split(sep)
            if key == "Fn::If":
                name, yes, no = arg
                return self.resolve(yes if self.condition(name) else no)
            if key == "Fn::Equals":
                a, b = (self.resolve(x) for x in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(x) for x in arg)
            if key == "Fn::Or":
                return any(self.resolve(x) for x in arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::FindInMap":
                mapping, top, second = (self.resolve(x) for x in arg)
                return self.template["Mappings"][mapping][top][second]
            if key == "Fn::GetAZs":
                return [f"{REGION}a", f"{REGION}b", f"{REGION}c"]
            if key == "Fn::Base64":
                import base64

                return base64.b64encode(str(self.resolve(arg)).encode()).decode()
            if key == "Fn::ToJsonString":
                return json.dumps(self.resolve(arg), separators=(",", ":"))
            if key.startswith("Fn::"):
                raise TemplateError(f"intrinsic {key} is not supported by the local cloud")
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in value.items()) if v is not NO_VALUE}

    def _parameter(self, name: str) -> Any:
        value = self.parameters[name]
        spec = self.template.get("Parameters", {}).get(name, {})
        ptype = str(spec.get("Type", "")) if isinstance(spec, dict) else ""
        if ptype.startswith("List<") or ptype == "CommaDelimitedList":
            return [v.strip() for v in value.split(",")]
        return value

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.resolve(v) for k, v in arg[1].items()}
        else:
            text, variables = arg, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if name in self.parameters:
                return str(self.parameters[name])
            if "." in name:
                logical, attr = name.split(".", 1)
                return str(self.get_att(logical, attr))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, str(text))

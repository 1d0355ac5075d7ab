"""The deploy preflight: refuses a stage whose settings CloudFormation would refuse, before anything is built.

`make deploy STAGE=dev|prod` runs it first. It reads samconfig.toml's [STAGE] settings and template.yaml's
Parameters and Rules, and names every problem at once (a sam deploy names one, after the build and upload):

- a stage samconfig.toml does not deploy (one without a [STAGE.deploy.parameters] section: `local` is the
  local cloud's);
- a required parameter (no Default) that the stage's parameter_overrides do not set;
- a placeholder value (REPLACE-WITH-...), an override of a parameter the template does not declare, a value
  outside the parameter's AllowedValues, AllowedPattern or bounds;
- a template Rule whose assertion fails with the stage's values (NatsUrls left at the loopback default);
- a region outside India: balances and customers are Indian, and payment data stays in India (RBI's storage
  rule); ap-south-2 is the disaster-recovery region.

    python infra/deploy/preflight.py --stage dev    # exit 0: deployable; 1: each problem on stderr
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The template reader the local cloud uses (short-form tags such as !Ref), and its reading of
# parameter_overrides, so a deploy and `make run` see one template and one samconfig the same way.
from localcloud.template import load_template, samconfig_parameters

ROOT = Path(__file__).resolve().parents[2]
INDIAN_REGIONS = ("ap-south-1", "ap-south-2")
PLACEHOLDER = re.compile(r"REPLACE[-_]WITH", re.IGNORECASE)


class PreflightError(ValueError):
    """The preflight cannot read what it checks (a template Rule it cannot evaluate, a malformed file)."""


@dataclass(frozen=True)
class Problem:
    """Why a stage would not deploy: what it concerns (a parameter, the stage, the region) and the reason."""

    subject: str
    reason: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.reason}"


def check(stage: str, template: Mapping[str, Any], samconfig_path: Path) -> list[Problem]:
    """Every problem of deploying `stage`; an empty list means CloudFormation will accept its parameters."""
    samconfig = tomllib.loads(samconfig_path.read_text())
    deployable = sorted(name for name, env in samconfig.items() if isinstance(env, dict) and "deploy" in env)
    if stage not in deployable:
        known = ", ".join(deployable) or "none"
        return [Problem("STAGE", f"{stage!r} is not a stage samconfig.toml deploys ({known})")]
    problems: list[Problem] = []
    region = setting(samconfig_path, stage, "region")
    if region not in INDIAN_REGIONS:
        problems.append(
            Problem("region", f"{region or 'none'} is outside India; deploy to {' or '.join(INDIAN_REGIONS)}")
        )
    declared: dict[str, dict[str, Any]] = template.get("Parameters", {})
    overrides = samconfig_parameters(samconfig_path, stage)
    for name in sorted(set(overrides) - set(declared)):
        problems.append(Problem(name, "set in parameter_overrides but not a parameter of the template"))
    values: dict[str, str] = {}
    for name, spec in declared.items():
        if name in overrides:
            values[name] = overrides[name]
        elif "Default" in spec:
            values[name] = str(spec["Default"])
        else:
            problems.append(
                Problem(name, f"required (no default) and not set in [{stage}] parameter_overrides")
            )
    for name, value in values.items():
        problems.extend(Problem(name, reason) for reason in _constraint_failures(value, declared[name]))
    flagged = {problem.subject for problem in problems}
    for rule_name, rule in template.get("Rules", {}).items():
        problems.extend(_rule_failures(rule_name, rule, values, flagged))
    return problems


def setting(samconfig_path: Path, stage: str, key: str) -> str:
    """A setting of `stage` as `sam deploy` reads samconfig.toml: the deploy section's, else global's."""
    environment = tomllib.loads(samconfig_path.read_text()).get(stage, {})
    for command in ("deploy", "global"):
        value = environment.get(command, {}).get("parameters", {}).get(key)
        if value is not None:
            return str(value)
    return ""


def _constraint_failures(value: str, spec: Mapping[str, Any]) -> list[str]:
    if PLACEHOLDER.search(value):
        return [f"placeholder value {value!r}: set the real value in samconfig.toml"]
    failures = []
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in {str(v) for v in allowed}:
        failures.append(f"{value!r} is not one of {', '.join(map(str, allowed))}")
    pattern = spec.get("AllowedPattern")
    # CloudFormation matches the whole value against the pattern; list types are checked per item by AWS.
    if pattern is not None and spec.get("Type") == "String" and not re.fullmatch(str(pattern), value):
        failures.append(spec.get("ConstraintDescription") or f"{value!r} does not match {pattern}")
    if spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            return [*failures, f"{value!r} is not a number"]
        if "MinValue" in spec and number < float(spec["MinValue"]):
            failures.append(f"{value} is below the minimum {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            failures.append(f"{value} is above the maximum {spec['MaxValue']}")
    return failures


def _rule_failures(
    name: str, rule: Mapping[str, Any], values: Mapping[str, str], flagged: set[str]
) -> list[Problem]:
    """A Rule as CloudFormation evaluates it first; a parameter refused already is not named again."""
    if "RuleCondition" in rule and not _evaluate(rule["RuleCondition"], values):
        return []
    failures = []
    for assertion in rule.get("Assertions", []):
        if _evaluate(assertion["Assert"], values):
            continue
        named = sorted(_referenced(assertion["Assert"]) & set(values)) or ["rule"]
        if set(named) <= flagged:
            continue
        description = assertion.get("AssertDescription", "the assertion fails")
        failures.append(Problem(", ".join(named), f"refused by rule {name}: {description}"))
    return failures


def _evaluate(expression: Any, values: Mapping[str, str]) -> Any:
    """The rule-specific intrinsics over parameter values (CloudFormation allows only these in Rules)."""
    if isinstance(expression, list):
        return [_evaluate(item, values) for item in expression]
    if not isinstance(expression, dict):
        return expression
    if len(expression) != 1:
        raise PreflightError(f"cannot evaluate {expression!r} in a rule")
    ((function, argument),) = expression.items()
    if function == "Ref":
        if argument not in values:
            raise PreflightError(f"a rule refers to {argument}, which is not a parameter")
        return values[argument]
    arguments = _evaluate(argument, values)
    if function == "Fn::Equals":
        return str(arguments[0]) == str(arguments[1])
    if function == "Fn::Not":
        return not arguments[0]
    if function == "Fn::And":
        return all(arguments)
    if function == "Fn::Or":
        return any(arguments)
    if function == "Fn::Contains":
        return str(arguments[1]) in [str(item) for item in arguments[0]]
    if function == "Fn::EachMemberEquals":
        return all(str(item) == str(arguments[1]) for item in _members(arguments[0]))
    if function == "Fn::EachMemberIn":
        return set(_members(arguments[0])) <= {str(item) for item in arguments[1]}
    raise PreflightError(f"{function} in a rule is not evaluated by the preflight")


def _members(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else str(value).split(",")


def _referenced(expression: Any) -> set[str]:
    if isinstance(expression, list):
        return set().union(*(_referenced(item) for item in expression)) if expression else set()
    if isinstance(expression, dict):
        if set(expression) == {"Ref"}:
            return {str(expression["Ref"])}
        return set().union(*(_referenced(item) for item in expression.values()))
    return set()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True, help="the samconfig.toml environment to deploy (dev, prod)")
    parser.add_argument("--template", type=Path, default=ROOT / "template.yaml")
    parser.add_argument("--samconfig", type=Path, default=ROOT / "samconfig.toml")
    args = parser.parse_args(argv)
    problems = check(args.stage, load_template(args.template), args.samconfig)
    if problems:
        print(f"preflight: {args.stage or '(no stage)'} cannot be deployed:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    stack, region = (setting(args.samconfig, args.stage, key) for key in ("stack_name", "region"))
    print(f"preflight: {args.stage} is ready to deploy (stack {stack}, region {region})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Lambda event filtering: the EventBridge pattern language of an event source mapping's FilterCriteria."""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from operator import eq, ge, gt, le, lt
from typing import Any

__all__ = ["FilterPatternError", "matches", "record_passes", "validate_pattern"]

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "=": eq,
    "<": lt,
    "<=": le,
    ">": gt,
    ">=": ge,
}
_STRING_OPERATORS = ("prefix", "suffix", "equals-ignore-case", "wildcard")
_ANYTHING_BUT_OPERATORS = ("prefix", "suffix", "equals-ignore-case", "wildcard")
_MISSING = object()


class FilterPatternError(ValueError):
    """A filter pattern is not valid pattern syntax; AWS rejects it when the mapping is created."""


def record_passes(patterns: Sequence[Mapping[str, Any]], record: Mapping[str, Any]) -> bool:
    """Whether a record reaches the function: no patterns let everything through, else any one must match."""
    if not patterns:
        return True
    return any(matches(pattern, record) for pattern in patterns)


def matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Whether `event` matches one filter pattern (keys are ANDed, the values in a rule list are ORed)."""
    if not isinstance(pattern, Mapping):
        raise FilterPatternError(f"a filter pattern must be a JSON object, got {type(pattern).__name__}")
    return _match_object(pattern, event, "")


def validate_pattern(pattern: Any) -> None:
    """Raise FilterPatternError, naming the offending path, unless `pattern` is valid filter syntax."""
    if not isinstance(pattern, Mapping):
        raise FilterPatternError(f"a filter pattern must be a JSON object, got {type(pattern).__name__}")
    _validate_object(pattern, "")


def _match_object(pattern: Mapping[str, Any], event: Any, path: str) -> bool:
    fields: Mapping[str, Any] = event if isinstance(event, Mapping) else {}
    for key, rule in pattern.items():
        where = f"{path}.{key}" if path else key
        if key == "$or":
            if not isinstance(rule, list) or len(rule) < 2:
                raise FilterPatternError(f"{where}: $or takes a list of at least two patterns")
            if not any(_match_object(_as_object(alt, where), event, path) for alt in rule):
                return False
            continue
        value = fields.get(key, _MISSING)
        if isinstance(rule, Mapping):
            if not _match_nested(rule, value, where):
                return False
        elif isinstance(rule, list):
            if not _match_leaf(rule, _leaf_values(value), where):
                return False
        else:
            raise FilterPatternError(f"{where}: a rule must be a list of values or a nested object")
    return True


def _match_nested(rule: Mapping[str, Any], value: Any, path: str) -> bool:
    # An array of objects matches when any one element matches as a whole; a missing or scalar value is
    # matched as an empty object, so only rules like {"exists": false} below it can pass.
    if isinstance(value, list):
        objects = [element for element in value if isinstance(element, Mapping)]
        if objects:
            return any(_match_object(rule, element, path) for element in objects)
        return _match_object(rule, {}, path)
    if isinstance(value, Mapping):
        return _match_object(rule, value, path)
    return _match_object(rule, {}, path)


def _leaf_values(value: Any) -> list[Any]:
    """The leaf values of a field: none when it is missing or an object (filters see leaves only)."""
    if value is _MISSING or isinstance(value, Mapping):
        return []
    if isinstance(value, list):
        leaves: list[Any] = []
        for element in value:
            leaves.extend(_leaf_values(element))
        return leaves
    return [value]


def _match_leaf(rules: list[Any], values: list[Any], path: str) -> bool:
    if not rules:
        raise FilterPatternError(f"{path}: a rule list must not be empty")
    for rule in rules:
        if isinstance(rule, Mapping) and "exists" in rule:
            wanted = rule["exists"]
            if len(rule) != 1 or not isinstance(wanted, bool):
                raise FilterPatternError(f'{path}: "exists" takes true or false and nothing else')
            if bool(values) == wanted:
                return True
        elif any(_match_value(rule, value, path) for value in values):
            return True
    return False


def _match_value(rule: Any, value: Any, path: str) -> bool:
    if isinstance(rule, Mapping):
        return _match_operator(rule, value, path)
    if isinstance(rule, list):
        raise FilterPatternError(f"{path}: rule lists cannot be nested")
    return _exact(rule, value, path)


def _exact(rule: Any, value: Any, path: str) -> bool:
    if rule is None or isinstance(rule, (str, bool)):
        return type(value) is type(rule) and value == rule
    if _is_number(rule):
        # AWS compares numbers by their JSON text: 300, 300.0 and 3.0e2 are three different values.
        return _is_number(value) and _number_text(value) == _number_text(rule)
    raise FilterPatternError(f"{path}: {rule!r} is not a JSON scalar")


def _match_operator(rule: Mapping[str, Any], value: Any, path: str) -> bool:
    if len(rule) != 1:
        raise FilterPatternError(
            f"{path}: a comparison object takes exactly one operator, got {sorted(rule)}"
        )
    ((operator, operand),) = rule.items()
    if operator == "prefix":
        return _string_test(operand, value, path, "prefix", str.startswith)
    if operator == "suffix":
        return _string_test(operand, value, path, "suffix", str.endswith)
    if operator == "equals-ignore-case":
        text = _require_string(operand, path, operator)
        return isinstance(value, str) and value.casefold() == text.casefold()
    if operator == "wildcard":
        regex = _wildcard(_require_string(operand, path, operator))
        return isinstance(value, str) and regex.fullmatch(value) is not None
    if operator == "anything-but":
        return _anything_but(operand, value, path)
    if operator == "numeric":
        return _numeric(operand, value, path)
    if operator == "cidr":
        return _cidr(operand, value, path)
    raise FilterPatternError(f'{path}: unknown comparison operator "{operator}"')


def _string_test(
    operand: Any, value: Any, path: str, operator: str, test: Callable[[str, str], bool]
) -> bool:
    if isinstance(operand, Mapping):
        # {"prefix": {"equals-ignore-case": "us-"}}
        if set(operand) != {"equals-ignore-case"}:
            raise FilterPatternError(
                f'{path}: "{operator}" takes a string or {{"equals-ignore-case": string}}'
            )
        text = _require_string(operand["equals-ignore-case"], path, operator)
        return isinstance(value, str) and test(value.casefold(), text.casefold())
    text = _require_string(operand, path, operator)
    return isinstance(value, str) and test(value, text)


def _anything_but(operand: Any, value: Any, path: str) -> bool:
    if isinstance(operand, Mapping):
        if len(operand) != 1 or next(iter(operand)) not in _ANYTHING_BUT_OPERATORS:
            raise FilterPatternError(
                f'{path}: "anything-but" takes a value, a list, or one of {list(_ANYTHING_BUT_OPERATORS)}'
            )
        ((operator, inner),) = operand.items()
        inner_values = inner if isinstance(inner, list) else [inner]
        if not inner_values:
            raise FilterPatternError(f'{path}: "anything-but" {operator} needs at least one value')
        return not any(_match_operator({operator: item}, value, path) for item in inner_values)
    excluded = operand if isinstance(operand, list) else [operand]
    if not excluded:
        raise FilterPatternError(f'{path}: "anything-but" needs at least one value')
    for item in excluded:
        if not isinstance(item, str) and not _is_number(item):
            raise FilterPatternError(
                f'{path}: "anything-but" values must be strings or numbers, got {item!r}'
            )
    return not any(_exact(item, value, path) for item in excluded)


def _numeric(operand: Any, value: Any, path: str) -> bool:
    conditions = _numeric_conditions(operand, path)
    if not _is_number(value):
        return False
    number = float(value)
    return all(_COMPARE[operator](number, bound) for operator, bound in conditions)


def _numeric_conditions(operand: Any, path: str) -> list[tuple[str, float]]:
    if not isinstance(operand, list) or len(operand) not in (2, 4):
        raise FilterPatternError(f'{path}: "numeric" takes [op, number] or [op, number, op, number]')
    conditions: list[tuple[str, float]] = []
    for index in range(0, len(operand), 2):
        operator, bound = operand[index], operand[index + 1]
        if operator not in _COMPARE:
            raise FilterPatternError(
                f'{path}: "numeric" operator must be one of =, <, <=, >, >=; got {operator!r}'
            )
        if not _is_number(bound) or not math.isfinite(bound):
            raise FilterPatternError(f'{path}: "numeric" bound must be a finite number, got {bound!r}')
        conditions.append((operator, float(bound)))
    if len(conditions) == 2:
        lower, upper = conditions
        if lower[0] not in (">", ">=") or upper[0] not in ("<", "<="):
            raise FilterPatternError(
                f'{path}: a "numeric" range is a lower bound (> or >=) then an upper bound'
            )
    return conditions


def _cidr(operand: Any, value: Any, path: str) -> bool:
    try:
        network = ipaddress.ip_network(_require_string(operand, path, "cidr"), strict=False)
    except ValueError as exc:
        raise FilterPatternError(f'{path}: "cidr" {operand!r} is not a network: {exc}') from exc
    if not isinstance(value, str):
        return False
    try:
        return ipaddress.ip_address(value) in network
    except ValueError:
        return False


@cache
def _wildcard(pattern: str) -> re.Pattern[str]:
    # Only "*" is special; "\*" is a literal asterisk.
    parts = re.split(r"(\\\*|\*)", pattern)
    regex = "".join(".*" if part == "*" else re.escape("*" if part == "\\*" else part) for part in parts)
    return re.compile(regex, re.DOTALL)


def _require_string(operand: Any, path: str, operator: str) -> str:
    if not isinstance(operand, str):
        raise FilterPatternError(f'{path}: "{operator}" takes a string, got {operand!r}')
    return operand


def _as_object(candidate: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(candidate, Mapping):
        raise FilterPatternError(f"{path}: each $or alternative must be a pattern object")
    return candidate


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number_text(value: float) -> str:
    return json.dumps(value)


def _validate_object(pattern: Mapping[str, Any], path: str) -> None:
    if not pattern and path:
        raise FilterPatternError(f"{path}: a nested pattern must not be empty")
    for key, rule in pattern.items():
        where = f"{path}.{key}" if path else str(key)
        if not isinstance(key, str):
            raise FilterPatternError(f"{where}: pattern keys must be strings")
        if key == "$or":
            if not isinstance(rule, list) or len(rule) < 2:
                raise FilterPatternError(f"{where}: $or takes a list of at least two patterns")
            for alternative in rule:
                _validate_object(_as_object(alternative, where), path)
        elif isinstance(rule, Mapping):
            _validate_object(rule, where)
        elif isinstance(rule, list):
            _validate_rules(rule, where)
        else:
            raise FilterPatternError(f"{where}: a rule must be a list of values or a nested object")


def _validate_rules(rules: list[Any], path: str) -> None:
    if not rules:
        raise FilterPatternError(f"{path}: a rule list must not be empty")
    # Evaluating every rule against a value of each JSON type exercises every operand check.
    probes: list[Any] = [None, "", 0, True]
    for rule in rules:
        if isinstance(rule, Mapping) and "exists" in rule:
            _match_leaf([rule], [], path)
            continue
        for probe in probes:
            _match_value(rule, probe, path)

"""Fault injection for the local cloud: the plan, the decisions the runtime and pollers ask for, and a client.

A plan is JSON, PUT on the edge at `/_localcloud/faults` (see `fault_api`). Nothing here runs unless a plan is
set: with none, `lambda_fault` and `duplicate_delivery` are one dict lookup that finds nothing.

This module is imported by tests and benchmarks for `FaultClient`, so it needs only the standard library.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import random
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from localcloud.spec import FunctionSpec

FAULTS_PATH = "/_localcloud/faults"
DEFAULT_ERROR_MESSAGE = "Fault injected by the local cloud: the function did not run"
MAX_ATTEMPTS = 100
MAX_NATS_DOWN_S = 3600.0
# Invocations remembered per payload for "the first attempt" rules; the oldest are forgotten beyond this,
# which only matters for a run with more distinct payloads than any test or benchmark makes.
MAX_REMEMBERED_PAYLOADS = 500_000
COUNTER_NAMES = (
    "lambda_errors",
    "lambda_crashes",
    "stream_duplicates",
    "nats_stops",
    "nats_starts",
    "nats_node_kills",
)
PER_FUNCTION = ("lambda_errors", "lambda_crashes", "stream_duplicates")


class FaultPlanError(ValueError):
    """The plan is not valid; the message says which field and why (the API answers it with a 400)."""


# ---- the plan --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LambdaErrorRule:
    """The first `attempts` invocations of a distinct payload fail with `error_type`, without running: every
    payload, or each one with `probability` (decided once, when the payload is first seen, from the seed).
    With attempts above the caller's retries the step fails for good (a saga's compensation path)."""

    functions: tuple[str, ...]  # names or logical ids, shell-style patterns allowed ("*Funds*")
    error_type: str
    error_message: str = DEFAULT_ERROR_MESSAGE
    attempts: int = 1
    probability: float = 1.0


@dataclass(frozen=True)
class LambdaCrashRule:
    """The handler runs to completion, then its worker is killed before the answer (Runtime.ExitError)."""

    functions: tuple[str, ...]
    probability: float = 1.0
    first_attempt_only: bool = True  # only the first run of each distinct payload may crash


@dataclass(frozen=True)
class StreamDuplicateRule:
    """A DynamoDB stream batch for one of these functions is delivered twice, with this probability."""

    functions: tuple[str, ...]
    probability: float = 1.0


@dataclass(frozen=True)
class FaultPlan:
    lambda_errors: tuple[LambdaErrorRule, ...] = ()
    lambda_crashes: tuple[LambdaCrashRule, ...] = ()
    stream_duplicates: tuple[StreamDuplicateRule, ...] = ()
    nats_down_for_s: float | None = None
    seed: int | None = None

    def to_json(self) -> dict[str, Any]:
        plan: dict[str, Any] = {
            "lambda_errors": [
                {
                    "functions": list(r.functions),
                    "error_type": r.error_type,
                    "error_message": r.error_message,
                    "attempts": r.attempts,
                    "probability": r.probability,
                }
                for r in self.lambda_errors
            ],
            "lambda_crashes": [
                {
                    "functions": list(r.functions),
                    "probability": r.probability,
                    "first_attempt_only": r.first_attempt_only,
                }
                for r in self.lambda_crashes
            ],
            "stream_duplicates": [
                {"functions": list(r.functions), "probability": r.probability} for r in self.stream_duplicates
            ],
        }
        if self.nats_down_for_s is not None:
            plan["nats_down_for_s"] = self.nats_down_for_s
        if self.seed is not None:
            plan["seed"] = self.seed
        return plan


def _object(
    value: Any, where: str, allowed: Collection[str], required: Collection[str] = ()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FaultPlanError(f"{where} must be a JSON object, got {_kind(value)}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise FaultPlanError(f"{where} has unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    missing = [key for key in required if key not in value]
    if missing:
        raise FaultPlanError(f"{where} is missing {missing}")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _functions(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise FaultPlanError(f"{where} must be a non-empty list of function names or logical ids")
    for name in value:
        if not isinstance(name, str) or not name.strip():
            raise FaultPlanError(f"{where} must hold non-empty strings, got {name!r}")
    return tuple(value)


def _probability(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise FaultPlanError(f"{where} must be a number from 0 to 1, got {value!r}")
    return float(value)


def _text(value: Any, where: str, *, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise FaultPlanError(
            f"{where} must be a non-empty string of at most {limit} characters, got {value!r}"
        )
    return value


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise FaultPlanError(f"{where} must be true or false, got {value!r}")
    return value


def _rules(plan: Mapping[str, Any], key: str) -> list[Any]:
    rules = plan.get(key, [])
    if not isinstance(rules, list):
        raise FaultPlanError(f"{key} must be a list of rules, got {_kind(rules)}")
    return rules


def parse_plan(raw: Any) -> FaultPlan:
    """A plan from its JSON document (already decoded), or FaultPlanError naming the first problem."""
    plan = _object(
        raw,
        "the fault plan",
        ("lambda_errors", "lambda_crashes", "stream_duplicates", "nats_down_for_s", "seed"),
    )
    errors = []
    for i, rule in enumerate(_rules(plan, "lambda_errors")):
        where = f"lambda_errors[{i}]"
        fields = _object(
            rule,
            where,
            ("functions", "error_type", "error_message", "attempts", "probability"),
            ("functions", "error_type"),
        )
        attempts = fields.get("attempts", 1)
        if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= MAX_ATTEMPTS:
            raise FaultPlanError(
                f"{where}.attempts must be an integer from 1 to {MAX_ATTEMPTS}, got {attempts!r}"
            )
        error_type = _text(fields["error_type"], f"{where}.error_type", limit=256)
        if any(c.isspace() for c in error_type):
            raise FaultPlanError(
                f"{where}.error_type must be an error name without spaces, got {error_type!r}"
            )
        errors.append(
            LambdaErrorRule(
                functions=_functions(fields["functions"], f"{where}.functions"),
                error_type=error_type,
                error_message=_text(
                    fields.get("error_message", DEFAULT_ERROR_MESSAGE), f"{where}.error_message", limit=4096
                ),
                attempts=attempts,
                probability=_probability(fields.get("probability", 1.0), f"{where}.probability"),
            )
        )
    crashes = []
    for i, rule in enumerate(_rules(plan, "lambda_crashes")):
        where = f"lambda_crashes[{i}]"
        fields = _object(rule, where, ("functions", "probability", "first_attempt_only"), ("functions",))
        crashes.append(
            LambdaCrashRule(
                functions=_functions(fields["functions"], f"{where}.functions"),
                probability=_probability(fields.get("probability", 1.0), f"{where}.probability"),
                first_attempt_only=_boolean(
                    fields.get("first_attempt_only", True), f"{where}.first_attempt_only"
                ),
            )
        )
    duplicates = []
    for i, rule in enumerate(_rules(plan, "stream_duplicates")):
        where = f"stream_duplicates[{i}]"
        fields = _object(rule, where, ("functions", "probability"), ("functions",))
        duplicates.append(
            StreamDuplicateRule(
                functions=_functions(fields["functions"], f"{where}.functions"),
                probability=_probability(fields.get("probability", 1.0), f"{where}.probability"),
            )
        )
    down = plan.get("nats_down_for_s")
    if down is not None and (
        isinstance(down, bool)
        or not isinstance(down, (int, float))
        or not math.isfinite(down)
        or not 0 < down <= MAX_NATS_DOWN_S
    ):
        raise FaultPlanError(
            f"nats_down_for_s must be a number of seconds above 0 and at most {MAX_NATS_DOWN_S:.0f}, "
            f"got {down!r}"
        )
    seed = plan.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise FaultPlanError(f"seed must be an integer, got {seed!r}")
    return FaultPlan(
        lambda_errors=tuple(errors),
        lambda_crashes=tuple(crashes),
        stream_duplicates=tuple(duplicates),
        nats_down_for_s=float(down) if down is not None else None,
        seed=seed,
    )


# ---- resolving a plan against what is deployed -------------------------------------------------------------
@dataclass(frozen=True)
class FunctionFaults:
    """The rules that apply to one deployed function: every error rule in plan order (a payload gets the
    first of those chosen for it that still has attempts left), and the first crash rule."""

    errors: tuple[LambdaErrorRule, ...]
    crash: LambdaCrashRule | None


def _matches(pattern: str, spec: FunctionSpec) -> bool:
    return fnmatch.fnmatchcase(spec.name, pattern) or fnmatch.fnmatchcase(spec.logical_id, pattern)


def _matched(
    patterns: Sequence[str], where: str, candidates: Sequence[FunctionSpec], what: str
) -> list[FunctionSpec]:
    found: dict[str, FunctionSpec] = {}
    for pattern in patterns:
        hits = [spec for spec in candidates if _matches(pattern, spec)]
        if not hits:
            known = sorted(spec.logical_id for spec in candidates)
            shown = ", ".join(known[:30]) + (f" and {len(known) - 30} more" if len(known) > 30 else "")
            raise FaultPlanError(
                f"{where}: {pattern!r} matches no {what} (by name or logical id); known: {shown or 'none'}"
            )
        found.update((spec.name, spec) for spec in hits)
    return list(found.values())


def resolve(
    plan: FaultPlan, functions: Mapping[str, FunctionSpec], stream_functions: Collection[str]
) -> tuple[dict[str, FunctionFaults], dict[str, StreamDuplicateRule]]:
    """The rules for each deployed function (by physical name); a pattern that matches none is an error."""
    deployed = list(functions.values())
    errors: dict[str, list[LambdaErrorRule]] = {}
    crashes: dict[str, LambdaCrashRule] = {}
    for i, error_rule in enumerate(plan.lambda_errors):
        for spec in _matched(
            error_rule.functions, f"lambda_errors[{i}].functions", deployed, "deployed function"
        ):
            errors.setdefault(spec.name, []).append(error_rule)
    for i, crash_rule in enumerate(plan.lambda_crashes):
        for spec in _matched(
            crash_rule.functions, f"lambda_crashes[{i}].functions", deployed, "deployed function"
        ):
            crashes.setdefault(spec.name, crash_rule)
    lambda_rules = {
        name: FunctionFaults(errors=tuple(errors.get(name, ())), crash=crashes.get(name))
        for name in {*errors, *crashes}
    }
    consumers = [spec for spec in deployed if spec.name in stream_functions]
    duplicates: dict[str, StreamDuplicateRule] = {}
    for i, duplicate_rule in enumerate(plan.stream_duplicates):
        where = f"stream_duplicates[{i}].functions"
        for spec in _matched(
            duplicate_rule.functions, where, consumers, "function with a DynamoDB stream source"
        ):
            duplicates.setdefault(spec.name, duplicate_rule)
    return lambda_rules, duplicates


# ---- the injector ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LambdaFault:
    """What to do to one invoke: answer `error_type` without running, or run and then crash."""

    crash: bool = False
    error_type: str = ""
    error_message: str = ""


CRASH = LambdaFault(crash=True)


class FaultInjector:
    """Holds the current plan and the counters; the runtime and the stream pollers ask it what to do.

    Call it from the event loop only (the runtime and the pollers live there), so it needs no lock.
    """

    def __init__(
        self,
        functions: Callable[[], Mapping[str, FunctionSpec]] = dict,
        stream_functions: Callable[[], Collection[str]] = frozenset,
    ) -> None:
        self._functions = functions
        self._stream_functions = stream_functions
        self.plan: FaultPlan | None = None
        self.seed = 0
        # Empty unless a plan is set: the hot path is one lookup in them.
        self._lambda_rules: dict[str, FunctionFaults] = {}
        self._stream_rules: dict[str, StreamDuplicateRule] = {}
        # Fault choices need to be reproducible from the seed, not unpredictable.
        self._random = random.Random()  # noqa: S311
        # (function, sha256 of the payload) -> [invocations, runs of the handler, then one 0/1 per error
        # rule of the function: whether that rule was chosen for this payload]
        self._seen: OrderedDict[tuple[str, bytes], list[int]] = OrderedDict()
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self.by_function: dict[str, dict[str, int]] = {kind: {} for kind in PER_FUNCTION}

    @property
    def active(self) -> bool:
        return self.plan is not None

    def set_plan(self, plan: FaultPlan) -> None:
        """Replaces the plan, and starts a new experiment: counters and remembered payloads start over."""
        lambda_rules, stream_rules = resolve(plan, self._functions(), set(self._stream_functions()))
        self.plan = plan
        self.seed = plan.seed if plan.seed is not None else random.SystemRandom().randrange(2**32)
        self._random = random.Random(self.seed)  # noqa: S311
        self._lambda_rules, self._stream_rules = lambda_rules, stream_rules
        self._seen.clear()
        self.counters = dict.fromkeys(COUNTER_NAMES, 0)
        self.by_function = {kind: {} for kind in PER_FUNCTION}

    def clear(self) -> None:
        """No faults from now on; the counters stay readable until the next plan."""
        self.plan = None
        self._lambda_rules, self._stream_rules = {}, {}
        self._seen.clear()

    def count(self, kind: str, function: str | None = None) -> None:
        self.counters[kind] += 1
        if function is not None:
            per = self.by_function[kind]
            per[function] = per.get(function, 0) + 1

    # ---- decisions -------------------------------------------------------------------------------------
    def lambda_fault(self, function: str, payload: bytes) -> LambdaFault | None:
        """The fault for this invoke of `function` (a physical name), or None to run it normally."""
        rules = self._lambda_rules.get(function)
        if rules is None:
            return None
        key = (function, hashlib.sha256(payload).digest())
        seen = self._seen.get(key)
        if seen is None:
            chosen = [
                int(r.probability >= 1.0 or self._random.random() < r.probability) for r in rules.errors
            ]
            seen = self._seen[key] = [0, 0, *chosen]
            if len(self._seen) > MAX_REMEMBERED_PAYLOADS:
                self._seen.popitem(last=False)
        seen[0] += 1
        for rule, chosen_for_it in zip(rules.errors, seen[2:], strict=True):
            if chosen_for_it and seen[0] <= rule.attempts:
                self.count("lambda_errors", function)
                return LambdaFault(error_type=rule.error_type, error_message=rule.error_message)
        seen[1] += 1
        crash = rules.crash
        if crash is None or (crash.first_attempt_only and seen[1] > 1):
            return None
        return CRASH if self._random.random() < crash.probability else None

    def crashed(self, function: str) -> None:
        """The runtime killed a worker as told: counted only once it really happened."""
        self.count("lambda_crashes", function)

    def duplicate_delivery(self, function: str) -> bool:
        """Whether the stream batch just delivered to `function` is to be delivered again."""
        rule = self._stream_rules.get(function)
        if rule is None or self._random.random() >= rule.probability:
            return False
        self.count("stream_duplicates", function)
        return True

    def snapshot(self) -> dict[str, Any]:
        """The plan, the seed its random choices use, and what was injected since it was set."""
        return {
            "active": self.active,
            "plan": self.plan.to_json() if self.plan is not None else None,
            "seed": self.seed if self.plan is not None else None,
            "counters": dict(self.counters),
            "by_function": {kind: dict(per) for kind, per in self.by_function.items()},
        }


# ---- the client, for tests and benchmarks ------------------------------------------------------------------
class FaultClient:
    """The fault API of a running local cloud: `FaultClient("http://127.0.0.1:4566").set_plan({...})`."""

    def __init__(self, edge_url: str, *, timeout_s: float = 60.0) -> None:
        self.url = edge_url.rstrip("/") + FAULTS_PATH
        self.timeout_s = timeout_s

    def set_plan(self, plan: Mapping[str, Any]) -> dict[str, Any]:
        """Replaces the plan (and resets the counters); raises FaultPlanError when the cloud refuses it."""
        return self._call("PUT", "", plan)

    def clear(self) -> dict[str, Any]:
        """No more faults; a NATS server the faults stopped is started again."""
        return self._call("DELETE", "")

    def status(self) -> dict[str, Any]:
        return self._call("GET", "")

    def counters(self) -> dict[str, int]:
        counters: dict[str, int] = self.status()["counters"]
        return counters

    def nats_stop(self) -> dict[str, Any]:
        return self._call("POST", "/nats/stop")

    def nats_start(self) -> dict[str, Any]:
        return self._call("POST", "/nats/start")

    def nats_kill_node(self, node: str = "leader", restart_after_s: float | None = 5.0) -> dict[str, Any]:
        """SIGKILL one NATS node (a name, or "leader": the VAULTPAY stream's), restarted after N s."""
        return self._call("POST", "/nats/kill", {"node": node, "restart_after_s": restart_after_s})

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - the local cloud's own endpoint
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            try:
                message = str(json.loads(text).get("message", text))
            except (ValueError, AttributeError):
                message = text
            if exc.code == 400:
                raise FaultPlanError(message) from None
            raise RuntimeError(f"{method} {self.url + path} failed with HTTP {exc.code}: {message}") from None

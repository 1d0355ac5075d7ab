"""CloudWatch Logs subscription filters: matching log events go to a Lambda, gzipped, as AWS delivers them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import logging
import re
import shlex
import uuid
from collections.abc import Sequence
from typing import Any

from localcloud.logs import LogEvent, cloudwatch_message
from localcloud.spec import ACCOUNT_ID, Invoker, SubscriptionFilterSpec

log = logging.getLogger(__name__)

_JSON_TERM = re.compile(
    r"""\s*\$\.(?P<path>[A-Za-z0-9_.\-\[\]]+)\s*(?P<op>=|!=|<=|>=|<|>)\s*(?P<value>"(?:[^"\\]|\\.)*"|[^\s&|)]+)\s*"""
)


class FilterPatternError(ValueError):
    """A filter pattern the local cloud does not understand (it refuses rather than match wrongly)."""


def _lookup(document: Any, path: str) -> tuple[bool, Any]:
    current = document
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            index = int(part[1:-1])
            if not isinstance(current, list) or index >= len(current):
                return False, None
            current = current[index]
        else:
            if not isinstance(current, dict) or part not in current:
                return False, None
            current = current[part]
    return True, current


def _compare(actual: Any, op: str, raw: str) -> bool:
    if raw.startswith('"'):
        expected = json.loads(raw)
        if op not in ("=", "!="):
            raise FilterPatternError(f"operator {op} needs a number, got {raw}")
        regex = "^" + ".*".join(re.escape(p) for p in expected.split("*")) + "$"
        hit = isinstance(actual, str) and re.match(regex, actual) is not None
        return hit if op == "=" else not hit
    if raw in ("true", "false", "null"):
        wanted = {"true": True, "false": False, "null": None}[raw]
        return (actual is wanted) if op == "=" else (actual is not wanted)
    try:
        number = float(raw)
    except ValueError:
        # An unquoted word compares as a string, as CloudWatch allows for simple values.
        return _compare(actual, op, json.dumps(raw))
    if isinstance(actual, bool) or not isinstance(actual, int | float):
        return op == "!="
    return {
        "=": actual == number,
        "!=": actual != number,
        "<": actual < number,
        "<=": actual <= number,
        ">": actual > number,
        ">=": actual >= number,
    }[op]


def matches(pattern: str, message: str) -> bool:
    """CloudWatch Logs filter-pattern matching: empty (everything), terms, "quoted phrases", -exclusions,
    and JSON patterns `{ $.a.b = "x" && $.n > 3 }` (conjunctions or disjunctions, not both)."""
    text = pattern.strip()
    if not text:
        return True
    if text.startswith("{"):
        if not text.endswith("}"):
            raise FilterPatternError(f"unbalanced JSON filter pattern: {pattern}")
        try:
            document = json.loads(message)
        except ValueError:
            return False
        body = text[1:-1]
        if "&&" in body and "||" in body:
            raise FilterPatternError("mixing && and || is not supported by the local cloud")
        joiner = "||" if "||" in body else "&&"
        results = []
        for clause in body.split(joiner):
            term = _JSON_TERM.fullmatch(clause.strip().strip("()"))
            if term is None:
                raise FilterPatternError(f"unsupported JSON filter clause: {clause.strip()}")
            found, actual = _lookup(document, term.group("path"))
            results.append(found and _compare(actual, term.group("op"), term.group("value")))
        return any(results) if joiner == "||" else all(results)
    terms = shlex.split(text)
    return all(
        (t[1:] not in message) if t.startswith("-") and len(t) > 1 else (t in message) for t in terms if t
    )


def delivery_payload(spec: SubscriptionFilterSpec, stream: str, events: Sequence[LogEvent]) -> dict[str, Any]:
    """The `{"awslogs": {"data": base64(gzip(json))}}` event a subscribed Lambda receives."""
    document = {
        "messageType": "DATA_MESSAGE",
        "owner": ACCOUNT_ID,
        "logGroup": spec.log_group,
        "logStream": stream,
        "subscriptionFilters": [spec.name],
        "logEvents": [
            {"id": str(uuid.uuid4().int)[:56], "timestamp": e.timestamp_ms, "message": e.message}
            for e in events
        ],
    }
    data = base64.b64encode(gzip.compress(json.dumps(document).encode())).decode()
    return {"awslogs": {"data": data}}


class SubscriptionDelivery:
    """Taps the log shipper (on its thread) and invokes each subscribed function on the event loop."""

    def __init__(
        self, filters: Sequence[SubscriptionFilterSpec], invoker: Invoker, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.filters = list(filters)
        self.invoker = invoker
        self.loop = loop
        self.delivered = 0
        self.failed = 0

    def add(self, filters: Sequence[SubscriptionFilterSpec]) -> None:
        self.filters.extend(filters)

    def __call__(self, group: str, stream: str, events: Sequence[LogEvent]) -> None:
        for spec in self.filters:
            if spec.log_group != group:
                continue
            matched = [e for e in events if matches(spec.pattern, cloudwatch_message(e.message).rstrip("\n"))]
            if not matched:
                continue
            payload = json.dumps(delivery_payload(spec, stream, matched)).encode()
            future = asyncio.run_coroutine_threadsafe(
                self.invoker.invoke(spec.function_name, payload, invocation_type="Event"), self.loop
            )
            future.add_done_callback(self._count)
            self.delivered += len(matched)

    def _count(self, future: Any) -> None:
        with contextlib.suppress(Exception):
            if future.exception() is not None:
                self.failed += 1
                log.warning("subscription delivery failed: %r", future.exception())

    def stats(self) -> dict[str, int]:
        return {"filters": len(self.filters), "delivered": self.delivered, "failed": self.failed}

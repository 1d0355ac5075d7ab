"""CloudWatch Logs filter patterns and the subscription delivery payload, as AWS defines them."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from typing import Any

import pytest

from localcloud.logs import LogEvent
from localcloud.spec import InvokeResult, SubscriptionFilterSpec
from localcloud.subscriptions import FilterPatternError, SubscriptionDelivery, delivery_payload, matches

pytestmark = pytest.mark.unit

LINE = json.dumps({"level": "INFO", "message": "request logged", "status": 502, "route": "/v1/me"})


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("", True),
        ("request", True),
        ("ERROR", False),
        ('"request logged"', True),
        ("request -ERROR", True),
        ('{ $.message = "request logged" }', True),
        ('{ $.message = "request*" }', True),
        ('{ $.message != "request logged" }', False),
        ("{ $.status >= 500 }", True),
        ("{ $.status < 500 }", False),
        ('{ $.status = 502 && $.route = "/v1/me" }', True),
        ('{ $.status = 200 || $.route = "/v1/me" }', True),
        ('{ $.missing = "x" }', False),
    ],
)
def test_filter_patterns_match_like_cloudwatch_logs(pattern: str, expected: bool) -> None:
    assert matches(pattern, LINE) is expected


def test_a_json_pattern_never_matches_a_plain_text_line() -> None:
    assert matches('{ $.message = "x" }', "START RequestId: 1 Version: $LATEST") is False


def test_an_unsupported_pattern_is_refused_rather_than_guessed() -> None:
    with pytest.raises(FilterPatternError):
        matches("{ $.a = 1 && $.b = 2 || $.c = 3 }", LINE)


def test_the_delivery_is_gzipped_base64_json_in_the_awslogs_shape() -> None:
    spec = SubscriptionFilterSpec("F", "filter-1", "/g", "", "sink")
    payload = delivery_payload(spec, "stream-1", [LogEvent("/g", "stream-1", "fn", 1700000000000, LINE)])
    document = json.loads(gzip.decompress(base64.b64decode(payload["awslogs"]["data"])))
    assert document["messageType"] == "DATA_MESSAGE"
    assert document["logGroup"] == "/g"
    assert document["subscriptionFilters"] == ["filter-1"]
    assert document["logEvents"][0]["message"] == LINE
    assert document["logEvents"][0]["timestamp"] == 1700000000000


class RecordingInvoker:
    """Keeps what each Event invocation was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def invoke(
        self,
        function: str,
        payload: bytes,
        *,
        invocation_type: str = "RequestResponse",
        log_type: str = "None",
    ) -> InvokeResult:
        self.calls.append((function, json.loads(payload)))
        return InvokeResult(status=202, payload=b"")


def test_a_group_among_many_subscribed_ones_delivers_only_through_its_own_filter() -> None:
    # Given one request-log subscription per API function's group, all to the relay (as template.yaml has)
    groups = [f"/vaultpay/local/api/Function{i}" for i in range(25)]
    pattern = '{ $.message = "request logged" }'
    filters = [
        SubscriptionFilterSpec(f"F{i}", f"filter-{i}", g, pattern, "relay") for i, g in enumerate(groups)
    ]
    invoker = RecordingInvoker()

    async def ship_and_wait() -> SubscriptionDelivery:
        delivery = SubscriptionDelivery(filters, invoker, asyncio.get_running_loop())
        # When one function's group ships its request line and a runtime line, and a group without a
        # subscription ships a request-shaped line, on the log shipper's thread
        lines = [
            LogEvent(groups[7], "s", "Function7", 1, LINE),
            LogEvent(groups[7], "s", "Function7", 2, "END"),
        ]
        await asyncio.to_thread(delivery, groups[7], "s", lines)
        other = "/vaultpay/local/functions/RelayFunction"
        await asyncio.to_thread(delivery, other, "s", [LogEvent(other, "s", "RelayFunction", 3, LINE)])
        for _ in range(100):
            if invoker.calls:
                break
            await asyncio.sleep(0.01)
        return delivery

    delivery = asyncio.run(ship_and_wait())
    # Then the relay is invoked once, for that group through its own filter, with the request line alone
    ((function, payload),) = invoker.calls
    document = json.loads(gzip.decompress(base64.b64decode(payload["awslogs"]["data"])))
    assert function == "relay"
    assert (document["logGroup"], document["subscriptionFilters"]) == (groups[7], ["filter-7"])
    assert [event["message"] for event in document["logEvents"]] == [LINE]
    assert delivery.stats() == {"filters": 25, "delivered": 1, "failed": 0}

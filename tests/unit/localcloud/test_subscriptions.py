"""CloudWatch Logs filter patterns and the subscription delivery payload, as AWS defines them."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from localcloud.logs import LogEvent
from localcloud.spec import SubscriptionFilterSpec
from localcloud.subscriptions import FilterPatternError, delivery_payload, matches

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

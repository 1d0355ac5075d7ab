"""template.yaml's DynamoDB tables, created on an emulator (moto or DynamoDB Local) for a test.

The template is the tables' one definition: a test asks for a table by its logical id (`AccountsTable`) and
gets the keys, attribute types, indexes and their projections, stream, TTL and billing mode the stack
deploys; only the name is the test's. A property the helper does not know fails loudly (a new one must be
applied or listed as ignored here), and tests/component/test_template_tables.py creates every table of the
template through it.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

from localcloud.template import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
TABLE_TYPE = "AWS::DynamoDB::Table"

# Passed to CreateTable as they stand (the stream and the TTL are translated below).
CREATE_TABLE_PROPERTIES = (
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "BillingMode",
    "ProvisionedThroughput",
)
# What a test cannot observe on an emulator, or what production alone needs; TableName is the test's.
IGNORED_PROPERTIES = frozenset(
    {
        "TableName",
        "SSESpecification",
        "PointInTimeRecoverySpecification",
        "DeletionProtectionEnabled",
        "ResourcePolicy",
        "Tags",
    }
)
KNOWN_PROPERTIES = frozenset(
    {*CREATE_TABLE_PROPERTIES, "StreamSpecification", "TimeToLiveSpecification", *IGNORED_PROPERTIES}
)


@functools.cache
def template() -> dict[str, Any]:
    """template.yaml as the local cloud reads it (CloudFormation's short tags as their long form), once."""
    return load_template(TEMPLATE)


def table_ids() -> list[str]:
    """The logical ids of the template's DynamoDB tables."""
    return sorted(k for k, v in template()["Resources"].items() if v.get("Type") == TABLE_TYPE)


def _intrinsic(value: Any) -> bool:
    if isinstance(value, dict):
        return any(k == "Ref" or k.startswith("Fn::") for k in value) or any(map(_intrinsic, value.values()))
    if isinstance(value, list):
        return any(map(_intrinsic, value))
    return False


def table_definition(logical_id: str, name: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """CreateTable's arguments for table `logical_id` as `name`, and UpdateTimeToLive's (None: no TTL)."""
    resource = template()["Resources"].get(logical_id)
    if resource is None or resource.get("Type") != TABLE_TYPE:
        raise KeyError(f"template.yaml has no {TABLE_TYPE} {logical_id!r}")
    props: dict[str, Any] = resource.get("Properties", {})
    unknown = sorted(set(props) - KNOWN_PROPERTIES)
    if unknown:
        raise ValueError(f"{logical_id}: tests/support/tables.py does not apply {', '.join(unknown)}")
    used = {k: v for k, v in props.items() if k not in IGNORED_PROPERTIES}
    if _intrinsic(used):
        raise ValueError(f"{logical_id}: an intrinsic function in its key, index, stream or TTL properties")
    arguments: dict[str, Any] = {"TableName": name}
    arguments.update(copy.deepcopy({k: used[k] for k in CREATE_TABLE_PROPERTIES if k in used}))
    if "StreamSpecification" in used:
        view = used["StreamSpecification"]["StreamViewType"]
        arguments["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": view}
    ttl = used.get("TimeToLiveSpecification")
    time_to_live = None
    if ttl and str(ttl.get("Enabled")).lower() == "true":
        time_to_live = {
            "TableName": name,
            "TimeToLiveSpecification": {"Enabled": True, "AttributeName": ttl["AttributeName"]},
        }
    return arguments, time_to_live


def create_table(client: Any, logical_id: str, name: str | None = None) -> str:
    """Creates template.yaml's table `logical_id` as `name` (default vaultpay-test-<logical id>) through a
    DynamoDB `client`, enables its TTL, waits until it is active, and returns its name."""
    name = name or f"vaultpay-test-{logical_id}"
    arguments, time_to_live = table_definition(logical_id, name)
    client.create_table(**arguments)
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    if time_to_live:
        client.update_time_to_live(**time_to_live)
    return name

"""The fraud tables as template.yaml defines them, created on an emulator for component tests."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_TABLE_PROPERTIES = (
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "BillingMode",
    "StreamSpecification",
)


@functools.cache
def _template() -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    return dict(yaml_parse((ROOT / "template.yaml").read_text()))


def create_table_from_template(client: Any, logical_id: str, name: str) -> None:
    """Creates table `logical_id` of template.yaml under `name` (keys, indexes, stream), and its TTL."""
    props = _template()["Resources"][logical_id]["Properties"]
    definition = {k: props[k] for k in _TABLE_PROPERTIES if k in props}
    if "StreamSpecification" in definition:
        definition["StreamSpecification"] = {"StreamEnabled": True, **definition["StreamSpecification"]}
    client.create_table(TableName=name, **definition)
    ttl = props.get("TimeToLiveSpecification")
    if ttl:
        client.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)


def fraud_config_document() -> str:
    """The value of the stage's fraud config parameter in template.yaml."""
    return str(_template()["Resources"]["FraudConfigParameter"]["Properties"]["Value"])

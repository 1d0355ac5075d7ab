"""support.tables: every DynamoDB table of template.yaml, created on moto as the template declares it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from support import tables
from support.tables import create_table, table_definition, table_ids, template

from vaultpay.audit.store import table_definition as audit_table_definition

pytestmark = pytest.mark.component


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(name)
    with mock_aws():
        yield boto3.client(
            "dynamodb", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
        )


def _indexes(indexes: list[dict[str, Any]]) -> dict[str, Any]:
    return {i["IndexName"]: (i["KeySchema"], i["Projection"]) for i in indexes}


def test_the_template_has_tables() -> None:
    assert len(table_ids()) >= 10  # every domain's tables (the parametrized test below needs them)


@pytest.mark.parametrize("logical_id", table_ids())
def test_each_template_table_is_created_as_the_template_declares_it(dynamodb: Any, logical_id: str) -> None:
    props = template()["Resources"][logical_id]["Properties"]

    name = create_table(dynamodb, logical_id)

    assert name == f"vaultpay-test-{logical_id}"
    table = dynamodb.describe_table(TableName=name)["Table"]
    assert table["KeySchema"] == props["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(props["AttributeDefinitions"], key=str)
    assert table["BillingModeSummary"]["BillingMode"] == props["BillingMode"]
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        assert _indexes(table.get(kind, [])) == _indexes(props.get(kind, [])), kind
    stream = props.get("StreamSpecification")
    assert table.get("StreamSpecification") == (stream and {"StreamEnabled": True, **stream})
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    if "TimeToLiveSpecification" in props:
        attribute = props["TimeToLiveSpecification"]["AttributeName"]
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": attribute}
    else:
        assert ttl["TimeToLiveStatus"] == "DISABLED"


def test_the_audit_tables_own_definition_is_the_templates() -> None:
    # `ops audit replay --create-table` creates a read model's table from vaultpay.audit.store (a Lambda
    # layer module cannot read the template): it stays template.yaml's AuditTable.
    arguments, time_to_live = table_definition("AuditTable", "t-replay")
    assert audit_table_definition("t-replay") == arguments
    assert time_to_live is None


@pytest.mark.parametrize(
    ("properties", "refusal"),
    [
        ({"ContributorInsightsSpecification": {"Enabled": True}}, "does not apply ContributorInsights"),
        ({"StreamSpecification": {"StreamViewType": {"Ref": "View"}}}, "an intrinsic function"),
    ],
)
def test_a_property_the_helper_cannot_apply_fails_loudly(
    monkeypatch: pytest.MonkeyPatch, properties: dict[str, Any], refusal: str
) -> None:
    key = {"KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]}
    resources = {"Odd": {"Type": "AWS::DynamoDB::Table", "Properties": {**key, **properties}}}
    monkeypatch.setattr(tables, "template", lambda: {"Resources": resources})
    with pytest.raises(ValueError, match=refusal):
        table_definition("Odd", "t-odd")
    with pytest.raises(KeyError, match="no AWS::DynamoDB::Table 'Missing'"):
        table_definition("Missing", "t-missing")

"""localcloud.edge.written_tables: which tables a DynamoDB write names, so only their stream pollers wake."""

from __future__ import annotations

import json

import pytest

from localcloud.edge import written_tables

pytestmark = pytest.mark.unit


def test_a_single_item_write_names_its_table() -> None:
    assert written_tables(json.dumps({"TableName": "accounts", "Item": {}}).encode()) == {"accounts"}


def test_a_transaction_and_a_batch_name_every_table_they_touch() -> None:
    transaction = {
        "TransactItems": [
            {"Put": {"TableName": "transfers", "Item": {}}},
            {"Update": {"TableName": "accounts", "Key": {}}},
            {"ConditionCheck": {"TableName": "accounts", "Key": {}}},
        ]
    }
    assert written_tables(json.dumps(transaction).encode()) == {"transfers", "accounts"}
    batch = {"RequestItems": {"audit": [], "fraud": []}}
    assert written_tables(json.dumps(batch).encode()) == {"audit", "fraud"}


def test_a_table_arn_counts_as_its_name() -> None:
    arn = "arn:aws:dynamodb:us-east-1:000000000000:table/outbox"
    assert written_tables(json.dumps({"TableName": arn}).encode()) == {"outbox"}


def test_a_write_whose_tables_cannot_be_read_wakes_every_poller() -> None:
    assert written_tables(json.dumps({"Statement": "UPDATE accounts SET x = 1"}).encode()) is None
    assert written_tables(b"not json") is None
    assert written_tables(b"[]") is None

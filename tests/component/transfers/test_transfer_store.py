"""The transfers store on DynamoDB Local: one transaction per change, conditioned, and the BySource list."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from support.accounts import dynamodb_client
from support.tables import create_table

from vaultpay.shared.errors import ValidationFailed
from vaultpay.transfers.model import Parties, new_transfer, parse_status_event, plan_status
from vaultpay.transfers.ports import StaleTransfer, TransferExists
from vaultpay.transfers.store import DynamoTransferStore

pytestmark = pytest.mark.component

SOURCE = "acc_" + uuid.uuid4().hex
PARTIES = Parties(SOURCE, "acc_" + uuid.uuid4().hex, "XXXXXXXX5678", "INR")


@pytest.fixture(scope="module")
def client(dynamodb_endpoint: str) -> Any:
    return dynamodb_client(dynamodb_endpoint)


@pytest.fixture(scope="module")
def store(client: Any) -> DynamoTransferStore:
    create_table(client, "TransfersTable", "vaultpay-test-transfers")
    return DynamoTransferStore(client, "vaultpay-test-transfers", sleep=lambda _s: None)


def _new(n: int = 0, amount: int = 250_000) -> Any:
    return new_transfer(
        transfer_id="tr_" + uuid.uuid4().hex,
        user_id="usr_1",
        parties=PARTIES,
        amount=amount,
        description="rent" if n % 2 else None,
        correlation_id="corr-1",
        at=f"2026-11-28T12:00:0{n}.000Z",
    )


def _outbox(client: Any) -> list[dict[str, Any]]:
    items = client.scan(TableName="vaultpay-test-transfers")["Items"]
    return [item for item in items if item["kind"]["S"] == "outbox"]


def test_a_transfer_and_its_event_are_written_together_and_read_back_exactly(
    store: DynamoTransferStore, client: Any
) -> None:
    transfer, event = _new(1, amount=10**12)
    before = len(_outbox(client))
    store.create(transfer, event)
    # Read back equal, amounts as exact integers
    assert store.get(transfer.transfer_id) == transfer
    assert isinstance(store.get(transfer.transfer_id).amount, int)  # type: ignore[union-attr]
    assert len(_outbox(client)) == before + 1
    # The same id again writes nothing
    with pytest.raises(TransferExists):
        store.create(transfer, _new()[1])
    assert len(_outbox(client)) == before + 1


def test_a_change_commits_only_on_the_status_and_version_it_was_planned_on(
    store: DynamoTransferStore, client: Any
) -> None:
    transfer, event = _new()
    store.create(transfer, event)
    command = parse_status_event({"op": "processing", "transfer_id": transfer.transfer_id})
    change = plan_status(transfer, command, at="2026-11-28T12:00:05.000Z")
    store.save(
        change.after,
        expected_status=change.expected_status,
        expected_version=change.expected_version,
        events=change.events,
    )  # type: ignore[union-attr]
    before = len(_outbox(client))
    # A second writer that planned on the same read loses, and none of its events are written
    with pytest.raises(StaleTransfer):
        store.save(
            change.after,
            expected_status=change.expected_status,
            expected_version=change.expected_version,
            events=change.events,
        )  # type: ignore[union-attr]
    assert len(_outbox(client)) == before
    assert store.get(transfer.transfer_id).status.value == "PROCESSING"  # type: ignore[union-attr]


def test_an_accounts_transfers_list_newest_first_page_by_page(store: DynamoTransferStore) -> None:
    account = "acc_" + uuid.uuid4().hex
    written = []
    for n in range(5):
        transfer, event = _new(n)
        transfer = type(transfer)(
            **{**{f: getattr(transfer, f) for f in transfer.__slots__}, "source_account_id": account}
        )
        store.create(transfer, event)
        written.append(transfer.transfer_id)
    seen, cursor = [], None
    while True:
        page = store.list_by_source(account, limit=2, cursor=cursor)
        seen += [t.transfer_id for t in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == written[::-1]
    with pytest.raises(ValidationFailed) as refused:
        store.list_by_source(account, limit=2, cursor="not-a-cursor")
    assert refused.value.code == "invalid_cursor"

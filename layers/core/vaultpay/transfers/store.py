"""The transfers table: transfer records and their outbox items (docs/transfers-contract.md).

Low-level DynamoDB client, as the ledger's store: every change is one `TransactWriteItems` holding the
transfer (conditioned on the status and version it was planned on) and its outbox events, and a failed
condition must be told apart from a lost race, which only the per-item cancellation reasons can do
(docs/persistence.md; the calls, retries and error translation are vaultpay.shared.dynamo's `Table`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from vaultpay.shared import dynamo as ddb
from vaultpay.shared.errors import ConcurrentModification, ConfigurationError
from vaultpay.shared.events import DomainEvent
from vaultpay.transfers.model import (
    Transfer,
    TransferPage,
    TransferStatus,
    steps_from_json,
    steps_json,
)
from vaultpay.transfers.ports import StaleTransfer, TransferExists

BY_SOURCE_INDEX = "BySource"


# ---- attribute values ------------------------------------------------------------------------------------


def _json(item: Mapping[str, Any], name: str) -> Any:
    text = ddb.str_attr(item, name)
    return json.loads(text) if text is not None else None


def transfer_item(transfer: Transfer) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": ddb.s(f"TRANSFER#{transfer.transfer_id}"),
        "sk": ddb.s("TRANSFER"),
        "kind": ddb.s("transfer"),
        "user_id": ddb.s(transfer.user_id),
        "source_account_id": ddb.s(transfer.source_account_id),
        # BySource's sort key: newest first by creation, the id breaking ties.
        "created_sk": ddb.s(f"{transfer.created_at}#{transfer.transfer_id}"),
        "destination_account_id": ddb.s(transfer.destination_account_id),
        "destination_account_number_masked": ddb.s(transfer.destination_account_number_masked),
        "amount": ddb.n(transfer.amount),
        "currency": ddb.s(transfer.currency),
        "status": ddb.s(transfer.status.value),
        "version": ddb.n(transfer.version),
        "correlation_id": ddb.s(transfer.correlation_id),
        "created_at": ddb.s(transfer.created_at),
        "updated_at": ddb.s(transfer.updated_at),
        # JSON text, as outbox data: DynamoDB numbers would come back as Decimals.
        "steps": ddb.s(steps_json(transfer.steps)),
    }
    if transfer.description is not None:
        item["description"] = ddb.s(transfer.description)
    for name in ("fraud", "review"):
        value = getattr(transfer, name)
        if value is not None:
            item[name] = ddb.s(json.dumps(dict(value), separators=(",", ":"), sort_keys=True))
    if transfer.failure_reason is not None:
        item["failure_reason"] = ddb.s(transfer.failure_reason)
    return item


def transfer_of(item: Mapping[str, Any]) -> Transfer:
    return Transfer(
        transfer_id=item["pk"]["S"].removeprefix("TRANSFER#"),
        user_id=item["user_id"]["S"],
        source_account_id=item["source_account_id"]["S"],
        destination_account_id=item["destination_account_id"]["S"],
        destination_account_number_masked=item["destination_account_number_masked"]["S"],
        amount=ddb.int_attr(item, "amount"),
        currency=item["currency"]["S"],
        status=TransferStatus(item["status"]["S"]),
        correlation_id=item["correlation_id"]["S"],
        created_at=item["created_at"]["S"],
        updated_at=item["updated_at"]["S"],
        description=ddb.str_attr(item, "description"),
        version=ddb.int_attr(item, "version"),
        steps=steps_from_json(item["steps"]["S"]),
        fraud=_json(item, "fraud"),
        review=_json(item, "review"),
        failure_reason=ddb.str_attr(item, "failure_reason"),
    )


def _transfer_key(transfer_id: str) -> dict[str, Any]:
    if not transfer_id.startswith("tr_"):
        raise ddb.InvalidCursor()
    return {"pk": ddb.s(f"TRANSFER#{transfer_id}"), "sk": ddb.s("TRANSFER")}


# ---- the store -------------------------------------------------------------------------------------------


class DynamoTransferStore:
    """The TransferStore port on the transfers table."""

    def __init__(self, client: Any, table_name: str, *, sleep: Callable[[float], None] = time.sleep) -> None:
        if not table_name:
            raise ConfigurationError("the transfers table name is not configured")
        self._db = ddb.Table(client, table_name, sleep=sleep)

    def get(self, transfer_id: str) -> Transfer | None:
        item = self._db.get({"pk": ddb.s(f"TRANSFER#{transfer_id}"), "sk": ddb.s("TRANSFER")})
        return transfer_of(item) if item is not None and ddb.str_attr(item, "kind") == "transfer" else None

    def list_by_source(self, source_account_id: str, *, limit: int, cursor: str | None) -> TransferPage:
        """Transfers sent from an account, newest first, from the BySource index (eventually consistent)."""
        params: dict[str, Any] = {
            "IndexName": BY_SOURCE_INDEX,
            "KeyConditionExpression": "source_account_id = :source",
            "ExpressionAttributeValues": {":source": ddb.s(source_account_id)},
            "ScanIndexForward": False,
        }
        # Resumed around the account asked for: a cursor can only resume inside that account's list.
        items, next_cursor = self._db.index_page(
            params,
            partition={"source_account_id": ddb.s(source_account_id)},
            cursor=cursor,
            cursor_name="t",
            item_key=_transfer_key,
            limit=limit,
        )
        return TransferPage(items=[transfer_of(item) for item in items], next_cursor=next_cursor)

    def create(self, transfer: Transfer, event: DomainEvent) -> None:
        """The PENDING transfer and its `initiated` event together; TransferExists if the id is taken."""
        failed = self._db.transact(
            [self._db.put_new(transfer_item(transfer)), self._db.put_new(ddb.outbox_item(event))]
        )
        if failed:
            if 0 in failed:
                raise TransferExists(transfer.transfer_id)
            raise ConcurrentModification("the event's id is already taken")

    def save(
        self,
        transfer: Transfer,
        *,
        expected_status: TransferStatus,
        expected_version: int,
        events: tuple[DomainEvent, ...],
    ) -> None:
        """The changed transfer and its events, if it still has the status and version read (else stale)."""
        items = [
            self._db.put_if(
                transfer_item(transfer),
                "kind = :transfer AND #status = :status AND version = :version",
                names={"#status": "status"},
                values={
                    ":transfer": ddb.s("transfer"),
                    ":status": ddb.s(expected_status.value),
                    ":version": ddb.n(expected_version),
                },
            ),
            *(self._db.put_new(ddb.outbox_item(event)) for event in events),
        ]
        if self._db.transact(items):
            raise StaleTransfer(transfer.transfer_id)

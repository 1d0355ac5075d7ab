"""The transfers table: transfer records and their outbox items (docs/transfers-contract.md).

Low-level DynamoDB client, as the ledger's store: every change is one `TransactWriteItems` holding the
transfer (conditioned on the status and version it was planned on) and its outbox events, and a failed
condition must be told apart from a lost race, which only the per-item cancellation reasons can do.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from vaultpay.shared import dynamo as ddb
from vaultpay.shared.errors import (
    ConcurrentModification,
    ConfigurationError,
    FieldError,
    TransientError,
    ValidationFailed,
)
from vaultpay.shared.events import DomainEvent
from vaultpay.transfers.model import (
    Transfer,
    TransferPage,
    TransferStatus,
    steps_from_json,
    steps_json,
)

BY_SOURCE_INDEX = "BySource"
TRANSACTION_ATTEMPTS = 4
TRANSACTION_BACKOFF_S = 0.02


class TransferExists(Exception):
    """A transfer with this id is already stored (a repeat of the same POST, or a race with it)."""


class StaleTransfer(Exception):
    """The transfer changed since it was read: re-read and plan again."""


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


# ---- the store -------------------------------------------------------------------------------------------


class DynamoTransferStore:
    """The TransferStore port on the transfers table."""

    def __init__(self, client: Any, table_name: str, *, sleep: Callable[[float], None] = time.sleep) -> None:
        if not table_name:
            raise ConfigurationError("the transfers table name is not configured")
        self._client = client
        self._table = table_name
        self._sleep = sleep

    def get(self, transfer_id: str) -> Transfer | None:
        response = self._call(
            "GetItem",
            lambda: self._client.get_item(
                TableName=self._table,
                Key={"pk": ddb.s(f"TRANSFER#{transfer_id}"), "sk": ddb.s("TRANSFER")},
                ConsistentRead=True,
            ),
        )
        item = response.get("Item")
        return transfer_of(item) if item is not None and ddb.str_attr(item, "kind") == "transfer" else None

    def list_by_source(self, source_account_id: str, *, limit: int, cursor: str | None) -> TransferPage:
        """Transfers sent from an account, newest first, from the BySource index (eventually consistent)."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": BY_SOURCE_INDEX,
            "KeyConditionExpression": "source_account_id = :source",
            "ExpressionAttributeValues": {":source": ddb.s(source_account_id)},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            created_sk = _decode_cursor(cursor)
            transfer_id = created_sk.rpartition("#")[2]
            if not transfer_id.startswith("tr_"):
                raise _invalid_cursor()
            # Rebuilt around the account asked for: a cursor can only resume inside that account's list.
            params["ExclusiveStartKey"] = {
                "source_account_id": ddb.s(source_account_id),
                "created_sk": ddb.s(created_sk),
                "pk": ddb.s(f"TRANSFER#{transfer_id}"),
                "sk": ddb.s("TRANSFER"),
            }
        response = self._call("Query", lambda: self._client.query(**params))
        items = [transfer_of(item) for item in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        next_cursor = _encode_cursor(last["created_sk"]["S"]) if last and len(items) == limit else None
        return TransferPage(items=items, next_cursor=next_cursor)

    def create(self, transfer: Transfer, event: DomainEvent) -> None:
        """The PENDING transfer and its `initiated` event together; TransferExists if the id is taken."""
        failed = self._transact([self._put(transfer_item(transfer)), self._put(ddb.outbox_item(event))])
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
            {
                "Put": {
                    "TableName": self._table,
                    "Item": transfer_item(transfer),
                    "ConditionExpression": "kind = :transfer AND #status = :status AND version = :version",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {
                        ":transfer": ddb.s("transfer"),
                        ":status": ddb.s(expected_status.value),
                        ":version": ddb.n(expected_version),
                    },
                }
            },
            *(self._put(ddb.outbox_item(event)) for event in events),
        ]
        if self._transact(items):
            raise StaleTransfer(transfer.transfer_id)

    # ---- plumbing -------------------------------------------------------------------------------------

    def _put(self, item: dict[str, Any]) -> dict[str, Any]:
        return {
            "Put": {"TableName": self._table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}
        }

    def _transact(self, items: list[dict[str, Any]]) -> set[int]:
        """Commits `items`; returns the positions whose conditions failed (empty: committed)."""
        for attempt in range(TRANSACTION_ATTEMPTS):
            try:
                self._client.transact_write_items(TransactItems=items)
            except (BotoCoreError, ClientError) as exc:
                code, reasons = ddb.error_code(exc), ddb.cancellation_reasons(exc)
                failed = {i for i, reason in enumerate(reasons) if reason == "ConditionalCheckFailed"}
                if failed:
                    return failed
                if code is None:
                    raise TransientError(f"DynamoDB could not be reached: {type(exc).__name__}") from exc
                if code in ddb.CONFIGURATION_CODES:
                    raise ConfigurationError(f"DynamoDB refused the transfer transaction: {code}") from exc
                retryable = code in ddb.TRANSIENT_CODES or any(r in ddb.RETRYABLE_REASONS for r in reasons)
                if not retryable:
                    raise TransientError(f"DynamoDB failed: {code}") from exc
                if attempt + 1 == TRANSACTION_ATTEMPTS:
                    raise ConcurrentModification("the transaction kept losing to concurrent writes") from exc
                self._sleep(random.uniform(0, TRANSACTION_BACKOFF_S * 2**attempt))  # noqa: S311 - jitter
                continue
            return set()
        raise ConcurrentModification("the transaction kept losing to concurrent writes")

    def _call(self, operation: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except (BotoCoreError, ClientError) as exc:
            code = ddb.error_code(exc)
            if code in ddb.CONFIGURATION_CODES:
                raise ConfigurationError(f"DynamoDB refused {operation}: {code}") from exc
            raise TransientError(f"DynamoDB {operation} failed: {code or type(exc).__name__}") from exc


def _encode_cursor(created_sk: str) -> str:
    raw = json.dumps({"t": created_sk}).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        document = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        value = document.get("t") if isinstance(document, dict) else None
    except (binascii.Error, ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, str) or not 1 <= len(value) <= 200:
        raise _invalid_cursor()
    return value


def _invalid_cursor() -> ValidationFailed:
    return ValidationFailed(
        "The cursor is not valid.", code="invalid_cursor", errors=[FieldError("cursor", "is not valid")]
    )

"""The shared DynamoDB table helper against a fake client: errors translated one way, transactions retried
with bounded jitter, per-item cancellation reasons, pages and batch reads (no I/O)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from vaultpay.shared import dynamo as ddb
from vaultpay.shared.errors import (
    ConcurrentModification,
    ConfigurationError,
    TransientError,
    ValidationFailed,
    VaultPayError,
)

pytestmark = pytest.mark.unit

TABLE = "AccountsTable"


def client_error(
    code: str, operation: str = "TransactWriteItems", reasons: list[str] | None = None
) -> ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": "refused"}}
    if reasons is not None:
        response["CancellationReasons"] = [{"Code": reason} for reason in reasons]
    return ClientError(response, operation)  # type: ignore[arg-type]


def cancelled(*reasons: str) -> ClientError:
    return client_error("TransactionCanceledException", reasons=list(reasons))


class FakeClient:
    """Answers each call from a script: an exception is raised, anything else returned."""

    def __init__(self, **scripts: list[Any]) -> None:
        self.scripts = scripts
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        def call(**request: Any) -> Any:
            self.calls.append((operation, request))
            answer = self.scripts[operation].pop(0)
            if isinstance(answer, BaseException):
                raise answer
            return answer

        return call


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, delay: float) -> None:
        self.delays.append(delay)


# ---- the one translation of AWS error codes -----------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("ConditionalCheckFailedException", ddb.ConditionFailed),
        ("ResourceNotFoundException", ConfigurationError),
        ("AccessDeniedException", ConfigurationError),
        ("UnrecognizedClientException", ConfigurationError),
        ("ValidationException", ConfigurationError),
        ("ProvisionedThroughputExceededException", TransientError),
        ("ThrottlingException", TransientError),
        ("InternalServerError", TransientError),
        ("SomethingNewException", TransientError),
        (None, TransientError),
    ],
)
def test_every_aws_error_code_becomes_one_of_the_projects_errors(
    code: str | None, error: type[Exception]
) -> None:
    translated = ddb.translate(code, "GetItem", TABLE)

    assert type(translated) is error
    assert TABLE in translated.message


def test_a_failed_condition_left_uncaught_is_a_concurrent_modification_409() -> None:
    translated = ddb.translate("ConditionalCheckFailedException", "UpdateItem", TABLE)

    assert isinstance(translated, ConcurrentModification)
    assert translated.status == 409


def test_a_rejected_write_can_be_the_stores_own_error_but_a_rejected_read_stays_configuration() -> None:
    class Rejected(VaultPayError):
        pass

    assert (
        type(ddb.translate("ValidationException", "TransactWriteItems", TABLE, rejected=Rejected)) is Rejected
    )
    assert type(ddb.translate("ValidationException", "Query", TABLE, rejected=Rejected)) is ConfigurationError


def test_a_call_that_fails_is_raised_translated_with_the_vendor_error_as_its_cause() -> None:
    # Given a table whose client is throttled
    original = client_error("ProvisionedThroughputExceededException", "GetItem")
    table = ddb.Table(FakeClient(get_item=[original]), TABLE)

    # When an item is read
    with pytest.raises(TransientError) as caught:
        table.get({"pk": ddb.s("ACCOUNT#a"), "sk": ddb.s("ACCOUNT")})

    # Then the error is ours, and the vendor's is kept for the logs
    assert caught.value.__cause__ is original
    assert "ProvisionedThroughputExceededException" in caught.value.message


def test_a_client_that_cannot_connect_is_a_transient_error() -> None:
    table = ddb.Table(FakeClient(query=[EndpointConnectionError(endpoint_url="http://127.0.0.1:1")]), TABLE)

    with pytest.raises(TransientError, match="EndpointConnectionError"):
        table.query(KeyConditionExpression="pk = :pk")


def test_a_conditional_update_that_fails_raises_condition_failed() -> None:
    table = ddb.Table(
        FakeClient(update_item=[client_error("ConditionalCheckFailedException", "UpdateItem")]), TABLE
    )

    with pytest.raises(ddb.ConditionFailed):
        table.update({"pk": ddb.s("k")}, UpdateExpression="ADD #c :one", ConditionExpression="#c < :limit")


def test_get_reads_consistently_and_answers_none_for_a_missing_item() -> None:
    client = FakeClient(get_item=[{}])

    assert ddb.Table(client, TABLE).get({"pk": ddb.s("a"), "sk": ddb.s("b")}) is None
    assert client.calls == [
        (
            "get_item",
            {"TableName": TABLE, "Key": {"pk": {"S": "a"}, "sk": {"S": "b"}}, "ConsistentRead": True},
        )
    ]


# ---- transactions: per-item reasons and retries --------------------------------------------------------


def test_the_positions_whose_conditions_failed_are_returned_in_request_order() -> None:
    # Given a transaction of three items whose second one's condition fails
    table = ddb.Table(
        FakeClient(transact_write_items=[cancelled("None", "ConditionalCheckFailed", "None")]), TABLE
    )

    # When it is committed
    failed = table.transact([table.put_new({"pk": ddb.s(str(i))}) for i in range(3)])

    # Then the caller learns which item it was, and a failed condition is an answer, not retried
    assert failed == frozenset({1})


def test_a_committed_transaction_returns_no_failed_position_and_hands_over_its_response() -> None:
    responses: list[Any] = []
    table = ddb.Table(
        FakeClient(transact_write_items=[{"ConsumedCapacity": [{"CapacityUnits": 4.0}]}]), TABLE
    )

    failed = table.transact([table.put_new({"pk": ddb.s("a")})], on_commit=responses.append)

    assert failed == frozenset()
    assert responses == [{"ConsumedCapacity": [{"CapacityUnits": 4.0}]}]


def test_a_transaction_that_loses_a_race_is_retried_with_bounded_jitter_and_then_commits() -> None:
    # Given a transaction that loses twice to a concurrent one, then commits
    sleeps = Sleeps()
    client = FakeClient(
        transact_write_items=[
            cancelled("TransactionConflict", "None"),
            client_error("ThrottlingException"),
            {},
        ]
    )
    table = ddb.Table(client, TABLE, sleep=sleeps)

    # When it is committed
    failed = table.transact([table.put_new({"pk": ddb.s("a")}), table.put_new({"pk": ddb.s("b")})])

    # Then it was sent three times, pausing within the backoff's bounds in between
    assert failed == frozenset()
    assert len(client.calls) == 3
    assert len(sleeps.delays) == 2
    assert 0 <= sleeps.delays[0] <= 0.02
    assert 0 <= sleeps.delays[1] <= 0.04


def test_a_transaction_that_keeps_losing_gives_up_as_a_concurrent_modification() -> None:
    sleeps = Sleeps()
    client = FakeClient(transact_write_items=[cancelled("TransactionConflict") for _ in range(4)])
    table = ddb.Table(client, TABLE, sleep=sleeps)

    with pytest.raises(ConcurrentModification, match="kept losing") as caught:
        table.transact([table.put_new({"pk": ddb.s("a")})])

    assert len(client.calls) == 4  # the backoff's attempts, then no more
    assert len(sleeps.delays) == 3
    assert isinstance(caught.value.__cause__, ClientError)


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (client_error("AccessDeniedException"), ConfigurationError),
        (cancelled("ValidationError"), TransientError),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), TransientError),
    ],
)
def test_a_transaction_that_no_retry_can_fix_is_raised_at_once(
    failure: Exception, error: type[Exception]
) -> None:
    sleeps = Sleeps()
    client = FakeClient(transact_write_items=[failure])
    table = ddb.Table(client, TABLE, sleep=sleeps)

    with pytest.raises(error):
        table.transact([table.put_new({"pk": ddb.s("a")})])

    assert len(client.calls) == 1
    assert sleeps.delays == []


def test_one_attempt_reports_every_items_reason_for_a_caller_that_replans() -> None:
    table = ddb.Table(FakeClient(transact_write_items=[cancelled("None", "ConditionalCheckFailed")]), TABLE)

    cancellation = table.transact_once([table.put_new({"pk": ddb.s("a")}), table.put_new({"pk": ddb.s("b")})])

    assert cancellation is not None
    assert cancellation.code == "TransactionCanceledException"
    assert cancellation.reasons == (None, "ConditionalCheckFailed")
    assert cancellation.failed == frozenset({1})
    assert not cancellation.retryable


def test_a_conditional_put_carries_its_condition_names_and_values() -> None:
    table = ddb.Table(FakeClient(), TABLE)

    put = table.put_if(
        {"pk": ddb.s("HOLD#t")},
        "#status = :expected",
        names={"#status": "status"},
        values={":expected": ddb.s("HELD")},
    )

    assert put == {
        "Put": {
            "TableName": TABLE,
            "Item": {"pk": {"S": "HOLD#t"}},
            "ConditionExpression": "#status = :expected",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":expected": {"S": "HELD"}},
        }
    }
    assert table.put_new({"pk": ddb.s("a")})["Put"]["ConditionExpression"] == "attribute_not_exists(pk)"


# ---- the backoff ----------------------------------------------------------------------------------------


def test_the_backoff_is_full_jitter_doubling_up_to_its_cap() -> None:
    # Given a backoff that always draws the top of its range
    backoff = ddb.Backoff(attempts=10, base_s=0.1, cap_s=0.5, uniform=lambda low, high: high)

    # Then each delay doubles until the cap holds it
    assert [backoff.delay(k) for k in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_the_backoffs_jitter_is_drawn_from_zero() -> None:
    drawn: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        drawn.append((low, high))
        return low

    ddb.Backoff(base_s=0.02, uniform=uniform).pause(2)

    assert drawn == [(0.0, 0.08)]


# ---- pages and batch reads ------------------------------------------------------------------------------


def test_a_full_page_hands_back_where_it_stopped_and_a_short_page_does_not() -> None:
    last = {"pk": ddb.s("a"), "sk": ddb.s("ENTRY#000000000002")}
    client = FakeClient(
        query=[
            {"Items": [{"n": 1}, {"n": 2}], "LastEvaluatedKey": last},
            {"Items": [{"n": 3}], "LastEvaluatedKey": last},
        ]
    )
    table = ddb.Table(client, TABLE)

    assert table.query_page({"KeyConditionExpression": "pk = :pk"}, limit=2) == ([{"n": 1}, {"n": 2}], last)
    assert table.query_page({"KeyConditionExpression": "pk = :pk"}, limit=2, start=last) == ([{"n": 3}], None)
    assert client.calls[1][1] == {
        "TableName": TABLE,
        "KeyConditionExpression": "pk = :pk",
        "Limit": 2,
        "ExclusiveStartKey": last,
    }


def test_an_index_page_resumes_only_inside_the_callers_own_partition() -> None:
    # Given a cursor whose position names an account, handed back by a caller who owns another list
    client = FakeClient(query=[{"Items": [{"n": 1}], "LastEvaluatedKey": {"created_sk": ddb.s("t2#acc_2")}}])
    cursor = ddb.encode_cursor({"c": "t1#acc_1", "owner_id": "someone-else"})

    # When the next page is read
    items, next_cursor = ddb.Table(client, TABLE).index_page(
        {"IndexName": "ByOwner"},
        partition={"owner_id": ddb.s("me")},
        cursor=cursor,
        cursor_name="c",
        item_key=lambda account_id: {"pk": ddb.s(f"ACCOUNT#{account_id}"), "sk": ddb.s("ACCOUNT")},
        limit=1,
    )

    # Then the start key is rebuilt around the caller's own partition, whatever else the cursor holds
    assert client.calls[0][1]["ExclusiveStartKey"] == {
        "owner_id": {"S": "me"},
        "created_sk": {"S": "t1#acc_1"},
        "pk": {"S": "ACCOUNT#acc_1"},
        "sk": {"S": "ACCOUNT"},
    }
    assert items == [{"n": 1}]
    assert next_cursor == ddb.encode_position("c", "t2#acc_2")


def test_an_index_page_refuses_a_position_its_list_does_not_hold() -> None:
    def transfer_key(transfer_id: str) -> dict[str, Any]:
        if not transfer_id.startswith("tr_"):
            raise ddb.InvalidCursor()
        return {"pk": ddb.s(f"TRANSFER#{transfer_id}"), "sk": ddb.s("TRANSFER")}

    client = FakeClient(query=[])
    with pytest.raises(ddb.InvalidCursor):
        ddb.Table(client, TABLE).index_page(
            {},
            partition={"source_account_id": ddb.s("acc_1")},
            cursor=ddb.encode_position("t", "t1#acc_other"),
            cursor_name="t",
            item_key=transfer_key,
            limit=10,
        )
    assert client.calls == []


def test_a_batch_read_asks_again_for_unprocessed_keys_and_gives_up_after_its_attempts() -> None:
    key = {"pk": ddb.s("a"), "sk": ddb.s("b")}
    unprocessed = {"UnprocessedKeys": {TABLE: {"Keys": [key]}}}
    found = {"Responses": {TABLE: [{"pk": ddb.s("a")}]}}
    sleeps = Sleeps()

    table = ddb.Table(FakeClient(batch_get_item=[unprocessed, found]), TABLE, sleep=sleeps)
    assert table.batch_get([key]) == [{"pk": ddb.s("a")}]
    assert len(sleeps.delays) == 1

    stuck = ddb.Table(FakeClient(batch_get_item=[unprocessed] * 5), TABLE, sleep=sleeps)
    with pytest.raises(TransientError, match="unprocessed"):
        stuck.batch_get([key])


# ---- imports --------------------------------------------------------------------------------------------


LOW_LEVEL_STORES = (
    "vaultpay.shared.dynamo",
    "vaultpay.accounts.store",
    "vaultpay.transfers.store",
    "vaultpay.fraud.store",
    "vaultpay.audit.store",
    "vaultpay.shared.ratelimit_store",
)


def test_the_stores_on_the_low_level_client_import_neither_pynamodb_nor_botocore() -> None:
    # One fresh interpreter imports them all: membership of sys.modules, not timing (docs/persistence.md).
    child = (
        f"import importlib, sys; [importlib.import_module(m) for m in {LOW_LEVEL_STORES!r}]; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pynamodb', 'botocore'}))"
    )
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "[]"


def test_an_invalid_cursor_is_a_validation_failure_not_a_server_error() -> None:
    assert issubclass(ddb.InvalidCursor, ValidationFailed)
    assert ddb.InvalidCursor().status == 422

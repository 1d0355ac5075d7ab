"""Transfers use cases on fakes: requesting once per key, reading only one's own, listing, the saga's ops."""

from __future__ import annotations

import pytest
from support.transfers import DESTINATION, NUMBER, OWNER, SOURCE, AccountsResolver, make_transfers_service

from vaultpay.shared.errors import RateLimited, ValidationFailed
from vaultpay.shared.ratelimit import FakeCounterStore
from vaultpay.transfers.errors import (
    AccountNotFound,
    CurrencyMismatch,
    DestinationNotFound,
    SameAccount,
    TransferFinal,
    TransferNotFound,
)
from vaultpay.transfers.model import transfer_id_for
from vaultpay.transfers.service import CREATE_WINDOW

pytestmark = pytest.mark.unit


def _request(**changes: object) -> dict[str, object]:
    return {
        "user_id": OWNER,
        "device_id": "phone-1",
        "correlation_id": "corr-1",
        "request_scope": "POST /v1/transfers#" + OWNER + "#key-1",
        "source_account_id": SOURCE,
        "destination_account_number": NUMBER,
        "amount": 250_000,
        "currency": "INR",
        "description": "rent",
        **changes,
    }


def test_a_transfer_is_recorded_pending_announced_and_its_saga_started_once() -> None:
    service, store, saga = make_transfers_service()
    # When the owner requests a transfer
    view = service.create(**_request())  # type: ignore[arg-type]
    # Then it is PENDING, named after the request, and shows the destination masked only
    assert view["transfer_id"] == transfer_id_for("POST /v1/transfers#" + OWNER + "#key-1")
    assert (view["status"], view["destination_account_number_masked"]) == ("PENDING", "XXXXXXXX5678")
    assert NUMBER not in str(view) and NUMBER not in str(store.events)
    assert [e.type for e in store.events] == ["vaultpay.transaction.initiated"]
    # And its saga runs under the transfer's name with the contract's input
    assert saga.executions[view["transfer_id"]]["destination_account_id"] == DESTINATION
    assert saga.executions[view["transfer_id"]]["device_id"] == "phone-1"


def test_a_repeat_past_the_idempotency_record_finds_the_transfer_and_starts_nothing_new() -> None:
    resolver = AccountsResolver()
    service, store, saga = make_transfers_service(resolver=resolver)
    first = service.create(**_request())  # type: ignore[arg-type]
    again = service.create(**_request())  # type: ignore[arg-type]
    assert again == first
    assert (len(store.transfers), len(store.events), len(saga.executions), saga.starts) == (1, 1, 1, 2)
    # Accounts is asked beside the transfer read (the 202 waits on one of them, not both), and a repeat's
    # answer is dropped: nothing new is written or started for it
    assert resolver.calls == 2


def test_a_repeat_with_another_body_is_idempotency_key_reused() -> None:
    service, _store, _saga = make_transfers_service()
    service.create(**_request())  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed) as refused:
        service.create(**_request(amount=250_001))  # type: ignore[arg-type]
    assert refused.value.code == "idempotency_key_reused"


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"source_account_id": "acc_" + "9" * 32}, AccountNotFound),
        ({"user_id": "usr_intruder"}, AccountNotFound),
        ({"destination_account_number": "400000000000"}, DestinationNotFound),
        ({"destination_account_number": "400099990020"}, SameAccount),
    ],
)
def test_parties_accounts_refuse_are_refused_and_nothing_is_written(
    changes: dict[str, object], error: type
) -> None:
    service, store, saga = make_transfers_service()
    with pytest.raises(error):
        service.create(**_request(**changes))  # type: ignore[arg-type]
    assert (store.transfers, store.events, saga.executions) == ({}, [], {})


def test_a_currency_the_accounts_do_not_hold_is_currency_mismatch() -> None:
    resolver = AccountsResolver(
        {SOURCE: (OWNER, "400099990020", "INR"), DESTINATION: ("usr_b", NUMBER, "USD")}
    )
    service, _store, _saga = make_transfers_service(resolver=resolver)
    with pytest.raises(CurrencyMismatch):
        service.create(**_request())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"amount": 0}, "validation_failed"),
        ({"amount": 10**12 + 1}, "validation_failed"),
        ({"amount": True}, "validation_failed"),
        ({"description": "x" * 141}, "validation_failed"),
        ({"description": "tab\there"}, "validation_failed"),
        ({"currency": "USD"}, "currency_not_supported"),
    ],
)
def test_invalid_requests_never_reach_accounts(changes: dict[str, object], code: str) -> None:
    resolver = AccountsResolver()
    service, _store, _saga = make_transfers_service(resolver=resolver)
    with pytest.raises(ValidationFailed) as refused:
        service.create(**_request(**changes))  # type: ignore[arg-type]
    assert refused.value.code == code
    assert resolver.calls == 0


def test_a_user_creating_too_many_transfers_is_rate_limited_with_a_retry_after() -> None:
    service, _store, _saga = make_transfers_service(limit_store=FakeCounterStore())
    for n in range(CREATE_WINDOW.limit):
        service.create(**_request(request_scope=f"scope-{n}"))  # type: ignore[arg-type]
    with pytest.raises(RateLimited) as limited:
        service.create(**_request(request_scope="scope-one-too-many"))  # type: ignore[arg-type]
    assert limited.value.retry_after >= 1


def test_only_the_owner_sees_a_transfer_and_everyone_else_gets_the_same_404() -> None:
    service, _store, _saga = make_transfers_service()
    transfer_id = service.create(**_request())["transfer_id"]  # type: ignore[arg-type]
    assert service.get(OWNER, transfer_id)["transfer_id"] == transfer_id
    for user, wanted in [("usr_intruder", transfer_id), (OWNER, "tr_" + "0" * 32), (OWNER, "../etc")]:
        with pytest.raises(TransferNotFound):
            service.get(user, wanted)


def test_the_owner_lists_an_accounts_transfers_newest_first_and_others_get_404() -> None:
    service, _store, _saga = make_transfers_service()
    ids = [service.create(**_request(request_scope=f"s-{n}"))["transfer_id"] for n in range(3)]  # type: ignore[arg-type]
    first = service.list_for_account(OWNER, SOURCE, limit=2, cursor=None)
    rest = service.list_for_account(OWNER, SOURCE, limit=2, cursor=first.next_cursor)
    assert [t.transfer_id for t in first.items + rest.items] == ids[::-1]
    assert rest.next_cursor is None
    for user, account in [("usr_intruder", SOURCE), (OWNER, DESTINATION), (OWNER, "nonsense")]:
        with pytest.raises(AccountNotFound):
            service.list_for_account(user, account, limit=20, cursor=None)


def test_the_saga_ops_record_status_once_and_a_final_transfer_refuses_changes() -> None:
    service, store, _saga = make_transfers_service()
    transfer_id = service.create(**_request())["transfer_id"]  # type: ignore[arg-type]
    state = {"transfer_id": transfer_id, "amount": 250_000}
    assert service.apply_status({"op": "processing", "state": state})["status"] == "PROCESSING"
    assert service.apply_status({"op": "processing", "state": state})["status"] == "PROCESSING"
    fraud = {"decision": "APPROVE", "score": 3, "reasons": []}
    service.apply_status({"op": "approved", "state": {**state, "fraud": fraud}})
    done = service.apply_status({"op": "complete", "state": state})
    assert done["status"] == "COMPLETED"
    assert [s["name"] for s in done["steps"]] == ["initiated", "processing", "approved", "completed"]
    assert [e.type for e in store.events] == [
        "vaultpay.transaction.initiated",
        "vaultpay.transaction.debit.requested",
        "vaultpay.transaction.credit.requested",
        "vaultpay.transaction.completed",
    ]
    with pytest.raises(TransferFinal):
        service.apply_status({"op": "fail", "state": state})
    assert service.apply_status({"op": "view", "transfer_id": transfer_id}) == done
    with pytest.raises(TransferNotFound):
        service.apply_status({"op": "processing", "state": {"transfer_id": "tr_" + "0" * 32}})


def test_a_status_op_that_loses_a_race_reads_again_and_applies_once() -> None:
    service, store, _saga = make_transfers_service()
    transfer_id = service.create(**_request())["transfer_id"]  # type: ignore[arg-type]
    real_save = store.save
    raced: list[bool] = []

    def racing_save(transfer, **kwargs):  # type: ignore[no-untyped-def]
        if not raced:
            # A concurrent delivery of the same op commits between this one's read and its write
            raced.append(True)
            real_save(transfer, **kwargs)
        return real_save(transfer, **kwargs)

    store.save = racing_save  # type: ignore[method-assign]
    view = service.apply_status({"op": "processing", "state": {"transfer_id": transfer_id}})
    assert view["status"] == "PROCESSING"
    assert [e.type for e in store.events].count("vaultpay.transaction.debit.requested") == 1

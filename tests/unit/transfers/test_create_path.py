"""POST /v1/transfers' synchronous path on fakes: the transfer read, the user's count and the question to
accounts go out together."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from support.transfers import NUMBER, OWNER, SOURCE, AccountsResolver, make_transfers_service

from vaultpay.shared.errors import RateLimited, TransientError
from vaultpay.shared.ratelimit import FakeCounterStore
from vaultpay.transfers.errors import AccountNotFound
from vaultpay.transfers.service import CREATE_WINDOW

pytestmark = pytest.mark.unit


def _request(scope: str) -> dict[str, Any]:
    return {
        "user_id": OWNER,
        "device_id": "phone-1",
        "correlation_id": "corr-1",
        "request_scope": scope,
        "source_account_id": SOURCE,
        "destination_account_number": NUMBER,
        "amount": 250_000,
        "currency": "INR",
        "description": "rent",
    }


def _service(counters: Any) -> Any:
    service, store, saga = make_transfers_service(limit_store=counters)

    def create(scope: str) -> dict[str, Any]:
        return dict(service.create(**_request(scope)))

    return create, store, saga


def test_a_repeat_over_the_limit_still_answers_its_transfer() -> None:
    # Given a transfer requested once, then the user's window used up by other requests
    create, _store, saga = _service(FakeCounterStore())
    first = create("scope-first")
    for n in range(CREATE_WINDOW.limit - 1):
        create(f"scope-{n}")
    with pytest.raises(RateLimited):
        create("scope-one-too-many")
    # When the first request is repeated (past its idempotency record)
    again = create("scope-first")
    # Then it answers the transfer already written, not 429: the repeat asks for nothing new
    assert again == first
    assert saga.executions[first["transfer_id"]]


class _FailingCounters(FakeCounterStore):
    def increment(self, key: str, expires_at: int) -> int:
        raise TransientError("the counters table did not answer")


def test_a_counter_that_fails_fails_the_request() -> None:
    create, store, _saga = _service(_FailingCounters())
    with pytest.raises(TransientError):
        create("scope-1")
    assert store.transfers == {}


class _CountingThreads(FakeCounterStore):
    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()

    def increment(self, key: str, expires_at: int) -> int:
        self.threads.add(threading.current_thread().name)
        return super().increment(key, expires_at)


def test_the_count_runs_beside_the_transfer_read_not_after_it() -> None:
    counters = _CountingThreads()
    create, _store, _saga = _service(counters)
    create("scope-1")
    (thread,) = counters.threads
    assert thread.startswith("transfers-create")


class _ThreadNotingResolver(AccountsResolver):
    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()
        self.refuse = False

    def resolve(self, **kwargs: Any) -> Any:
        self.threads.add(threading.current_thread().name)
        if self.refuse:
            raise AccountNotFound("No such account.")
        return super().resolve(**kwargs)


def test_the_parties_are_asked_beside_the_read_and_the_count() -> None:
    resolver = _ThreadNotingResolver()
    service, store, _saga = make_transfers_service(resolver=resolver, limit_store=_CountingThreads())
    service.create(**_request("scope-1"))
    (thread,) = resolver.threads
    assert thread.startswith("transfers-create")
    assert len(store.transfers) == 1


def test_a_repeat_answers_its_transfer_whatever_the_parties_now_say() -> None:
    # Given a transfer written once
    resolver = _ThreadNotingResolver()
    service, _store, _saga = make_transfers_service(resolver=resolver)
    first = service.create(**_request("scope-1"))
    # When it is repeated (past its idempotency record) while accounts would now refuse it
    resolver.refuse = True
    # Then the stored transfer is the answer: the parties' refusal is dropped
    assert service.create(**_request("scope-1")) == first


def test_a_new_request_over_the_window_is_429_before_any_party_error() -> None:
    resolver = _ThreadNotingResolver()
    resolver.refuse = True
    service, store, _saga = make_transfers_service(resolver=resolver)
    for n in range(CREATE_WINDOW.limit):
        with pytest.raises(AccountNotFound):
            service.create(**_request(f"scope-{n}"))
    with pytest.raises(RateLimited):
        service.create(**_request("scope-over"))
    assert store.transfers == {}

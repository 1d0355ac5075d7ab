"""Fakes of the accounts service's ports: a reversible cipher and a deterministic blind index (no I/O)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from support.clocks import TickingClock
from vaultpay.accounts.memory import MemoryLedgerStore
from vaultpay.accounts.service import AccountsService


class FakeCipher:
    """Binds the plaintext to its context, so a blob moved to another account fails to decrypt."""

    def encrypt(self, plaintext: str, *, context: Mapping[str, str]) -> str:
        return f"enc({sorted(context.items())}|{plaintext[::-1]})"

    def decrypt(self, blob: str, *, context: Mapping[str, str]) -> str:
        prefix = f"enc({sorted(context.items())}|"
        if not blob.startswith(prefix):
            raise ValueError("wrong context")
        return blob[len(prefix) : -1][::-1]


class FakeIndex:
    def of(self, kind: str, value: str) -> str:
        return hashlib.sha256(f"{kind}\0{value}".encode()).hexdigest()


def make_service(
    store: object | None = None, *, deposit_approval_threshold: int | None = None
) -> tuple[AccountsService, MemoryLedgerStore]:
    ledger = store if isinstance(store, MemoryLedgerStore) else MemoryLedgerStore()
    service = AccountsService(
        store=ledger,
        cipher=FakeCipher(),
        index=FakeIndex(),
        currencies=frozenset({"INR"}),
        clock=TickingClock(),
        sleep=lambda _s: None,
        deposit_approval_threshold=deposit_approval_threshold,
    )
    return service, ledger


def dynamodb_client(endpoint: str) -> Any:
    from botocore.config import Config

    from vaultpay_cli.target import local_client

    config = Config(max_pool_connections=64, retries={"mode": "standard", "max_attempts": 3})
    return local_client("dynamodb", endpoint, config=config)

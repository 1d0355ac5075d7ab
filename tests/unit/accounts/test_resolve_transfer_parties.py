"""Accounts' answer to the transfers domain: whose the source is and which account a number names."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from support.accounts import make_service

from vaultpay.accounts.model import AccountStatus

pytestmark = pytest.mark.unit


def _two_accounts() -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    service, store = make_service()
    source = service.open_account("usr_owner", "SAVINGS", "INR", "c-1").to_json()
    destination = service.open_account("usr_payee", "CURRENT", "INR", "c-2").to_json()
    return service, store, source, destination


def test_the_owners_source_and_a_valid_number_resolve_to_both_accounts_masked() -> None:
    service, _store, source, destination = _two_accounts()
    answer = service.resolve_transfer_parties(
        "usr_owner", source["account_id"], destination["account_number"], "INR"
    )
    assert answer == {
        "ok": True,
        "source_account_id": source["account_id"],
        "destination_account_id": destination["account_id"],
        "destination_account_number_masked": destination["account_number_masked"],
        "currency": "INR",
    }
    # The full number never comes back
    assert destination["account_number"] not in str(answer)


def test_each_refusal_has_its_api_code_and_never_the_full_number() -> None:
    service, store, source, destination = _two_accounts()
    number = destination["account_number"]
    typo = number[:-1] + str((int(number[-1]) + 1) % 10)

    def code(
        owner: str = "usr_owner", account: str = source["account_id"], to: str = number, cur: str = "INR"
    ) -> str:
        answer = service.resolve_transfer_parties(owner, account, to, cur)
        assert answer["ok"] is False
        assert number not in str(answer)
        return str(answer["code"])

    # Someone else's source, a missing one and a malformed id look the same
    assert code(owner="usr_payee") == "account_not_found"
    assert code(account="acc_" + "0" * 32) == "account_not_found"
    assert code(account="not-an-id") == "account_not_found"
    # A typo is caught by the check digits, before any look-up
    assert code(to=typo) == "invalid_account_number"
    assert code(to="12ab") == "invalid_account_number"
    # A well-formed number nobody has
    body = "4000000001"
    unknown = body + f"{98 - (int(body) * 100) % 97:02d}"
    assert code(to=unknown) == "destination_not_found"
    assert code(to=source["account_number"]) == "same_account"
    assert code(cur="USD") == "currency_mismatch"
    frozen = replace(store.accounts[destination["account_id"]], status=AccountStatus.FROZEN)
    store.accounts[destination["account_id"]] = frozen
    assert code() == "account_not_active"


def test_ownership_is_answered_for_the_owner_only() -> None:
    service, _store, source, _destination = _two_accounts()
    assert service.owns_account("usr_owner", source["account_id"]) is True
    assert service.owns_account("usr_payee", source["account_id"]) is False
    assert service.owns_account("usr_owner", "acc_" + "0" * 32) is False

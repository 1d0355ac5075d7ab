"""Response models: what the views really answer validates against the models the OpenAPI document shows.

The handlers answer with their views' `to_json()` (or `view()`, `body()`, `to_dict()`); the models only
describe those bodies. Strict validation here (no coercion, no unknown field) keeps the two from drifting:
a key added to a view, a null where the model says never, a string where it says integer all fail.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.handlers import load_handler

from vaultpay.accounts.model import (
    Account,
    AccountStatus,
    AccountType,
    AccountView,
    Deposit,
    DepositStatus,
    Entry,
    EntryKind,
    new_account_number,
)
from vaultpay.accounts.responses import Account as AccountModel
from vaultpay.accounts.responses import AccountPage
from vaultpay.audit.model import GENESIS_HASH, AuditEntry, BadRecord, VerifyResult
from vaultpay.auth.responses import TokenPair as TokenPairModel
from vaultpay.auth.service import TokenPair
from vaultpay.fraud.model import Decision, FraudDecision, RuleResult
from vaultpay.fraud.records import DecisionRecord, Review, ReviewStatus
from vaultpay.shared.openapi import ResponseModel
from vaultpay.transfers.model import Step, Transfer, TransferStatus
from vaultpay.transfers.responses import ScoredTransfer, TransferPage
from vaultpay.transfers.responses import Transfer as TransferModel

pytestmark = pytest.mark.unit
NOW = "2026-11-28T10:15:30.123Z"
ACCOUNT_ID = "acc_5b0f0c7e9d2a4c61b3e8f7a6d5c4b3a2"
TRANSFER_ID = "tr_9c1f0e6b2d4a4f0e8b7c6d5e4f3a2b1c"


def valid(model: type[ResponseModel], body: dict[str, Any]) -> None:
    """`body` is valid against the JSON Schema the document shows for `model` (where a key that is never
    null is left out rather than sent as null), and to the model itself, strictly."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(
        model.model_json_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    errors = [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(body)]
    if errors:
        raise ValueError(f"{model.__name__}: {errors}")
    model.model_validate(body, strict=True)


def _account() -> Account:
    return Account(
        account_id=ACCOUNT_ID,
        owner_id="usr_1",
        type=AccountType.SAVINGS,
        currency="INR",
        status=AccountStatus.ACTIVE,
        number_index="idx",
        number_enc="enc",
        number_last4="5678",
        ledger=125050,
        available=100000,
        version=3,
        created_at=NOW,
    )


def _transfer(**changes: Any) -> Transfer:
    fields: dict[str, Any] = {
        "transfer_id": TRANSFER_ID,
        "user_id": "usr_1",
        "source_account_id": ACCOUNT_ID,
        "destination_account_id": "acc_0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "destination_account_number_masked": "XXXXXXXX4321",
        "amount": 250000,
        "currency": "INR",
        "status": TransferStatus.PENDING,
        "correlation_id": "c1",
        "created_at": NOW,
        "updated_at": NOW,
        "steps": (Step("initiated", TransferStatus.PENDING, NOW),),
    }
    return Transfer(**(fields | changes))


def test_an_account_view_with_and_without_its_number_is_an_account() -> None:
    # Given the single account's view (full number) and a list's (masked only)
    full = AccountView.of(_account(), number=new_account_number()).to_json()
    masked = AccountView.of(_account()).to_json()
    # Then both validate, and the page of them too
    valid(AccountModel, full)
    valid(AccountModel, masked)
    valid(AccountPage, {"items": [masked], "next_cursor": None})


def test_an_account_view_never_sends_the_number_as_null() -> None:
    with pytest.raises(ValueError, match="account_number"):
        valid(AccountModel, AccountView.of(_account()).to_json() | {"account_number": None})


def test_statement_entries_of_a_transfer_and_of_a_deposit_are_statement_entries() -> None:
    statement = load_handler("accounts/statement")
    moved = Entry(ACCOUNT_ID, 2, "ent_1", EntryKind.DEBIT, 25000, 100050, 100050, "Rent", NOW, TRANSFER_ID)
    deposited = Entry(
        ACCOUNT_ID, 1, "ent_0", EntryKind.CREDIT, 125050, 125050, 125050, "", NOW, None, "dep_1"
    )
    page = {"items": [moved.to_json(), deposited.to_json()], "next_cursor": "c"}
    valid(statement.StatementPage, page)


@pytest.mark.parametrize("status", list(DepositStatus))
def test_a_deposit_in_every_status_is_a_deposit(status: DepositStatus) -> None:
    admin_deposit = load_handler("accounts/admin_deposit")
    decided = status is not DepositStatus.PENDING_APPROVAL
    deposit = Deposit(
        deposit_id="dep_1",
        account_id=ACCOUNT_ID,
        amount=500000,
        currency="INR",
        reference="NEFT N123",
        actor="usr_admin1",
        created_at=NOW,
        settlement_shard="03",
        ledger_after=625050,
        available_after=600000,
        status=status,
        decided_by="usr_admin2" if decided else None,
        decided_at=NOW if decided else None,
    )
    body = deposit.view().to_json()
    valid(admin_deposit.Deposit, body)
    valid(admin_deposit.DepositPage, {"items": [body], "next_cursor": None})


def test_a_transfer_in_each_state_is_a_transfer_and_the_admin_view_a_scored_one() -> None:
    fraud = {"decision": "REVIEW", "score": 50, "reasons": ["HIGH_AMOUNT"]}
    transfers = [
        _transfer(),
        _transfer(status=TransferStatus.IN_REVIEW, fraud=fraud, description="rent"),
        _transfer(status=TransferStatus.DECLINED, fraud=fraud, failure_reason="review_declined"),
    ]
    for transfer in transfers:
        valid(TransferModel, transfer.view())
        valid(ScoredTransfer, transfer.view(internal=True))
    valid(TransferPage, {"items": [t.view() for t in transfers], "next_cursor": None})


def test_the_customer_view_of_a_transfer_never_shows_the_score() -> None:
    view = _transfer(fraud={"decision": "APPROVE", "score": 5, "reasons": []}).view(internal=True)
    with pytest.raises(ValueError, match="score"):
        valid(TransferModel, view)


def test_a_fraud_alert_with_and_without_its_review_is_an_alert() -> None:
    alerts = load_handler("fraud/alerts")
    verdict = FraudDecision(
        decision=Decision.REVIEW,
        score=50,
        reasons=("HIGH_AMOUNT",),
        contributions=(RuleResult("HIGH_AMOUNT", 50, "amount at or above the review limit"),),
    )
    record = DecisionRecord(TRANSFER_ID, "usr_1", 25000000, "INR", "c1", verdict, NOW)
    waiting = Review(TRANSFER_ID, "usr_1", ReviewStatus.WAITING, NOW, "c1")
    decided = Review(
        TRANSFER_ID, "usr_1", ReviewStatus.DECIDED, NOW, "c1", "APPROVE", "usr_admin2", "ok", NOW
    )
    items = [record.alert(waiting), record.alert(decided), record.alert(None)]
    valid(alerts.FraudAlertPage, {"items": items, "next_cursor": None})


def test_audit_records_and_both_verdicts_of_the_chain_are_documented() -> None:
    query, verify = load_handler("audit/query"), load_handler("audit/verify")
    entry = AuditEntry(
        "aud_1", NOW, "vaultpay.account.deposited", "usr_admin1", "c1", ACCOUNT_ID, {"amount": 1}
    )
    valid(query.AuditPage, {"items": [entry.chain(1, GENESIS_HASH).to_dict()], "next_cursor": None})
    valid(verify.ChainVerdict, VerifyResult(True, 1, GENESIS_HASH, head_seq=1).to_dict())
    broken = VerifyResult(False, 2, GENESIS_HASH, BadRecord(None, None, "malformed", "not a record"))
    valid(verify.ChainVerdict, broken.to_dict())


def test_the_token_pair_is_a_token_pair() -> None:
    valid(TokenPairModel, TokenPair("a.b.c", "rt_1", expires_in=900, refresh_expires_in=604800).body())


def _enum(model: type[ResponseModel], *path: str) -> set[str]:
    """The `enum` of a property of `model`'s JSON Schema, following `$ref`s, `anyOf` and array items."""
    schema = model.model_json_schema()
    node: dict[str, Any] = schema
    for name in path:
        node = node["properties"][name]
        while True:
            if "$ref" in node:
                node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
            elif "anyOf" in node:
                node = next(branch for branch in node["anyOf"] if branch != {"type": "null"})
            elif node.get("type") == "array":
                node = node["items"]
            else:
                break
    return set(node["enum"])


def test_the_enums_of_the_response_models_are_the_domains_own() -> None:
    from vaultpay.accounts.model import AccountStatus
    from vaultpay.audit import model as audit_model
    from vaultpay.auth.model import Role, UserStatus
    from vaultpay.fraud.service import ALERT_DECISIONS
    from vaultpay.transfers.model import FAILURE_REASONS

    statement, admin_deposit = load_handler("accounts/statement"), load_handler("accounts/admin_deposit")
    me, admin_users = load_handler("auth/me"), load_handler("auth/admin_users")
    alerts, verify = load_handler("fraud/alerts"), load_handler("audit/verify")
    values = {
        (AccountModel, "type"): {t.value for t in AccountType},
        (AccountModel, "status"): {s.value for s in AccountStatus},
        (statement.StatementEntry, "kind"): {k.value for k in EntryKind},
        (admin_deposit.Deposit, "status"): {s.value for s in DepositStatus},
        (TransferModel, "status"): {s.value for s in TransferStatus},
        (TransferModel, "steps", "status"): {s.value for s in TransferStatus},
        (TransferModel, "failure_reason"): set(FAILURE_REASONS),
        (TransferModel, "fraud", "decision"): {d.value for d in Decision},
        (alerts.FraudAlert, "decision"): set(ALERT_DECISIONS),
        (alerts.FraudAlert, "review", "status"): {s.value for s in ReviewStatus},
        (me.Profile, "role"): {r.value for r in Role},
        (admin_users.UserStatus, "status"): {s.value for s in UserStatus},
        (verify.BadRecord, "reason"): {
            value for name, value in vars(audit_model).items() if name.startswith("REASON_")
        },
    }
    for (model, *path), expected in values.items():
        assert isinstance(model, type) and issubclass(model, ResponseModel)
        names = [str(name) for name in path]
        assert _enum(model, *names) == expected, (model.__name__, names)


def test_a_success_body_without_a_model_or_schema_is_refused_at_declaration() -> None:
    from vaultpay.shared.openapi import success

    with pytest.raises(TypeError, match="200"):
        success(200, "Something.", {"any": "thing"})


def test_a_success_body_refers_to_its_model_which_the_builder_is_told_of() -> None:
    from vaultpay.shared.openapi import declared_response_models, forget_response_models, success

    # Given no model declared yet
    forget_response_models()
    # When a route declares its success body with a model
    declared = success(200, "The pair.", {"token_type": "Bearer"}, model=TokenPairModel)
    # Then the document refers to its component schema, and the builder learns of the model
    media: dict[str, Any] = dict(declared[200]["content"]["application/json"])
    assert media["schema"] == {"$ref": "#/components/schemas/TokenPair"}
    assert declared_response_models() == {"TokenPair": TokenPairModel}
    forget_response_models()
    assert declared_response_models() == {}


def test_a_204_declares_no_body() -> None:
    from vaultpay.shared.openapi import success

    assert success(204, "Signed out.") == {204: {"description": "Signed out."}}

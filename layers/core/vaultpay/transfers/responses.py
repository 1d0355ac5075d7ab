"""The response models of the transfers API: the documented shape of `Transfer.view()` (docs/api.md)."""

from typing import Annotated, Literal

from pydantic import Field

from vaultpay.shared.openapi import Amount, Currency, NextCursor, ResponseModel, Timestamp

# The model's enums, spelled out for the schema (tests/unit/test_response_models.py keeps them equal).
Status = Literal["PENDING", "PROCESSING", "IN_REVIEW", "COMPLETED", "DECLINED", "FAILED"]
FailureReason = Literal[
    "insufficient_funds",
    "fraud_declined",
    "review_declined",
    "review_timeout",
    "account_not_active",
    "currency_mismatch",
    "step_failed",
]


class TransferStep(ResponseModel):
    """One thing that happened to the transfer: its name, the status it left, and when."""

    name: str = Field(examples=["initiated", "processing", "completed"])
    status: Status
    at: Timestamp


class FraudResult(ResponseModel):
    """The fraud engine's decision and the rules that fired; the score is never shown to a customer."""

    decision: Literal["APPROVE", "REVIEW", "DECLINE"]
    reasons: list[str]


class ScoredFraudResult(FraudResult):
    """The fraud result with its score, as admins and the saga see it."""

    score: int = Field(ge=0, le=100, description="0..100; the thresholds map it to the decision.")


class _TransferFields(ResponseModel):
    transfer_id: str
    status: Status
    source_account_id: str
    destination_account_number_masked: Annotated[str, Field(pattern="^X{8}[0-9]{4}$")]
    amount: Amount
    currency: Currency
    description: str | None
    failure_reason: FailureReason | None
    created_at: Timestamp
    updated_at: Timestamp
    steps: list[TransferStep]


class Transfer(_TransferFields):
    """A transfer as its owner sees it: the destination only masked. `fraud` is null until it was scored,
    `failure_reason` until it ends DECLINED or FAILED."""

    fraud: FraudResult | None


class ScoredTransfer(_TransferFields):
    """A transfer as admins see it: `Transfer` with the fraud score."""

    fraud: ScoredFraudResult | None


class TransferPage(ResponseModel):
    """A page of the transfers sent from an account, newest first."""

    items: list[Transfer]
    next_cursor: NextCursor

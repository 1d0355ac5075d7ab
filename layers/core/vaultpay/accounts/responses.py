"""The response models of the accounts API: the documented shapes of the views' `to_json()` answers."""

from typing import Annotated, Literal

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from vaultpay.shared.openapi import Currency, NextCursor, ResponseModel, Timestamp

# Integer minor units (paise for INR), never a float (docs/api.md): a balance may be any integer.
Paise = int


class Balance(ResponseModel):
    """An account's balances in minor units: `ledger` is booked money, `available` is ledger less holds."""

    ledger: Paise
    available: Paise


class Account(ResponseModel):
    """An account as its owner sees it. `account_number` only where the answer is that one account (the
    single GET and the creation); lists carry the masked number alone."""

    account_id: str
    # SkipJsonSchema[None]: the key is left out, never sent as null.
    account_number: Annotated[str, Field(pattern="^[1-9][0-9]{11}$")] | SkipJsonSchema[None] = Field(
        default=None, description="The full account number (owner only)."
    )
    account_number_masked: Annotated[str, Field(pattern="^X{8}[0-9]{4}$")]
    type: Literal["SAVINGS", "CURRENT"]
    currency: Currency
    status: Literal["ACTIVE", "FROZEN", "CLOSED"]
    balance: Balance
    created_at: Timestamp


class AccountPage(ResponseModel):
    """A page of the caller's accounts, oldest first."""

    items: list[Account]
    next_cursor: NextCursor

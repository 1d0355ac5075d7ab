"""The transfers domain's errors. Their class names are the saga's `ErrorEquals` names: a small, flat set.

The transfer state machine matches on the Lambda `errorType`, the exception's class name, so the saga-facing
classes here (`TransferNotFound`, `TransferFinal`, `InvalidStepInput`) are public API. The others are what
`POST /v1/transfers` answers when accounts refuses the parties (their codes are docs/api.md's).
"""

from __future__ import annotations

from vaultpay.shared.errors import Conflict, DomainError, NotFound, ValidationFailed


class TransferNotFound(NotFound):
    """No such transfer, or not the caller's: the two look the same from outside."""

    code = "transfer_not_found"


class TransferFinal(Conflict):
    """The transfer is COMPLETED, DECLINED or FAILED: a terminal status never changes again."""

    code = "transfer_final"


class InvalidStepInput(ValidationFailed):
    """A saga step's input is not valid, or its op does not fit the transfer's status (never retried)."""

    code = "invalid_step_input"


class AccountNotFound(NotFound):
    """The source account does not exist or is not the caller's (indistinguishable by design)."""

    code = "account_not_found"


class DestinationNotFound(ValidationFailed):
    """No account has this (well-formed) account number."""

    code = "destination_not_found"


class SameAccount(ValidationFailed):
    """The destination is the source account itself."""

    code = "same_account"


class CurrencyMismatch(ValidationFailed):
    """The transfer's currency is not the source's or the destination's."""

    code = "currency_mismatch"


class InvalidAccountNumber(ValidationFailed):
    """The destination account number is malformed or its check digits do not match."""

    code = "invalid_account_number"


class AccountNotActive(Conflict):
    """The source or the destination account may not move money (frozen or closed)."""

    code = "account_not_active"


SAGA_ERRORS = ("TransferNotFound", "TransferFinal", "InvalidStepInput")

# What the accounts resolver may answer instead of the parties, and the error each becomes here.
PARTY_ERRORS: dict[str, type[DomainError]] = {
    AccountNotFound.code: AccountNotFound,
    DestinationNotFound.code: DestinationNotFound,
    SameAccount.code: SameAccount,
    CurrencyMismatch.code: CurrencyMismatch,
    InvalidAccountNumber.code: InvalidAccountNumber,
    AccountNotActive.code: AccountNotActive,
}

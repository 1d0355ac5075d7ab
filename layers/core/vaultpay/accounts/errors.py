"""The accounts domain's errors. Their class names are the saga's `ErrorEquals` names: a small, flat set.

The transfer state machine matches on the Lambda `errorType`, which is the exception's class name, so a class
here is public API: renaming one is a breaking change of the state machine's contract. The retryable ones,
`ConcurrentModification` and `TransientError`, come from `vaultpay.shared.errors`.
"""

from __future__ import annotations

from vaultpay.shared.errors import Conflict, NotFound, ValidationFailed


class AccountNotFound(NotFound):
    """No such account, or not the caller's: the two look the same from outside."""

    code = "account_not_found"


class AccountNotActive(Conflict):
    """The account exists but may not move money (frozen or closed)."""

    code = "account_not_active"


class InsufficientFunds(ValidationFailed):
    """The available balance is below the amount to hold."""

    code = "insufficient_funds"


class CurrencyMismatch(ValidationFailed):
    """The amount's currency is not the account's."""

    code = "currency_mismatch"


class HoldNotFound(NotFound):
    """Settle was called for a transfer that holds nothing."""

    code = "hold_not_found"


class HoldNotOpen(Conflict):
    """The hold was already released (cannot settle) or settled (cannot release)."""

    code = "hold_not_open"


class StepConflict(Conflict):
    """The same transfer id came with other parameters than the first call: never silently accepted."""

    code = "step_conflict"


class DepositNotPending(Conflict):
    """The deposit was already decided otherwise (approved or rejected): a decision is never changed."""

    code = "deposit_not_pending"


class DepositNotFound(NotFound):
    """No deposit has this id."""

    code = "deposit_not_found"


class InvalidStepInput(ValidationFailed):
    """A saga step's input is not valid (a bug in the caller, never retried)."""

    code = "invalid_step_input"


SAGA_ERRORS = (
    "InsufficientFunds",
    "AccountNotFound",
    "AccountNotActive",
    "CurrencyMismatch",
    "HoldNotFound",
    "HoldNotOpen",
    "StepConflict",
    "InvalidStepInput",
)
RETRYABLE_ERRORS = ("ConcurrentModification", "TransientError")

"""The fraud domain's errors. Class names are public: the saga's `ErrorEquals` and the API's codes name them.

The transfer state machine matches a Lambda's `errorType`, which is the exception's class name, so the saga
step errors here keep the names the state machine already lists (`InvalidStepInput`, `StepConflict`).
"""

from __future__ import annotations

from vaultpay.shared.errors import Conflict, FieldError, NotFound, ValidationFailed


class InvalidStepInput(ValidationFailed):
    """A saga step's input is not valid (a bug in the caller, never retried)."""

    code = "invalid_step_input"

    def __init__(self, message: str, *, errors: tuple[FieldError, ...] = ()) -> None:
        super().__init__(message, errors=errors)


class StepConflict(Conflict):
    """The same transfer id came with other parameters than its stored decision: never silently accepted."""

    code = "step_conflict"


class ReviewNotFound(NotFound):
    """No review for this transfer, or the transfer is not waiting for one."""

    code = "review_not_found"


class ReviewAlreadyDecided(Conflict):
    """An admin has already decided this review."""

    code = "review_already_decided"


class ReviewClosed(Conflict):
    """The saga no longer waits for this decision (its review window timed out, or it ended otherwise)."""

    code = "review_closed"


SAGA_ERRORS = ("InvalidStepInput", "StepConflict")

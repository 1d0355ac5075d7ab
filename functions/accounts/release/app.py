"""Saga step ReleaseFunds: gives a hold back to the source's available balance (the compensation)."""

from vaultpay.bootstrap.accounts import accounts_service
from vaultpay.shared.observability import saga_step_handler

# The service validates the input (InvalidStepInput).
handler = saga_step_handler(lambda event: accounts_service().release(event))

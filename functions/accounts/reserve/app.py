"""Saga step ReserveFunds: holds the amount on the source account (available only)."""

from vaultpay.bootstrap.accounts import accounts_service
from vaultpay.shared.observability import saga_step_handler

# The service validates the input (InvalidStepInput).
handler = saga_step_handler(lambda event: accounts_service().reserve(event))

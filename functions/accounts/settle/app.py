"""Saga step SettleTransfer: consumes the hold: DEBIT the source, CREDIT the destination."""

from vaultpay.bootstrap.accounts import accounts_service
from vaultpay.shared.observability import saga_step_handler

# The service validates the input (InvalidStepInput).
handler = saga_step_handler(lambda event: accounts_service().settle(event))

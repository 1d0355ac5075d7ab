"""Saga step EvaluateFraudFunction: APPROVE, REVIEW or DECLINE, with the rules that fired."""

from vaultpay.bootstrap.fraud import fraud_engine
from vaultpay.shared.observability import saga_step_handler

# Answers `$.fraud`. An invalid rule configuration fails the step loudly rather than approve anything.
handler = saga_step_handler(lambda event: fraud_engine().evaluate(event))

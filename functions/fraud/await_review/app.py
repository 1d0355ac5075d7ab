"""Saga step AwaitReviewFunction (`.waitForTaskToken`): stores the task token until an admin decides."""

from vaultpay.bootstrap.fraud import review_service
from vaultpay.shared.observability import saga_step_handler

# The input holds the task token: saga_step_handler never logs it.
handler = saga_step_handler(lambda event: review_service().await_review(event))

"""The composition root: the only place that wires adapters (AWS, NATS) to the services' ports."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from vaultpay.shared.observability import get_logger
from vaultpay.shared.settings import get_settings

if TYPE_CHECKING:
    from vaultpay.ops.health import HealthService

# Each health check gets one attempt with this deadline: a health probe must answer fast, and a retry
# would only hide a slow dependency.
HEALTH_CHECK_TIMEOUT_S = 1.0


@functools.cache
def health_service() -> HealthService:
    """The health service with its real checks, built on first use: one set of clients per process."""
    from vaultpay.ops.checks import DynamoDBCheck, NatsCheck, StepFunctionsCheck
    from vaultpay.ops.health import HealthService
    from vaultpay.shared.aws import aws_client

    settings = get_settings()
    timeout_s = HEALTH_CHECK_TIMEOUT_S
    return HealthService(
        [
            DynamoDBCheck(aws_client("dynamodb", timeout_s=timeout_s, max_attempts=1)),
            StepFunctionsCheck(aws_client("stepfunctions", timeout_s=timeout_s, max_attempts=1)),
            NatsCheck(settings.nats_url, timeout_s=timeout_s),
        ],
        version=settings.version,
        timeout_s=timeout_s,
        log=get_logger(),
    )

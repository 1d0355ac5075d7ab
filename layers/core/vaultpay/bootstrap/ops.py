"""The ops functions' composition: the health service and its checks."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from vaultpay.shared.lazy import cached

if TYPE_CHECKING:
    from vaultpay.ops.health import HealthService

# Each health check gets one attempt with this deadline: a health probe must answer fast, and a retry
# would only hide a slow dependency.
HEALTH_CHECK_TIMEOUT_S = 1.0


@cached
def health_service() -> HealthService:
    """The health service with its real checks, built on first use: one set of clients per process."""
    from vaultpay.bootstrap.settings import health_settings
    from vaultpay.events.jetstream import credentials_from, login_options
    from vaultpay.ops.checks import DynamoDBCheck, NatsCheck, StepFunctionsCheck
    from vaultpay.ops.health import HealthService
    from vaultpay.shared.aws import aws_client
    from vaultpay.shared.observability import get_logger

    settings = health_settings()
    timeout_s = HEALTH_CHECK_TIMEOUT_S
    nats = settings.nats
    # The health function's own login, read at each check (a rotated password reaches the next one).
    nats_options = functools.partial(login_options, credentials_from(nats), nats.tls_options())

    return HealthService(
        [
            DynamoDBCheck(aws_client("dynamodb", timeout_s=timeout_s, max_attempts=1)),
            StepFunctionsCheck(aws_client("stepfunctions", timeout_s=timeout_s, max_attempts=1)),
            NatsCheck(nats.servers, timeout_s=timeout_s, connect_options=nats_options),
        ],
        version=settings.version,
        timeout_s=timeout_s,
        log=get_logger(),
    )

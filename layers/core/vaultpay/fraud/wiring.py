"""The fraud functions' composition, built once per warm Lambda: tables, SSM, Step Functions, NATS."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vaultpay.shared.errors import ConfigurationError

if TYPE_CHECKING:
    from vaultpay.events.jetstream import NatsConnection
    from vaultpay.fraud.consumer import ConsumeReport
    from vaultpay.fraud.service import FraudEngine, ProfileService, ReviewService
    from vaultpay.fraud.store import DynamoFraudStore

# The saga step and the admin routes answer within seconds: a short deadline, a few quick retries.
_AWS_TIMEOUT_S = 3.0
_AWS_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class FraudSettings:
    """The fraud functions' environment. Each function needs only some of these: a missing one fails
    loudly, naming the variable, when it is first needed (never reaching AWS as "")."""

    environ: Mapping[str, str]

    def require(self, name: str) -> str:
        value = self.environ.get(name, "").strip()
        if not value:
            raise ConfigurationError(f"invalid settings: {name} is not set")
        return value


def settings() -> FraudSettings:
    return FraudSettings(dict(os.environ))


def _client(service: str) -> object:
    from vaultpay.shared.aws import aws_client

    return aws_client(service, timeout_s=_AWS_TIMEOUT_S, max_attempts=_AWS_ATTEMPTS)


@functools.cache
def fraud_store() -> DynamoFraudStore:
    from vaultpay.fraud.store import DynamoFraudStore

    return DynamoFraudStore(_client("dynamodb"), settings().require("FRAUD_TABLE"))


@functools.cache
def fraud_engine() -> FraudEngine:
    """EvaluateFraudFunction's engine: FraudTable, the velocity counters and the SSM configuration."""
    from aws_lambda_powertools.utilities.parameters import SSMProvider

    from vaultpay.fraud.adapters import SsmFraudConfig
    from vaultpay.fraud.service import FraudEngine
    from vaultpay.shared.ratelimit_store import DynamoDBCounterStore

    env = settings()
    return FraudEngine(
        store=fraud_store(),
        counters=DynamoDBCounterStore(_client("dynamodb"), env.require("FRAUD_COUNTERS_TABLE")),
        config=SsmFraudConfig(
            SSMProvider(boto3_client=_client("ssm")),  # type: ignore[arg-type]
            env.require("FRAUD_CONFIG_PARAMETER"),
        ),
    )


@functools.cache
def review_service() -> ReviewService:
    """AwaitReview and the alerts route need only the table; the review route also resumes the saga and
    reads the transfer view, whose clients are made only there."""
    from vaultpay.fraud.service import ReviewService

    return ReviewService(store=fraud_store())


@functools.cache
def deciding_review_service() -> ReviewService:
    from vaultpay.fraud.adapters import DynamoAccountOwners, LambdaTransferViews, StepFunctionsTasks
    from vaultpay.fraud.service import ReviewService
    from vaultpay.shared.aws import aws_client

    return ReviewService(
        store=fraud_store(),
        tasks=StepFunctionsTasks(_client("stepfunctions")),
        # One attempt per call, 3 s at most: the service retries the view within a budget of its own.
        transfers=LambdaTransferViews(
            aws_client("lambda", timeout_s=_AWS_TIMEOUT_S, max_attempts=1),
            settings().require("TRANSFER_STATUS_FUNCTION"),
        ),
        owners=DynamoAccountOwners(_client("dynamodb"), settings().require("ACCOUNTS_TABLE")),
    )


@functools.cache
def profile_service() -> ProfileService:
    from vaultpay.fraud.service import ProfileService

    return ProfileService(fraud_store())


@functools.cache
def jetstream() -> NatsConnection:
    """The process's one NATS connection, as the fraud consumer's own NATS user."""
    from vaultpay.events.jetstream import NatsConnection
    from vaultpay.shared.observability import get_logger

    return NatsConnection.from_environ(os.environ, name="vaultpay-fraud-consumer", log=get_logger())


def consume_pending(remaining_ms: Callable[[], int]) -> ConsumeReport:
    """One scheduled run: applies what `fraud-workers` holds until it is empty or time runs low, and
    publishes the backlog it leaves as the lag metrics."""
    from vaultpay.events.jetstream import consume_durable
    from vaultpay.fraud.consumer import DURABLE, STREAM, consume
    from vaultpay.shared.observability import get_logger

    connection = jetstream()
    service = profile_service()
    return consume_durable(
        connection,
        STREAM,
        DURABLE,
        lambda source: consume(source, service, remaining_ms=remaining_ms, log=get_logger()),
    )

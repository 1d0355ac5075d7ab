"""The fraud functions' composition, built once per warm Lambda: tables, SSM, Step Functions, NATS."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vaultpay.shared.lazy import cached

if TYPE_CHECKING:
    from vaultpay.events.jetstream import NatsConnection
    from vaultpay.fraud.consumer import ConsumeReport
    from vaultpay.fraud.service import FraudEngine, ProfileService, ReviewService
    from vaultpay.fraud.store import DynamoFraudStore

# The saga step and the admin routes answer within seconds: a short deadline, a few quick retries.
_AWS_TIMEOUT_S = 3.0
_AWS_ATTEMPTS = 3


def _client(service: str) -> Any:
    from vaultpay.shared.aws import aws_client

    return aws_client(service, timeout_s=_AWS_TIMEOUT_S, max_attempts=_AWS_ATTEMPTS)


@cached
def fraud_store() -> DynamoFraudStore:
    from vaultpay.bootstrap.settings import fraud_settings
    from vaultpay.fraud.store import DynamoFraudStore

    return DynamoFraudStore(_client("dynamodb"), fraud_settings().require("fraud_table"))


@cached
def fraud_engine() -> FraudEngine:
    """EvaluateFraudFunction's engine: FraudTable, the velocity counters and the SSM configuration."""
    from aws_lambda_powertools.utilities.parameters import SSMProvider

    from vaultpay.bootstrap.settings import fraud_settings
    from vaultpay.fraud.adapters import SsmFraudConfig
    from vaultpay.fraud.service import FraudEngine
    from vaultpay.shared.ratelimit_store import DynamoDBCounterStore

    settings = fraud_settings()
    return FraudEngine(
        store=fraud_store(),
        counters=DynamoDBCounterStore(_client("dynamodb"), settings.require("fraud_counters_table")),
        config=SsmFraudConfig(
            SSMProvider(boto3_client=_client("ssm")),
            settings.require("fraud_config_parameter"),
        ),
    )


@cached
def review_service() -> ReviewService:
    """AwaitReview and the alerts route need only the table; the review route also resumes the saga and
    reads the transfer view, whose clients are made only there."""
    from vaultpay.fraud.service import ReviewService

    return ReviewService(store=fraud_store())


@cached
def deciding_review_service() -> ReviewService:
    from vaultpay.bootstrap.settings import fraud_settings
    from vaultpay.fraud.adapters import DynamoAccountOwners, LambdaTransferViews, StepFunctionsTasks
    from vaultpay.fraud.service import ReviewService
    from vaultpay.shared.aws import aws_client

    settings = fraud_settings()
    return ReviewService(
        store=fraud_store(),
        tasks=StepFunctionsTasks(_client("stepfunctions")),
        # One attempt per call, 3 s at most: the service retries the view within a budget of its own.
        transfers=LambdaTransferViews(
            aws_client("lambda", timeout_s=_AWS_TIMEOUT_S, max_attempts=1),
            settings.require("transfer_status_function"),
        ),
        owners=DynamoAccountOwners(_client("dynamodb"), settings.require("accounts_table")),
    )


@cached
def profile_service() -> ProfileService:
    from vaultpay.fraud.service import ProfileService

    return ProfileService(fraud_store())


@cached
def jetstream() -> NatsConnection:
    """The process's one NATS connection, as the fraud consumer's own NATS user."""
    from vaultpay.bootstrap.nats import nats_connection
    from vaultpay.bootstrap.settings import consumer_settings

    return nats_connection(consumer_settings(), name="vaultpay-fraud-consumer")


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

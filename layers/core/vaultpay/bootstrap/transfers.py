"""The transfers functions' composition: the transfers service and its adapters."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from vaultpay.shared.lazy import LazyProxy, cached

if TYPE_CHECKING:
    from vaultpay.transfers.service import TransfersService

# POST /v1/transfers waits on accounts' resolver (a Lambda that may be cold) and on StartExecution: a
# longer deadline than the table's, and one retry only, since the client retries with its Idempotency-Key.
TRANSFERS_AWS_TIMEOUT_S = 2.0
TRANSFERS_INVOKE_TIMEOUT_S = 6.0
TRANSFERS_AWS_ATTEMPTS = 2


def _client(service: str, timeout_s: float = TRANSFERS_AWS_TIMEOUT_S) -> LazyProxy:
    from vaultpay.shared.aws import aws_client

    return LazyProxy(lambda: aws_client(service, timeout_s=timeout_s, max_attempts=TRANSFERS_AWS_ATTEMPTS))


@cached
def transfers_service() -> TransfersService:
    """The transfers service with its real adapters, built on first use; each resource name is read only
    when its adapter is first used, so GET (the table only) needs no resolver or state machine."""
    from vaultpay.bootstrap.settings import transfers_settings
    from vaultpay.shared.ratelimit import RateLimiter
    from vaultpay.shared.ratelimit_store import DynamoDBCounterStore
    from vaultpay.transfers.adapters import LambdaPartyResolver, StepFunctionsSagaStarter
    from vaultpay.transfers.service import TransfersService
    from vaultpay.transfers.store import DynamoTransferStore

    settings = transfers_settings()
    dynamodb = _client("dynamodb")
    # Each adapter is made at its first call (and kept), so a function is told only of the resources it uses.
    limiter: Any = LazyProxy(
        functools.cache(
            lambda: RateLimiter(DynamoDBCounterStore(dynamodb, settings.require("rate_limit_table")))
        )
    )
    return TransfersService(
        store=DynamoTransferStore(dynamodb, settings.require("transfers_table")),
        parties=LazyProxy(
            functools.cache(
                lambda: LambdaPartyResolver(
                    _client("lambda", TRANSFERS_INVOKE_TIMEOUT_S),
                    settings.require("resolve_parties_function"),
                )
            )
        ),
        saga=LazyProxy(
            functools.cache(
                lambda: StepFunctionsSagaStarter(
                    _client("stepfunctions"), settings.require("transfer_state_machine_arn")
                )
            )
        ),
        currencies=settings.currencies,
        limiter=limiter,
    )

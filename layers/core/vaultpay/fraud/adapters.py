"""The fraud domain's non-DynamoDB adapters: rule configuration from SSM, Step Functions task tokens, and
the transfers domain's internal view function."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from vaultpay.fraud.config import DEFAULT_CONFIG, FraudConfig, InvalidFraudConfig, load_fraud_config
from vaultpay.fraud.ports import TaskClosed
from vaultpay.shared.errors import ConfigurationError, TransientError
from vaultpay.shared.observability import get_logger

CONFIG_MAX_AGE_S = 60
# What Step Functions answers for a token it no longer waits on: the wait timed out, the execution ended,
# or the token names no task (a malformed or foreign one).
_CLOSED_TASK_CODES = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})
_CONFIGURATION_CODES = frozenset(
    {"AccessDeniedException", "UnrecognizedClientException", "ResourceNotFoundException"}
)


def _error_code(exc: BaseException | None) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


class SsmFraudConfig:
    """The stage's rule configuration: an SSM parameter read through Powertools (cached `max_age_s`), then
    validated by `vaultpay.fraud.config`.

    A parameter that does not exist means the stage keeps the bundled defaults (`DEFAULT_CONFIG`, the values
    of infra/fraud/default-config.json). One that exists but does not validate is a loud
    `InvalidFraudConfig`: the saga step fails and the transfer is compensated, never silently approved with
    rules nobody configured.
    """

    def __init__(
        self,
        provider: Any,
        name: str,
        *,
        max_age_s: int = CONFIG_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not name:
            raise ConfigurationError("invalid settings: FRAUD_CONFIG_PARAMETER is not set")
        self._provider = provider
        self._name = name
        self._max_age_s = max_age_s
        self._clock = clock
        self._parsed: tuple[str, FraudConfig] | None = None
        self._missing_until = 0.0

    def __call__(self) -> FraudConfig:
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        if self._clock() < self._missing_until:
            return DEFAULT_CONFIG
        try:
            raw = self._provider.get(self._name, max_age=self._max_age_s)
        except GetParameterError as exc:
            # Powertools re-raises the SDK's error as its own; the original is the context.
            code = _error_code(exc.__context__)
            if code == "ParameterNotFound":
                get_logger().warning("fraud config parameter not found; using the bundled defaults")
                self._missing_until = self._clock() + self._max_age_s
                return DEFAULT_CONFIG
            if code in _CONFIGURATION_CODES:
                raise ConfigurationError(f"SSM refused the fraud config parameter: {code}") from exc
            raise TransientError(f"SSM could not be read: {code or 'unreachable'}") from exc
        if not isinstance(raw, str):
            raise InvalidFraudConfig("invalid fraud config: (document) is not JSON text")
        if self._parsed is not None and self._parsed[0] == raw:
            return self._parsed[1]
        try:
            config = load_fraud_config(raw)
        except InvalidFraudConfig as exc:
            # The fields and reasons only: never the document (a value is not logged as such).
            get_logger().error(
                "fraud config parameter is invalid", extra={"fields": [error.field for error in exc.errors]}
            )
            raise
        self._parsed = (raw, config)
        return config


class StepFunctionsTasks:
    """SendTaskSuccess on the transfer state machine's waiting task."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def send_task_success(self, task_token: str, output: Mapping[str, Any]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.send_task_success(taskToken=task_token, output=json.dumps(dict(output)))
        except ClientError as exc:
            code = _error_code(exc)
            if code in _CLOSED_TASK_CODES:
                # The message can quote the token: only the code goes on.
                raise TaskClosed(code or "closed") from None
            if code in _CONFIGURATION_CODES:
                raise ConfigurationError(f"Step Functions refused SendTaskSuccess: {code}") from None
            raise TransientError(f"Step Functions SendTaskSuccess failed: {code}") from None
        except BotoCoreError as exc:
            raise TransientError(f"Step Functions is unreachable: {type(exc).__name__}") from None


class LambdaTransferViews:
    """The transfers domain's internal `TransferStatusFunction` (`op: view`), invoked synchronously."""

    def __init__(self, client: Any, function_name: str) -> None:
        if not function_name:
            raise ConfigurationError("invalid settings: TRANSFER_STATUS_FUNCTION is not set")
        self._client = client
        self._function = function_name

    def view(self, transfer_id: str) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        payload = json.dumps({"op": "view", "transfer_id": transfer_id}).encode("utf-8")
        try:
            response = self._client.invoke(
                FunctionName=self._function, InvocationType="RequestResponse", Payload=payload
            )
            body = response["Payload"].read()
        except ClientError as exc:
            code = _error_code(exc)
            if code in _CONFIGURATION_CODES:
                raise ConfigurationError(f"Lambda refused the transfer view invoke: {code}") from exc
            raise TransientError(f"the transfer view invoke failed: {code}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"Lambda is unreachable: {type(exc).__name__}") from exc
        try:
            document = json.loads(body or b"null")
        except ValueError:
            document = None
        if response.get("FunctionError") or not isinstance(document, dict):
            error_type = document.get("errorType") if isinstance(document, dict) else None
            raise TransientError(f"the transfer view function failed: {error_type or 'no view'}")
        return document


class DynamoAccountOwners:
    """Whose account an account id is: one GetItem of the account item's `owner_id` on the accounts table
    (the review function's only grant there, limited to ACCOUNT# keys and these attributes)."""

    def __init__(self, client: Any, table_name: str) -> None:
        if not table_name:
            raise ConfigurationError("invalid settings: ACCOUNTS_TABLE is not set")
        self._client = client
        self._table = table_name

    def owner_of(self, account_id: str) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.get_item(
                TableName=self._table,
                Key={"pk": {"S": f"ACCOUNT#{account_id}"}, "sk": {"S": "ACCOUNT"}},
                ProjectionExpression="pk, sk, owner_id",
            )
        except ClientError as exc:
            if _error_code(exc) in _CONFIGURATION_CODES:
                raise ConfigurationError(f"the accounts table refused: {_error_code(exc)}") from exc
            raise TransientError(f"the accounts table failed: {_error_code(exc)}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"the accounts table could not be reached: {type(exc).__name__}") from exc
        owner = response.get("Item", {}).get("owner_id", {}).get("S")
        return str(owner) if owner else None

"""The transfers domain's other adapters: accounts' resolver Lambda (Invoke) and the saga (StartExecution).

The wire shape of ResolveTransferPartiesFunction is fixed here and in functions/accounts/resolve: a request
`{"op": "resolve"|"owns", ...}` answered `{"ok": true, ...}` or `{"ok": false, "code", "message"[, "field"]}`.
A refusal is an answer, not a function error, so only a broken call becomes an infrastructure error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from vaultpay.shared.errors import (
    ConfigurationError,
    FieldError,
    TransientError,
    ValidationFailed,
    VaultPayError,
)
from vaultpay.transfers.errors import PARTY_ERRORS
from vaultpay.transfers.model import Parties

_CONFIGURATION_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "ValidationException",
        "StateMachineDoesNotExist",
        "InvalidArn",
    }
)


def _error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


class LambdaPartyResolver:
    """The PartyResolver port on the accounts domain's internal ResolveTransferPartiesFunction."""

    def __init__(self, client: Any, function_name: str) -> None:
        if not function_name:
            raise ConfigurationError("the party resolver function is not configured")
        self._client = client
        self._function = function_name

    def resolve(
        self, *, owner_id: str, source_account_id: str, destination_account_number: str, currency: str
    ) -> Parties:
        answer = self._invoke(
            {
                "op": "resolve",
                "owner_id": owner_id,
                "source_account_id": source_account_id,
                "destination_account_number": destination_account_number,
                "currency": currency,
            }
        )
        if answer.get("ok") is not True:
            raise party_error(answer)
        try:
            return Parties(
                source_account_id=str(answer["source_account_id"]),
                destination_account_id=str(answer["destination_account_id"]),
                destination_account_number_masked=str(answer["destination_account_number_masked"]),
                currency=str(answer["currency"]),
            )
        except KeyError as exc:
            raise TransientError(f"the party resolver answered without {exc}") from None

    def owns(self, *, owner_id: str, account_id: str) -> bool:
        answer = self._invoke({"op": "owns", "owner_id": owner_id, "account_id": account_id})
        if answer.get("ok") is True:
            return True
        if answer.get("code") == "account_not_found":
            return False
        raise party_error(answer)

    def _invoke(self, request: Mapping[str, Any]) -> Mapping[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.invoke(
                FunctionName=self._function,
                InvocationType="RequestResponse",
                Payload=json.dumps(request).encode("utf-8"),
            )
            payload = response["Payload"].read()
        except (BotoCoreError, ClientError) as exc:
            code = _error_code(exc)
            if code in _CONFIGURATION_CODES:
                raise ConfigurationError(f"Lambda refused the party resolver call: {code}") from exc
            raise TransientError(
                f"the party resolver could not be called: {code or type(exc).__name__}"
            ) from exc
        if response.get("FunctionError"):
            # Its own error (a timeout, a crash): the message may carry internals, so only the type is kept.
            try:
                error_type = str(json.loads(payload).get("errorType", "Unknown"))
            except (ValueError, AttributeError):
                error_type = "Unknown"
            raise TransientError(f"the party resolver failed: {error_type}")
        try:
            answer = json.loads(payload)
        except ValueError:
            raise TransientError("the party resolver answered something that is not JSON") from None
        if not isinstance(answer, Mapping):
            raise TransientError("the party resolver answered something that is not an object")
        return answer


def party_error(answer: Mapping[str, Any]) -> VaultPayError:
    """The error a resolver refusal `{code, message[, field]}` stands for (an unknown code is not trusted)."""
    code = str(answer.get("code") or "")
    message = str(answer.get("message") or "The transfer's accounts were refused.")
    error = PARTY_ERRORS.get(code)
    if error is None:
        return TransientError(f"the party resolver answered an unknown refusal: {code[:64]}")
    if issubclass(error, ValidationFailed):
        field = answer.get("field")
        errors = [FieldError(str(field), message)] if isinstance(field, str) and field else []
        return error(message, errors=errors)
    return error(message)


class StepFunctionsSagaStarter:
    """The SagaStarter port on the transfer state machine: one execution per transfer, named after it."""

    def __init__(
        self, client: Any, state_machine_arn: str, *, dumps: Callable[[Any], str] | None = None
    ) -> None:
        if not state_machine_arn:
            raise ConfigurationError("the transfer state machine is not configured")
        self._client = client
        self._arn = state_machine_arn
        self._dumps = dumps or (lambda value: json.dumps(value, separators=(",", ":")))

    def start(self, name: str, saga_input: Mapping[str, Any]) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.start_execution(
                stateMachineArn=self._arn, name=name, input=self._dumps(dict(saga_input))
            )
        except (BotoCoreError, ClientError) as exc:
            code = _error_code(exc)
            if code == "ExecutionAlreadyExists":
                # Named after the transfer: this transfer's saga was started before (and runs only once).
                return False
            if code in _CONFIGURATION_CODES:
                raise ConfigurationError(f"Step Functions refused StartExecution: {code}") from exc
            raise TransientError(f"StartExecution failed: {code or type(exc).__name__}") from exc
        return True

"""ResolveTransferParties (internal, no route): the transfers domain asks accounts about a transfer's parties.

Invoked by CreateTransferFunction (and ListTransfersFunction) with boto3 `lambda.invoke`:
`{"op": "resolve", owner_id, source_account_id, destination_account_number, currency}` answers both parties
(the destination's number masked) or `{"ok": false, code, message, field}`; `{"op": "owns", owner_id,
account_id}` answers whether the account is the owner's. The full number is never logged nor answered.
"""

# No `from __future__ import annotations` in handlers (see functions/ops/health/app.py).
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from vaultpay.bootstrap.accounts import accounts_service
from vaultpay.shared.observability import bind_log_keys, get_logger, get_tracer

logger = get_logger()
tracer = get_tracer()

_TEXT_LIMIT = 128


def _text(event: Mapping[str, Any], name: str) -> str | None:
    value = event.get(name)
    return value if isinstance(value, str) and 0 < len(value) <= _TEXT_LIMIT else None


def _invalid(names: list[str]) -> dict[str, Any]:
    return {
        "ok": False,
        "code": "validation_failed",
        "message": "The request is not valid: " + ", ".join(names) + ".",
    }


# The event holds a full account number: neither it nor the response is logged or traced.
@logger.inject_lambda_context(clear_state=True, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    if not isinstance(event, Mapping):
        return _invalid(["event"])
    op = event.get("op", "resolve")
    owner_id = _text(event, "owner_id")
    if owner_id is None:
        return _invalid(["owner_id"])
    bind_log_keys(user_id=owner_id)
    service = accounts_service()
    if op == "owns":
        account_id = _text(event, "account_id")
        if account_id is None:
            return _invalid(["account_id"])
        if service.owns_account(owner_id, account_id):
            return {"ok": True, "account_id": account_id}
        return {"ok": False, "code": "account_not_found", "message": "No such account."}
    if op != "resolve":
        return _invalid(["op"])
    fields = {
        name: _text(event, name) for name in ("source_account_id", "destination_account_number", "currency")
    }
    missing = [name for name, value in fields.items() if value is None]
    if missing:
        return _invalid(missing)
    answer = service.resolve_transfer_parties(
        owner_id,
        str(fields["source_account_id"]),
        str(fields["destination_account_number"]),
        str(fields["currency"]),
    )
    logger.info(
        "transfer parties resolved" if answer["ok"] else "transfer parties refused",
        extra={"code": answer.get("code")},
    )
    return answer

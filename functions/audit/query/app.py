"""GET /v1/admin/audit: audit records by correlation id, actor, type and time range, newest first (admin)."""

# No `from __future__ import annotations` in handlers: Powertools validation reads the route's annotations
# through the tracer's wrapper, whose globals are not this module's, so string annotations stay unresolved.
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from vaultpay.audit.service import DEFAULT_LIMIT, MAX_LIMIT, AuditQueryRequest, require_admin
from vaultpay.bootstrap.audit import audit_service
from vaultpay.shared.http import make_admin_resolver, no_store_json, principal
from vaultpay.shared.observability import get_logger, get_tracer
from vaultpay.shared.openapi import NextCursor, ResponseModel, Timestamp, success

logger = get_logger()
tracer = get_tracer()
# Admin-only: a caller who is not an admin is answered 403 before any query is looked at.
app = make_admin_resolver()


Hash = Annotated[str, Field(pattern="^[0-9a-f]{64}$", description="SHA-256, lower-case hex.")]


class AuditRecord(ResponseModel):
    """One link of the chain: `hash` covers the record without it, `prev_hash` is the link before it."""

    audit_id: str
    seq: int = Field(ge=1)
    occurred_at: Timestamp
    type: str = Field(examples=["vaultpay.account.deposited"])
    actor: str = Field(description="The user id that caused it, or `system`.")
    correlation_id: str
    subject: str
    data: dict[str, Any] = Field(description="The event's data, as the event carried it.")
    prev_hash: Hash
    hash: Hash
    chain: Annotated[int, Field(ge=1)] | SkipJsonSchema[None] = Field(
        default=None,
        description="The record's chain, only when it is not chain 0; inside what `hash` covers.",
    )


class AuditPage(ResponseModel):
    """A page of audit records, newest first."""

    items: list[AuditRecord]
    next_cursor: NextCursor


# Every parameter arrives as an unconstrained string and is validated by the service, whose messages
# (RFC 3339 times, the cursor, the limit) are the contract's.
@app.get(
    "/v1/admin/audit",
    responses=success(
        200,
        "A page of audit records, newest first.",
        {
            "items": [
                {
                    "audit_id": "aud_0c1d",
                    "seq": 42,
                    "occurred_at": "2026-11-28T10:15:30.123Z",
                    "type": "vaultpay.account.deposited",
                    "actor": "usr_admin1",
                    "correlation_id": "3f2b8c1e-5a4d-4c7b-9e0f-1a2b3c4d5e6f",
                    "subject": "acc_5b0f0c7e9d2a4c61b3e8f7a6d5c4b3a2",
                    "data": {"amount": 500000},
                    "prev_hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                    "hash": "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
                }
            ],
            "next_cursor": None,
        },
        model=AuditPage,
    ),
)
@tracer.capture_method(capture_response=False)
def list_audit_records(
    correlation_id: Annotated[str | None, Query(description="Only records of this correlation id")] = None,
    actor: Annotated[
        str | None, Query(description="Only records caused by this user id (or `system`)")
    ] = None,
    type_: Annotated[str | None, Query(alias="type", description="Only this event type")] = None,
    occurred_from: Annotated[
        str | None, Query(alias="from", description="RFC 3339; records at or after this time")
    ] = None,
    occurred_to: Annotated[
        str | None, Query(alias="to", description="RFC 3339; records before this time")
    ] = None,
    limit: Annotated[str | None, Query(description=f"1..{MAX_LIMIT}, default {DEFAULT_LIMIT}")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Response[dict[str, Any]]:
    require_admin(principal(app).role)
    page = audit_service().query(
        AuditQueryRequest(
            correlation_id=correlation_id,
            actor=actor,
            type=type_,
            occurred_from=occurred_from,
            occurred_to=occurred_to,
            limit=limit,
            cursor=cursor,
        )
    )
    return no_store_json(page.to_body())


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

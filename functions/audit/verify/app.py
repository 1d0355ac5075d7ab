"""GET /v1/admin/audit/verify: recomputes the whole audit hash chain and reports where it breaks (admin)."""

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from vaultpay.audit.service import require_admin
from vaultpay.bootstrap.audit import verify_with_checkpoints
from vaultpay.shared.http import make_admin_resolver, no_store_json, principal
from vaultpay.shared.observability import get_logger, get_metrics, get_tracer
from vaultpay.shared.openapi import ResponseModel, success

logger = get_logger()
tracer = get_tracer()
metrics = get_metrics()
# Admin-only: a caller who is not an admin is answered 403 before the route runs.
app = make_admin_resolver()


Hash = Annotated[str, Field(pattern="^[0-9a-f]{64}$", description="SHA-256, lower-case hex.")]


class BadRecord(ResponseModel):
    """Where the chain first breaks, and why (`seq` and `audit_id` are null where no record could be read)."""

    seq: int | None
    audit_id: str | None
    reason: Literal[
        "unexpected_seq",
        "broken_link",
        "hash_mismatch",
        "malformed",
        "anchor_mismatch",
        "truncated",
        "checkpoint_invalid",
    ]
    detail: str
    chain: Annotated[int, Field(ge=1)] | SkipJsonSchema[None] = Field(
        default=None, description="The chain it is in, only when it is not chain 0."
    )


class ChainFigures(ResponseModel):
    """One chain's verdict: `head_seq`/`head_hash` are its last record that verified."""

    chain: int = Field(ge=0)
    ok: bool
    records_checked: int = Field(ge=0)
    head_seq: int = Field(ge=0)
    head_hash: Hash
    first_bad_record: BadRecord | SkipJsonSchema[None] = Field(default=None, description="Only when not ok.")


class ChainVerdict(ResponseModel):
    """The log's verdict. With one chain, `head_seq`/`head_hash` are its last record that verified (64
    zeros when none did); with several, `head_seq` counts the records of all chains and `head_hash` is one
    hash over every chain's head (what a checkpoint signs), and `chains` gives each chain's own figures."""

    ok: bool
    records_checked: int = Field(ge=0)
    head_hash: Hash
    head_seq: int = Field(ge=0)
    checkpoints_checked: int = Field(ge=0)
    first_bad_record: BadRecord | SkipJsonSchema[None] = Field(default=None, description="Only when not ok.")
    chains: list[ChainFigures] | SkipJsonSchema[None] = Field(
        default=None, description="Each chain's verdict, in chain order (the log's chains: AUDIT_CHAINS)."
    )


@app.get(
    "/v1/admin/audit/verify",
    responses=success(
        200,
        "The chain was recomputed through every signed checkpoint; `ok` is false and `first_bad_record` "
        "says where it breaks (or which checkpoint it fails).",
        {
            "ok": True,
            "records_checked": 1042,
            "head_hash": "60303ae22b998861e4c3d2b1a0f9e8d7c6b5a4938271605f4e3d2c1b0a998877",
            "head_seq": 1042,
            "checkpoints_checked": 12,
            "chains": [
                {
                    "chain": 0,
                    "ok": True,
                    "records_checked": 1042,
                    "head_seq": 1042,
                    "head_hash": "60303ae22b998861e4c3d2b1a0f9e8d7c6b5a4938271605f4e3d2c1b0a998877",
                }
            ],
        },
        model=ChainVerdict,
    ),
)
@tracer.capture_method
def verify_audit_chain() -> Response[dict[str, Any]]:
    require_admin(principal(app).role)
    result = verify_with_checkpoints()
    if result.ok:
        logger.info("audit chain verified", extra={"records_checked": result.records_checked})
        metrics.add_metric(name="AuditChainVerified", unit=MetricUnit.Count, value=1)
    else:
        # A broken chain is a security incident: the log line and the metric are what an alarm watches.
        bad = result.first_bad_record.to_dict() if result.first_bad_record else {}
        logger.error("audit chain broken", extra={"first_bad_record": bad})
        metrics.add_metric(name="AuditChainBroken", unit=MetricUnit.Count, value=1)
    return no_store_json(result.to_dict())


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

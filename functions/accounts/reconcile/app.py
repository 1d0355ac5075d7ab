"""Every hour (schedule): reconciles the AccountsTable's double entry and emits `LedgerViolations`."""

# No `from __future__ import annotations` in handlers (see functions/ops/health/app.py).
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from vaultpay.bootstrap.accounts import reconcile_ledger
from vaultpay.shared.observability import LogKey, get_logger, get_metrics, get_tracer

logger = get_logger()
tracer = get_tracer()
metrics = get_metrics()

SEGMENTS = 4
# Logged one by one and returned: a run that finds a million says so in its count, not in a million lines
# (and a Lambda response is limited in size).
VIOLATIONS_SHOWN = 100


# The scheduled event carries nothing the run needs. A scan that fails raises: the function's Errors metric
# says the ledger went unchecked, which LedgerViolations = 0 must never be mistaken for.
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = reconcile_ledger(segments=SEGMENTS)
    metrics.add_metric(name="LedgerViolations", unit=MetricUnit.Count, value=len(report.violations))
    metrics.add_metric(name="LedgerAccountsChecked", unit=MetricUnit.Count, value=report.accounts_checked)
    for violation in report.violations[:VIOLATIONS_SHOWN]:
        # Ids, amounts and the check's name only: violations never carry an account number or an owner.
        fields = {k: v for k, v in violation.to_dict().items() if k != "account_id"}
        if violation.account_id:
            fields[LogKey.ACCOUNT_ID.value] = violation.account_id
        logger.error("ledger violation", extra=fields)
    body = report.to_dict(max_violations=VIOLATIONS_SHOWN)
    logger.info("ledger reconciled", extra={k: v for k, v in body.items() if k != "violations"})
    return body

"""The bank test through the local cloud (tests/support/bank_run.py): short here, long with `make soak`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.bank_run import SHORT, SOAK, BankRun, figures_json, report

pytestmark = pytest.mark.e2e

SCALES = {"short": SHORT, "soak": SOAK}


@pytest.mark.timeout(900)
def test_the_books_balance_after_concurrent_transfers_under_faults(
    api: Callable[..., Any], admin_credentials: tuple[str, str], local_cloud: Any
) -> None:
    from localcloud.faults import FaultClient

    name = os.environ.get("VAULTPAY_BANK_SCALE", "short")
    outcome = BankRun(api, admin_credentials, local_cloud, FaultClient(local_cloud.edge), SCALES[name]).run()
    text = report(outcome, name)
    print(text)
    out = os.environ.get("VAULTPAY_BANK_REPORT")
    if out:
        Path(out).write_text(text)
        # bench/bank-results.json beside the report: `soak` in bench/results.json
        Path(out).with_suffix(".json").write_text(json.dumps(figures_json(outcome, name), indent=2) + "\n")
    # Faults really happened: otherwise this would be a test of the happy path only
    injected = outcome.figures["faults injected"]
    for fault in ("lambda_errors", "lambda_crashes", "stream_duplicates", "nats_stops", "nats_node_kills"):
        assert injected.get(fault, 0) > 0, injected
    # The test cloud's NATS is a three-node cluster (tests/conftest.py): the stream's leader died mid-run,
    # another took over, and the dead one came back and caught up.
    failover = outcome.figures["NATS leader kill"]
    assert failover["was_leader"] is True, failover
    assert failover["failed_over"] is True and failover["new_leader"] != failover["node"], failover
    assert failover["nodes up at the end"] == failover["nodes"] == 3, failover
    assert outcome.ok, "\n".join(outcome.problems)
    # The event path (tests/support/event_ledger.py): every outbox item in the stream once and in the audit
    # log once, and every durable consumer back to nothing pending after the NATS outage
    figures = outcome.figures
    assert figures["outbox items"] > 0, figures
    assert figures["stream messages of outbox items"] == figures["outbox items"], figures
    assert figures["audit records of outbox items"] == figures["outbox items"], figures
    assert (figures["events lost"], figures["events duplicated"]) == (0, 0), figures
    assert figures["dead letters in VAULTPAY_DLQ"] == 0, figures
    for name, lag in figures["consumers at the end"].items():
        assert (lag["pending"], lag["ack_pending"]) == (0, 0), (name, lag)

"""Outbox sweeper: every two minutes, rescues the relay batches its stream mappings gave up on, then
re-publishes the outbox items left pending."""

from dataclasses import asdict
from typing import Any

from vaultpay.bootstrap.events import rescue_failed_batches, sweep_outbox
from vaultpay.shared.observability import scheduled_handler


def _run(context: Any) -> dict[str, Any]:
    # The rescue first: what it cannot publish it marks pending, and the sweep then finds it.
    rescued = rescue_failed_batches()
    return {**asdict(sweep_outbox()), "rescue": asdict(rescued) if rescued is not None else None}


# Sweeps the tables in OUTBOX_TABLES. A run that could not publish everything is not an error: the next run
# (two minutes on) goes on.
handler = scheduled_handler(_run)

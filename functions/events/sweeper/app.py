"""Outbox sweeper: every five minutes, re-publishes outbox items the relay has not marked published."""

from dataclasses import asdict

from vaultpay.bootstrap.events import sweep_outbox
from vaultpay.shared.observability import scheduled_handler

# Sweeps the tables in OUTBOX_TABLES. A run that could not publish everything is not an error: the next run
# (five minutes on) goes on.
handler = scheduled_handler(lambda context: asdict(sweep_outbox()))

"""Every minute (schedule): applies what JetStream's `fraud-workers` consumer holds to the risk profiles."""

from vaultpay.bootstrap.fraud import consume_pending
from vaultpay.shared.observability import scheduled_handler

# The response is a count, never an event's content.
handler = scheduled_handler(
    lambda context: consume_pending(context.get_remaining_time_in_millis).as_dict(),
    counts={
        "FraudProfileEventsApplied": "applied",
        "FraudDuplicatesSkipped": "duplicates",
        "FraudMessagesRejected": "rejected",
    },
    finished="fraud consumer run finished",
)

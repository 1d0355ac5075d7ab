"""Every minute (schedule): appends what JetStream's `audit-workers` consumer holds to the audit chain."""

from vaultpay.bootstrap.audit import consume_pending
from vaultpay.shared.observability import scheduled_handler

# The response is a count, never an event's content.
handler = scheduled_handler(
    lambda context: consume_pending(context.get_remaining_time_in_millis).as_dict(),
    counts={
        "AuditRecordsAppended": "appended",
        "AuditDuplicatesSkipped": "duplicates",
        "AuditMessagesRejected": "rejected",
    },
    finished="audit consumer run finished",
)

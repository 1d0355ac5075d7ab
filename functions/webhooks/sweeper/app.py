"""Every minute (schedule): sends the webhook deliveries whose next attempt is due (the retries)."""

from vaultpay.bootstrap.webhooks import deliver_due
from vaultpay.shared.observability import scheduled_handler

# The response is counts, never an event's content.
handler = scheduled_handler(
    lambda context: deliver_due(context.get_remaining_time_in_millis).as_dict(),
    counts={
        "WebhookDeliveriesAttempted": "attempted",
        "WebhookDeliveriesSucceeded": "succeeded",
        "WebhookAttemptsFailed": "failed_attempts",
        "WebhookDeliveriesFailed": "failed",
        "WebhooksDisabled": "disabled",
        "WebhookOldestPendingSeconds": "oldest_pending_s",
    },
    finished="webhook delivery sweep finished",
)

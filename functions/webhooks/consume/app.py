"""Every minute (schedule): turns what JetStream's `webhook-workers` consumer holds into deliveries and
feed entries (WebhookDeliverySweeperFunction sends them: it needs the internet, this one NATS)."""

from vaultpay.bootstrap.webhooks import consume_pending
from vaultpay.shared.observability import scheduled_handler

# The response is a count, never an event's content.
handler = scheduled_handler(
    lambda context: consume_pending(context.get_remaining_time_in_millis).as_dict(),
    counts={"WebhookDeliveriesCreated": "deliveries", "WebhookMessagesRejected": "rejected"},
    finished="webhook consumer run finished",
)

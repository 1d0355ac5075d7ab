"""Webhooks and the events feed: signed, retried deliveries of a customer's own events (docs/api.md)."""

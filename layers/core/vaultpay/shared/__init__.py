"""Cross-cutting pieces: money, errors, outbox, crypto, http, settings, observability, bootstrap."""

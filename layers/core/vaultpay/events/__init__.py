"""The event backbone: outbox relay to NATS JetStream, JetStream as code, dead letters and their replay."""

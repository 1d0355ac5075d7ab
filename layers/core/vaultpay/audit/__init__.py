"""The audit domain: an append-only, hash-chained log of every VaultPay event, its consumer and queries."""

"""VaultPay: the shared domain package (the core Lambda layer)."""

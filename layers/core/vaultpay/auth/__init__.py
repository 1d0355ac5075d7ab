"""Identity: access and refresh tokens, TOTP second factor (pure security core, no storage)."""

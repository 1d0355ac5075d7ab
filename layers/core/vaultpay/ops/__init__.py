"""Operations: what the platform reports about itself (health), as opposed to any business domain."""

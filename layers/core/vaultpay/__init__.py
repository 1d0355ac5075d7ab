"""VaultPay: the shared domain package (the core Lambda layer)."""

# Kept equal to [project].version in pyproject.toml (a component test checks it): inside a Lambda layer the
# package is plain files, with no installed metadata to read the version from.
__version__ = "0.2.0"

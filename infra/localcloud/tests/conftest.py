"""The local cloud's own tests: they import nothing of a product (tests/unit/test_no_product_imports.py)."""

from localcloud.testing import dynamodb_endpoint, moto_endpoint

__all__ = ["dynamodb_endpoint", "moto_endpoint"]

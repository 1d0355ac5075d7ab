"""The OpenAPI document of VaultPayApi: generated from the handlers (build.py), committed (openapi.json)."""

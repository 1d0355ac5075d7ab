"""Cached boto3 clients: one per service and configuration, reused by a warm Lambda."""

from __future__ import annotations

from typing import Any

from vaultpay.shared.lazy import cached


@cached
def aws_client(
    service: str, *, timeout_s: float = 5.0, max_attempts: int = 3, max_pool_connections: int = 10
) -> Any:
    """A boto3 client for `service`.

    The endpoint is never set here: botocore reads AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_<SERVICE>), unset
    on AWS and pointing at the local cloud or LocalStack elsewhere. boto3 is imported on first use because
    it is the largest import a function makes.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"mode": "standard", "max_attempts": max_attempts},
        max_pool_connections=max_pool_connections,  # botocore's default is 10
    )
    # A session of its own: boto3's default session is not thread-safe, while the client it returns is.
    # Typed as Any: the stubs' overloads want a literal service name, and callers pass one anyway.
    session: Any = boto3.session.Session()
    return session.client(service, config=config)

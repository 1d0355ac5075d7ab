"""Cached boto3 clients: one per service and configuration, reused by a warm Lambda."""

from __future__ import annotations

import threading
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
    from botocore.config import Config

    config = Config(
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"mode": "standard", "max_attempts": max_attempts},
        max_pool_connections=max_pool_connections,  # botocore's default is 10
    )
    # One session per process: each session loads botocore's endpoint rules and each service's model anew,
    # tens of milliseconds of a cold start per client. A session is not thread-safe, the clients it makes
    # are: clients are made under a lock (rarely: this function is cached).
    with _SESSION_LOCK:
        return _session().client(service, config=config)


_SESSION_LOCK = threading.Lock()


@cached
def _session() -> Any:
    """The process's boto3 session. Typed as Any: the stubs' overloads want a literal service name."""
    import boto3

    return boto3.session.Session()

"""The webhooks' outside world besides DynamoDB: the HTTP sender and the name resolver.

The sender connects to an address the delivery has just checked (never to whatever the name resolves to a
moment later, which a hostile DNS server could make a private address), sends one POST with TLS verified
against the URL's host name, reads the status line, and follows no redirect: a 3xx is a failed attempt.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from vaultpay.webhooks.model import DELIVERY_TIMEOUT_S, AttemptResult, WebhookUrl


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (the delivery refuses them all when one is not public)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, *, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(
        self, host: str, port: int, address: str, *, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        # The certificate is checked against the URL's host, not the address connected to.
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


class HttpSender:
    """One POST per attempt, within `timeout_s` per connect and per read."""

    def __init__(self, *, timeout_s: float = DELIVERY_TIMEOUT_S) -> None:
        self._timeout_s = timeout_s
        self._context: ssl.SSLContext | None = None

    def send(
        self, target: WebhookUrl, addresses: Sequence[str], body: bytes, headers: Mapping[str, str]
    ) -> AttemptResult:
        parts = urlsplit(target.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection = self._connection(target, addresses[0])
        try:
            connection.request("POST", path, body=body, headers=dict(headers))
            response = connection.getresponse()
            return AttemptResult(response.status)
        except TimeoutError:
            return AttemptResult(None, f"no answer within {self._timeout_s:g} s")
        except ssl.SSLError:
            return AttemptResult(None, "the TLS handshake failed")
        except ConnectionRefusedError:
            return AttemptResult(None, "the connection was refused")
        except (OSError, http.client.HTTPException):
            return AttemptResult(None, "the connection failed")
        finally:
            connection.close()

    def _connection(self, target: WebhookUrl, address: str) -> Any:
        if target.scheme == "http":
            return _PinnedHTTPConnection(target.host, target.port, address, timeout=self._timeout_s)
        if self._context is None:
            self._context = ssl.create_default_context()
            self._context.minimum_version = ssl.TLSVersion.TLSv1_2
        return _PinnedHTTPSConnection(
            target.host, target.port, address, timeout=self._timeout_s, context=self._context
        )

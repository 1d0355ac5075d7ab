"""The local cloud answers this machine only, never a web page: DNS rebinding and cross-site requests refused.

Every server of the local cloud listens on 127.0.0.1, but a browser on the same machine can still reach it:
a page on evil.example whose name is made to resolve to 127.0.0.1 (DNS rebinding) sends `Host:
evil.example:4566`, and any page can POST to http://127.0.0.1:4566 (a "simple" cross-site request needs no
CORS preflight). The edge would then proxy AWS calls, replace the fault plan or stop NATS for it, and the API
emulator would move money for it. So every request must name a loopback host, and a request that changes
state is refused when a browser says it comes from another site (`Origin` not loopback, or
`Sec-Fetch-Site: cross-site` without an origin). Tools (boto3, the aws CLI, curl, the tests) send neither.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback_host(host: str | None) -> bool:
    """True for `localhost`, `127.x.y.z` or `[::1]`, with or without a port."""
    if not host:
        return False
    name = urlsplit(f"//{host.strip()}").hostname or ""
    if name.lower() in LOOPBACK_NAMES or name.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def refusal(request: web.Request) -> str | None:
    """Why this request is refused, or None when it may pass."""
    if not is_loopback_host(request.headers.get("Host")):
        return "the Host header must name this machine (localhost, 127.0.0.1 or [::1])"
    if request.method.upper() in SAFE_METHODS:
        return None
    origin = request.headers.get("Origin")
    if origin is not None:
        if origin == "null" or not is_loopback_host(urlsplit(origin).netloc):
            return "a cross-site request may not change the local cloud (Origin is not this machine)"
        return None
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        return "a cross-site request may not change the local cloud (Sec-Fetch-Site: cross-site)"
    return None


@web.middleware
async def local_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    why = refusal(request)
    if why is not None:
        return web.json_response({"message": f"Forbidden: {why}"}, status=403)
    return await handler(request)

"""The edge: one LocalStack-compatible AWS endpoint that routes each call to the emulator serving it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

DYNAMODB_TARGETS = ("DynamoDB_20120810.", "DynamoDBStreams_20120810.")


def written_tables(body: bytes) -> frozenset[str] | None:
    """The tables a DynamoDB write request names (a table's ARN as its name); None when the request names
    none that can be read (PartiQL, a body that is not JSON)."""
    try:
        request = json.loads(body)
    except ValueError:
        return None
    if not isinstance(request, dict):
        return None
    names: list[Any] = []
    if "TableName" in request:
        names.append(request["TableName"])
    if isinstance(request.get("RequestItems"), dict):
        names.extend(request["RequestItems"])
    for item in request.get("TransactItems") or []:
        if isinstance(item, dict):
            names.extend(op.get("TableName") for op in item.values() if isinstance(op, dict))
    tables = frozenset(str(name).rsplit(":table/", 1)[-1].split("/", 1)[0] for name in names if name)
    return tables or None


DYNAMODB_WRITES = frozenset(
    f"DynamoDB_20120810.{op}"
    for op in (
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchWriteItem",
        "TransactWriteItems",
        "ExecuteStatement",
    )
)
# Headers that belong to one hop, not to the call being forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)

# Custom-resource functions PUT their result here (the presigned S3 URL of CloudFormation, locally).
CFN_RESPONSES = "/_localcloud/cfn-response"

StatusProvider = Callable[[], dict[str, Any]]


def backend_for(headers: Any) -> str:
    """Which emulator serves a call: 'dynamodb' by X-Amz-Target, otherwise 'moto'."""
    target = headers.get("X-Amz-Target", "")
    if target.startswith(DYNAMODB_TARGETS):
        return "dynamodb"
    return "moto"


class Edge:
    """Proxies AWS API calls; the Lambda Invoke API is mounted on the same app by the runtime."""

    def __init__(
        self,
        *,
        dynamodb_url: str,
        moto_url: str,
        status: StatusProvider,
        on_dynamodb_write: Callable[[frozenset[str] | None], None] | None = None,
    ) -> None:
        self.backends = {"dynamodb": dynamodb_url.rstrip("/"), "moto": moto_url.rstrip("/")}
        self.status = status
        # Every write passes through here, so stream pollers can sleep while idle and still deliver at once;
        # it names the tables written (None: not known), so only their pollers wake.
        self.on_dynamodb_write = on_dynamodb_write
        self.calls: dict[str, int] = {"dynamodb": 0, "moto": 0, "lambda": 0}
        self.custom_resource_responses: dict[str, bytes] = {}
        self._session: ClientSession | None = None

    def build_app(self, mount: Callable[[web.Application], None] | None = None) -> web.Application:
        from localcloud.localguard import local_only

        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[local_only])
        app.router.add_get("/_localstack/health", self._localstack_health)
        app.router.add_get("/_localcloud/status", self._status)
        app.router.add_put(CFN_RESPONSES + "/{request_id}", self._store_cfn_response)
        app.router.add_get(CFN_RESPONSES + "/{request_id}", self._read_cfn_response)
        if mount is not None:
            mount(app)  # the Lambda routes, before the catch-all
        app.router.add_route("*", "/{tail:.*}", self._proxy)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _: web.Application) -> None:
        self._session = ClientSession(
            connector=TCPConnector(limit=256, ttl_dns_cache=300),
            timeout=ClientTimeout(total=None, sock_connect=5),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )

    async def _close(self, _: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        backend = backend_for(request.headers)
        self.calls[backend] += 1
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        url = self.backends[backend] + request.rel_url.raw_path_qs
        try:
            async with self._session.request(
                request.method, url, headers=headers, data=body, allow_redirects=False
            ) as upstream:
                payload = await upstream.read()
                if (
                    self.on_dynamodb_write is not None
                    and request.headers.get("X-Amz-Target") in DYNAMODB_WRITES
                ):
                    self.on_dynamodb_write(written_tables(body))
                out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
                return web.Response(status=upstream.status, headers=out_headers, body=payload)
        except OSError as exc:
            return _aws_error(
                503, "ServiceUnavailable", f"{backend} is not reachable: {exc.__class__.__name__}"
            )

    async def _store_cfn_response(self, request: web.Request) -> web.Response:
        self.custom_resource_responses[request.match_info["request_id"]] = await request.read()
        return web.Response(status=200)

    async def _read_cfn_response(self, request: web.Request) -> web.Response:
        body = self.custom_resource_responses.pop(request.match_info["request_id"], None)
        if body is None:
            return web.json_response({"message": "no response was sent to this ResponseURL"}, status=404)
        return web.Response(body=body, content_type="application/json")

    async def _localstack_health(self, _: web.Request) -> web.Response:
        status = await asyncio.to_thread(self.status)
        running = {name: "running" if ok else "error" for name, ok in status.get("services", {}).items()}
        return web.json_response({"services": running, "edition": "vaultpay-localcloud", "version": "1"})

    async def _status(self, _: web.Request) -> web.Response:
        # In a thread: the status asks the NATS nodes' monitoring endpoints (blocking, loopback).
        status = await asyncio.to_thread(self.status)
        return web.json_response({**status, "edge_calls": dict(self.calls)})


def _aws_error(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps({"__type": code, "message": message}),
        content_type="application/x-amz-json-1.1",
        headers={"x-amzn-ErrorType": code},
    )

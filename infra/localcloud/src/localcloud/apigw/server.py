"""The HTTP server of one REST API: routing, authorizer, integration and errors, in API Gateway's order."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web
from multidict import CIMultiDict

from localcloud.apigw.authorizers import (
    AuthorizerCache,
    MalformedAuthorizerResult,
    build_request_authorizer_event,
    build_token_authorizer_event,
    evaluate_policy,
    identity_source_values,
    method_arn,
    parse_authorizer_result,
)
from localcloud.apigw.gateway_responses import (
    BUILTIN_RESPONSES,
    EXPLICIT_DENY_MESSAGE,
    GatewayResponses,
    RenderScope,
)
from localcloud.apigw.integration import (
    BinaryMediaTypes,
    IncomingRequest,
    MalformedProxyResponse,
    ProxyResponse,
    RequestMeta,
    build_proxy_event,
    build_request_context,
    format_request_time,
    forwarded_header_pairs,
    make_request,
    new_request_meta,
    parse_proxy_response,
    should_decode_response,
)
from localcloud.apigw.routing import RouteMatch, compile_routes
from localcloud.apigw.throttling import Clock, TokenBucket
from localcloud.spec import (
    ACCOUNT_ID,
    ApiSpec,
    AuthorizerSpec,
    Invoker,
)

# The name the emulator logged under before it was split into modules: log filters keep working.
log = logging.getLogger("localcloud.apigw")

MAX_PAYLOAD_BYTES: Final = 10 * 1024 * 1024  # API Gateway's request payload quota
DEFAULT_INTEGRATION_TIMEOUT_S: Final = 29.0  # API Gateway's default integration timeout


class _GatewayError(Exception):
    """Ends a request with a gateway response of `response_type`."""

    def __init__(
        self, response_type: str, message: str | None = None, authorizer: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(response_type)
        self.response_type = response_type
        self.message = message if message is not None else BUILTIN_RESPONSES[response_type].message
        self.authorizer = authorizer


class _FunctionFailed(Exception):
    """The invoke failed, or the function raised (then `error_message` is its errorMessage)."""

    def __init__(self, reason: str, error_message: str | None = None) -> None:
        super().__init__(reason)
        self.error_message = error_message


class _ApiGateway:
    """One REST API stage served over HTTP; state: throttle bucket, authorizer cache, in-flight invokes."""

    def __init__(
        self,
        api: ApiSpec,
        invoker: Invoker,
        *,
        clock: Clock,
        integration_timeout_s: float,
        stage_variables: Mapping[str, str] | None,
    ) -> None:
        self._api = api
        self._invoker = invoker
        self._clock = clock
        self._timeout_s = integration_timeout_s
        self._stage_variables = dict(stage_variables or {})
        self._routes = compile_routes(api.routes)
        self._responses = GatewayResponses(api.gateway_responses)
        self._binary = BinaryMediaTypes(api.binary_media_types)
        self._bucket = (
            TokenBucket(api.throttle_rate, api.throttle_burst, clock)
            if api.throttle_rate is not None
            else None
        )
        self._cache = AuthorizerCache(clock)
        self._in_flight: set[asyncio.Future[Any]] = set()
        for route in api.routes:
            if route.authorizer is not None:
                _check_authorizer(route.authorizer)

    async def close(self, _app: web.Application) -> None:
        for task in list(self._in_flight):
            task.cancel()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        # Not request.host: without a Host header it falls back to a DNS look-up of our own name.
        host = request.headers.get("Host") or "127.0.0.1"
        meta = new_request_meta(self._clock(), host, request.headers.get("X-Amzn-Trace-Id"))
        incoming: IncomingRequest | None = None
        match: RouteMatch | None = None
        try:
            if self._bucket is not None and not self._bucket.try_acquire():
                raise _GatewayError("THROTTLED")
            if (request.content_length or 0) > MAX_PAYLOAD_BYTES:
                raise _GatewayError("REQUEST_TOO_LARGE")
            raw_path = request.raw_path.partition("?")[0]
            match = self._routes.match(request.method, raw_path)
            if match is None:
                raise _GatewayError("MISSING_AUTHENTICATION_TOKEN")
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise _GatewayError("REQUEST_TOO_LARGE") from None
            incoming = self._incoming(request, body, meta)
            return await self._serve(incoming, match, meta)
        except _GatewayError as error:
            if incoming is None:  # method.request.* and $context still resolve on early errors
                incoming = self._incoming(request, b"", meta)
            return self._error_response(error, meta, incoming, match)

    def _incoming(self, request: web.Request, body: bytes, meta: RequestMeta) -> IncomingRequest:
        source_ip = request.remote or "127.0.0.1"
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        port = sockname[1] if isinstance(sockname, tuple) and len(sockname) >= 2 else 0
        # raw_headers, not headers: aiohttp re-cases well-known names (X-Correlation-Id -> X-Correlation-ID),
        # while API Gateway hands the function the client's own casing.
        sent = [(name.decode("latin-1"), _header_text(value)) for name, value in request.raw_headers]
        pairs = forwarded_header_pairs(sent, source_ip=source_ip, port=port, trace_id=meta.trace_id)
        version = request.version
        return make_request(
            request.method,
            request.raw_path,
            pairs,
            body,
            source_ip=source_ip,
            protocol=f"HTTP/{version.major}.{version.minor}",
        )

    async def _serve(self, incoming: IncomingRequest, match: RouteMatch, meta: RequestMeta) -> web.Response:
        api = self._api
        context = build_request_context(
            incoming,
            resource_path=match.route.resource,
            resource_id=match.resource_id,
            meta=meta,
            api_id=api.rest_api_id,
            stage=api.stage_name,
        )
        authorizer_context = None
        if match.route.authorizer is not None:
            authorizer_context = await self._authorize(match.route.authorizer, incoming, match, context)
        function = match.route.function_name
        if function is None:
            log.warning("%s %s has no Lambda proxy integration", match.route.method, match.route.resource)
            raise _GatewayError("INTEGRATION_FAILURE")
        event = build_proxy_event(
            incoming,
            match,
            context,
            stage_variables=self._stage_variables,
            binary=self._binary,
            authorizer=authorizer_context,
        )
        try:
            result_payload = await self._invoke(function, event)
        except _FunctionFailed as failure:
            log.warning("integration %s failed: %s", function, failure)
            raise _GatewayError("INTEGRATION_FAILURE") from None
        try:
            proxy = parse_proxy_response(result_payload)
        except MalformedProxyResponse as exc:
            log.warning("malformed Lambda proxy response from %s: %s", function, exc)
            raise _GatewayError("INTEGRATION_FAILURE") from None
        return self._integration_response(proxy, incoming, meta)

    async def _invoke(self, function: str, event: Mapping[str, Any]) -> bytes:
        """Invokes with the integration timeout; on timeout the function keeps running, as on AWS."""
        payload = json.dumps(event, separators=(",", ":")).encode()
        task = asyncio.ensure_future(self._invoker.invoke(function, payload))
        self._in_flight.add(task)
        task.add_done_callback(self._forget)
        try:
            result = await asyncio.wait_for(asyncio.shield(task), self._timeout_s)
        except TimeoutError:
            raise _GatewayError("INTEGRATION_TIMEOUT") from None
        except Exception as exc:  # FunctionNotFound, connection errors: the integration could not be reached
            raise _FunctionFailed(f"invoke failed: {type(exc).__name__}") from exc
        if result.function_error:
            raise _FunctionFailed(f"function error ({result.function_error})", _error_message(result.payload))
        if result.status != 200:
            raise _FunctionFailed(f"invoke answered HTTP {result.status}")
        return result.payload

    def _forget(self, task: asyncio.Future[Any]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so a timed-out invoke that later fails is not reported as unhandled

    async def _authorize(
        self,
        authorizer: AuthorizerSpec,
        incoming: IncomingRequest,
        match: RouteMatch,
        request_context: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Runs (or reuses) the authorizer; returns requestContext.authorizer or raises _GatewayError."""
        api = self._api
        key = identity_source_values(
            authorizer, incoming, match.path_parameters, self._stage_variables, request_context
        )
        if key is None:
            raise _GatewayError("UNAUTHORIZED")
        arn = method_arn(api.rest_api_id, api.stage_name, incoming.method, incoming.raw_path)
        cacheable = authorizer.ttl_s > 0 and bool(authorizer.identity_sources)
        result = self._cache.get(authorizer.name, key) if cacheable else None
        latency_ms = 0
        if result is None:
            if authorizer.kind.lower() == "token":
                event = build_token_authorizer_event(key[0], arn)
            else:
                event = build_request_authorizer_event(
                    incoming, match, request_context, arn=arn, stage_variables=self._stage_variables
                )
            started = time.perf_counter()
            try:
                payload = await self._invoke(authorizer.function_name, event)
            except _GatewayError:
                raise _GatewayError("AUTHORIZER_FAILURE") from None
            except _FunctionFailed as failure:
                if failure.error_message == "Unauthorized":
                    raise _GatewayError("UNAUTHORIZED") from None
                log.warning("authorizer %s failed: %s", authorizer.name, failure)
                kind = (
                    "AUTHORIZER_CONFIGURATION_ERROR"
                    if failure.error_message is not None
                    else "AUTHORIZER_FAILURE"
                )
                raise _GatewayError(kind) from None
            latency_ms = int((time.perf_counter() - started) * 1000)
            try:
                result = parse_authorizer_result(payload)
            except MalformedAuthorizerResult as exc:
                log.warning("authorizer %s answered a malformed result: %s", authorizer.name, exc)
                raise _GatewayError("AUTHORIZER_CONFIGURATION_ERROR") from None
            if cacheable:
                self._cache.put(authorizer.name, key, result, authorizer.ttl_s)
        context = result.context_for_integration(latency_ms)
        decision = evaluate_policy(result.statements, arn)
        if decision == "explicit_deny":
            raise _GatewayError("ACCESS_DENIED", EXPLICIT_DENY_MESSAGE, context)
        if decision == "implicit_deny":
            raise _GatewayError("ACCESS_DENIED", authorizer=context)
        return context

    def _integration_response(
        self, proxy: ProxyResponse, incoming: IncomingRequest, meta: RequestMeta
    ) -> web.Response:
        headers = proxy.headers
        if "Content-Type" not in headers:
            headers["Content-Type"] = "application/json"  # API Gateway's default for proxy responses
        body = b""
        if proxy.body:
            if proxy.is_base64 and should_decode_response(
                incoming.header("Accept"), headers.get("Content-Type"), self._binary
            ):
                try:
                    body = base64.b64decode(proxy.body, validate=False)
                except (binascii.Error, ValueError):
                    log.warning("Lambda proxy response body is not valid base64")
                    raise _GatewayError("INTEGRATION_FAILURE") from None
            else:
                body = proxy.body.encode()
        _add_request_headers(headers, meta)
        return web.Response(status=proxy.status, body=body, headers=headers)

    def _error_response(
        self,
        error: _GatewayError,
        meta: RequestMeta,
        incoming: IncomingRequest,
        match: RouteMatch | None,
    ) -> web.Response:
        api = self._api
        message = error.message
        context: dict[str, Any] = {
            "requestId": meta.request_id,
            "extendedRequestId": meta.extended_request_id,
            "apiId": api.rest_api_id,
            "stage": api.stage_name,
            "accountId": ACCOUNT_ID,
            "domainName": meta.domain_name,
            "requestTime": format_request_time(meta.epoch_s),
            "requestTimeEpoch": int(meta.epoch_s * 1000),
            "resourcePath": match.route.resource if match is not None else "",
            "resourceId": match.resource_id if match is not None else "",
            "httpMethod": incoming.method,
            "path": f"/{api.stage_name}{incoming.raw_path}",
            "identity": {"sourceIp": incoming.source_ip, "userAgent": incoming.header("User-Agent")},
            "authorizer": dict(error.authorizer or {}),
            "error": {
                "message": message,
                "messageString": json.dumps(message),
                "responseType": error.response_type,
            },
        }
        scope = RenderScope(
            context=context,
            stage_variables=self._stage_variables,
            request=incoming,
            path_parameters=match.path_parameters if match is not None else None,
        )
        rendered = self._responses.render(error.response_type, scope)
        headers: CIMultiDict[str] = CIMultiDict(rendered.headers)
        headers["x-amzn-ErrorType"] = BUILTIN_RESPONSES[error.response_type].error_type
        _add_request_headers(headers, meta)
        return web.Response(status=rendered.status, body=rendered.body, headers=headers)


def _header_text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _add_request_headers(headers: CIMultiDict[str], meta: RequestMeta) -> None:
    headers["x-amzn-RequestId"] = meta.request_id
    headers["x-amz-apigw-id"] = meta.extended_request_id
    headers["X-Amzn-Trace-Id"] = meta.trace_id


def _error_message(payload: bytes) -> str:
    """errorMessage of a function error payload ({"errorMessage", "errorType", ...}); "" when it has none."""
    with contextlib.suppress(ValueError):
        doc = json.loads(payload)
        if isinstance(doc, dict) and isinstance(doc.get("errorMessage"), str):
            return str(doc["errorMessage"])
    return ""


_IDENTITY_SOURCE_PREFIXES: Final = (
    "method.request.header.",
    "method.request.multivalueheader.",
    "method.request.querystring.",
    "method.request.multivaluequerystring.",
    "method.request.path.",
    "stageVariables.",
    "context.",
)


def _check_authorizer(authorizer: AuthorizerSpec) -> None:
    kind = authorizer.kind.lower()
    if kind not in ("token", "request"):
        raise ValueError(f"authorizer {authorizer.name}: unsupported type {authorizer.kind!r}")
    sources = [s.strip() for s in authorizer.identity_sources]
    if kind == "token" and (len(sources) != 1 or not sources[0].startswith("method.request.header.")):
        raise ValueError(
            f"TOKEN authorizer {authorizer.name} needs exactly one method.request.header.* source"
        )
    for source in sources:
        if not source.startswith(_IDENTITY_SOURCE_PREFIXES):
            raise ValueError(f"authorizer {authorizer.name}: unsupported identity source {source!r}")


def build_api_app(
    api: ApiSpec,
    invoker: Invoker,
    *,
    clock: Clock = time.time,
    integration_timeout_s: float = DEFAULT_INTEGRATION_TIMEOUT_S,
    stage_variables: Mapping[str, str] | None = None,
) -> web.Application:
    """An aiohttp app serving `api`'s stage at the root, as its execute-api endpoint does.

    Raises ValueError for a definition API Gateway would refuse or the emulator cannot honour (conflicting
    routes, VTL beyond the supported subset). `clock` drives request times, throttling and the authorizer
    cache. Not emulated: non-Lambda integrations (MOCK, HTTP, AWS service; such routes answer 502), IAM and
    Cognito authorizers, API keys and usage plans, request validators, per-method throttling, WAF, mutual TLS,
    custom domains and base path mappings, response streaming, and the 6 MB Lambda payload quota (the
    runtime enforces its own).
    """
    gateway = _ApiGateway(
        api,
        invoker,
        clock=clock,
        integration_timeout_s=integration_timeout_s,
        stage_variables=stage_variables,
    )
    from localcloud.localguard import local_only

    app = web.Application(client_max_size=MAX_PAYLOAD_BYTES, middlewares=[local_only])
    # Any path reaches the gateway, even one whose decoded form holds a newline (`.` would not match it and
    # aiohttp would answer its own text/plain 404): API Gateway routes it, or answers with a gateway response.
    app.router.add_route("*", r"/{tail:[\s\S]*}", gateway.handle)
    app.on_cleanup.append(gateway.close)
    return app

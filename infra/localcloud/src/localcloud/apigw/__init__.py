"""API Gateway REST API emulator: v1 Lambda proxy integration, Lambda authorizers, gateway responses.

One module per concern: `routing` (the resource tree), `integration` (request to proxy event, proxy response
back), `authorizers` (Lambda authorizers and their cache), `gateway_responses` (and their VTL), `throttling`
(the stage's token bucket) and `server` (the aiohttp app that runs them in API Gateway's order).
"""

from __future__ import annotations

from localcloud.apigw.authorizers import (
    AuthorizerCache,
    AuthorizerResult,
    MalformedAuthorizerResult,
    PolicyDecision,
    PolicyStatement,
    build_request_authorizer_event,
    build_token_authorizer_event,
    evaluate_policy,
    identity_source_values,
    method_arn,
    parse_authorizer_result,
)
from localcloud.apigw.gateway_responses import (
    EXPLICIT_DENY_MESSAGE,
    GatewayResponses,
    RenderedResponse,
    RenderScope,
    Template,
    compile_template,
    escape_javascript,
)
from localcloud.apigw.integration import (
    BinaryMediaTypes,
    IncomingRequest,
    MalformedProxyResponse,
    ProxyResponse,
    RequestMeta,
    build_proxy_event,
    build_request_context,
    encode_request_body,
    format_request_time,
    forwarded_header_pairs,
    make_request,
    new_request_meta,
    parse_proxy_response,
    parse_query_string,
    should_decode_response,
)
from localcloud.apigw.routing import RouteMatch, RouteTable, compile_routes
from localcloud.apigw.server import DEFAULT_INTEGRATION_TIMEOUT_S, MAX_PAYLOAD_BYTES, build_api_app
from localcloud.apigw.throttling import TokenBucket

__all__ = [
    "DEFAULT_INTEGRATION_TIMEOUT_S",
    "EXPLICIT_DENY_MESSAGE",
    "MAX_PAYLOAD_BYTES",
    "AuthorizerCache",
    "AuthorizerResult",
    "BinaryMediaTypes",
    "GatewayResponses",
    "IncomingRequest",
    "MalformedAuthorizerResult",
    "MalformedProxyResponse",
    "PolicyDecision",
    "PolicyStatement",
    "ProxyResponse",
    "RenderScope",
    "RenderedResponse",
    "RequestMeta",
    "RouteMatch",
    "RouteTable",
    "Template",
    "TokenBucket",
    "build_api_app",
    "build_proxy_event",
    "build_request_authorizer_event",
    "build_request_context",
    "build_token_authorizer_event",
    "compile_routes",
    "compile_template",
    "encode_request_body",
    "escape_javascript",
    "evaluate_policy",
    "format_request_time",
    "forwarded_header_pairs",
    "identity_source_values",
    "make_request",
    "method_arn",
    "new_request_meta",
    "parse_authorizer_result",
    "parse_proxy_response",
    "parse_query_string",
    "should_decode_response",
]

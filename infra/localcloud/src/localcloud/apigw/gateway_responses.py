"""Gateway responses (AWS::ApiGateway::GatewayResponse) and the small VTL subset they need."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from localcloud.apigw.integration import IncomingRequest
from localcloud.spec import (
    GatewayResponseSpec,
)


@dataclass(frozen=True, slots=True)
class BuiltinResponse:
    status: int
    error_type: str
    message: str | None
    template: str = '{"message":$context.error.messageString}'


BUILTIN_RESPONSES: Final[dict[str, BuiltinResponse]] = {
    "MISSING_AUTHENTICATION_TOKEN": BuiltinResponse(
        403, "MissingAuthenticationTokenException", "Missing Authentication Token"
    ),
    "UNAUTHORIZED": BuiltinResponse(401, "UnauthorizedException", "Unauthorized"),
    # API Gateway's built-in ACCESS_DENIED body really says "Message" with a capital M.
    "ACCESS_DENIED": BuiltinResponse(
        403,
        "AccessDeniedException",
        "User is not authorized to access this resource",
        '{"Message":$context.error.messageString}',
    ),
    "THROTTLED": BuiltinResponse(429, "TooManyRequestsException", "Too Many Requests"),
    "AUTHORIZER_FAILURE": BuiltinResponse(500, "AuthorizerFailureException", None),
    "AUTHORIZER_CONFIGURATION_ERROR": BuiltinResponse(500, "AuthorizerConfigurationException", None),
    # Function errors, invoke failures and malformed proxy responses: 502 "Internal server error".
    "INTEGRATION_FAILURE": BuiltinResponse(502, "InternalServerErrorException", "Internal server error"),
    "INTEGRATION_TIMEOUT": BuiltinResponse(504, "InternalServerErrorException", "Endpoint request timed out"),
    "REQUEST_TOO_LARGE": BuiltinResponse(413, "RequestTooLargeException", "Request Too Long"),
    "DEFAULT_4XX": BuiltinResponse(400, "BadRequestException", None),
    "DEFAULT_5XX": BuiltinResponse(500, "InternalServerErrorException", None),
}
# Every type AWS::ApiGateway::GatewayResponse accepts; the emulator raises only those in BUILTIN_RESPONSES.
_RESPONSE_TYPES: Final = frozenset(
    {
        *BUILTIN_RESPONSES,
        "API_CONFIGURATION_ERROR",
        "BAD_REQUEST_BODY",
        "BAD_REQUEST_PARAMETERS",
        "EXPIRED_TOKEN",
        "INVALID_API_KEY",
        "INVALID_SIGNATURE",
        "QUOTA_EXCEEDED",
        "RESOURCE_NOT_FOUND",
        "UNSUPPORTED_MEDIA_TYPE",
        "WAF_FILTERED",
    }
)
EXPLICIT_DENY_MESSAGE: Final = "User is not authorized to access this resource with an explicit deny"


@dataclass(frozen=True, slots=True)
class RenderScope:
    """What $context / stageVariables / method.request.* resolve against when rendering a response."""

    context: Mapping[str, Any]
    stage_variables: Mapping[str, str]
    request: IncomingRequest | None
    path_parameters: Mapping[str, str] | None

    def resolve(self, path: tuple[str, ...]) -> Any:
        head, rest = path[0], path[1:]
        if head == "context":
            value: Any = self.context
            for part in rest:
                if not isinstance(value, Mapping):
                    return None
                value = value.get(part)
            return value
        if head == "stageVariables":
            return self.stage_variables.get(rest[0]) if len(rest) == 1 else None
        if head == "method" and len(rest) == 3 and rest[0] == "request":
            kind, name = rest[1], rest[2]
            request = self.request
            if request is None:
                return None
            if kind == "header":
                return request.header(name)
            if kind == "multivalueheader":
                values = request.lower_multi_headers.get(name.lower())
                return ",".join(values) if values else None
            if kind == "querystring":
                return (request.query or {}).get(name)
            if kind == "multivaluequerystring":
                multi = (request.multi_query or {}).get(name)
                return ",".join(multi) if multi else None
            if kind == "path":
                return (self.path_parameters or {}).get(name)
        return None


def vtl_text(value: Any) -> str:
    """How Velocity prints a value: missing renders empty, booleans lower-case."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, separators=(",", ":"))


def escape_javascript(text: str) -> str:
    """$util.escapeJavaScript: Java StringEscapeUtils rules, \\' too (invalid JSON, as on AWS)."""
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch in "\"'\\/":
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif code < 0x20 or code > 0x7E:
            out.extend(f"\\u{unit:04X}" for unit in _utf16_units(code))
        else:
            out.append(ch)
    return "".join(out)


def _utf16_units(code: int) -> tuple[int, ...]:
    if code <= 0xFFFF:
        return (code,)
    code -= 0x10000
    return (0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF))


_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_REF_PATH = rf"(?:context|stageVariables)(?:\.{_IDENT})+"
_TEMPLATE_TOKEN = re.compile(
    rf"\$util\.escapeJavaScript\(\s*\$!?(?P<eb>\{{)?(?P<escaped>{_REF_PATH})(?(eb)\}})\s*\)"
    rf"|\$(?P<quiet>!)?(?P<brace>\{{)?(?P<ref>{_REF_PATH})(?(brace)\}})"
)
_UNSUPPORTED_VTL = re.compile(
    r"#(?:set|if|elseif|foreach|macro|define|parse|include|evaluate)\s*\(|#(?:else|end)\b|\$!?\{?[A-Za-z]"
)


@dataclass(frozen=True, slots=True)
class _Ref:
    path: tuple[str, ...]
    escape: bool


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled mapping template: literal text and $context / $stageVariables references."""

    parts: tuple[str | _Ref, ...]

    def render(self, scope: RenderScope) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                text = vtl_text(scope.resolve(part.path))
                out.append(escape_javascript(text) if part.escape else text)
        return "".join(out)


def compile_template(text: str) -> Template:
    """Compiles the supported VTL subset; raises ValueError on anything else rather than render it wrongly.

    Supported: $context.x.y / ${context.x.y} / $!context.x.y, the same for $stageVariables.name, and
    $util.escapeJavaScript(<one of those>). Directives (#set, #if, #foreach ...), $input and other $util
    functions are refused.
    """
    parts: list[str | _Ref] = []
    position = 0
    for token in _TEMPLATE_TOKEN.finditer(text):
        literal = text[position : token.start()]
        _refuse_unsupported(literal, text)
        if literal:
            parts.append(literal)
        path = token.group("escaped") or token.group("ref")
        parts.append(_Ref(tuple(path.split(".")), escape=token.group("escaped") is not None))
        position = token.end()
    tail = text[position:]
    _refuse_unsupported(tail, text)
    if tail:
        parts.append(tail)
    return Template(tuple(parts))


def _refuse_unsupported(literal: str, template: str) -> None:
    found = _UNSUPPORTED_VTL.search(literal)
    if found is not None:
        raise ValueError(f"unsupported VTL at {found.group(0)!r} in gateway response template {template!r}")


ValueExpr = Callable[[RenderScope], str | None]


def _compile_parameter(expression: str) -> ValueExpr:
    """A response parameter's source: 'literal', method.request.*, context.*, stageVariables.*."""
    expression = expression.strip()
    if len(expression) >= 2 and expression[0] == expression[-1] == "'":
        literal = expression[1:-1]
        return lambda _scope: literal
    path = tuple(expression.split("."))
    valid = (
        (path[0] == "context" and len(path) >= 2)
        or (path[0] == "stageVariables" and len(path) == 2)
        or (
            len(path) == 4
            and path[:2] == ("method", "request")
            and path[2] in ("header", "multivalueheader", "querystring", "multivaluequerystring", "path")
        )
    )
    if not valid:
        raise ValueError(f"unsupported gateway response parameter source: {expression!r}")

    def resolve(scope: RenderScope) -> str | None:
        value = scope.resolve(path)
        return None if value is None else vtl_text(value)

    return resolve


@dataclass(frozen=True, slots=True)
class RenderedResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True, slots=True)
class _CompiledGatewayResponse:
    status: int | None
    headers: tuple[tuple[str, ValueExpr], ...]
    templates: tuple[tuple[str, Template], ...]  # application/json first


class GatewayResponses:
    """The API's gateway responses, compiled once, with API Gateway's fallbacks.

    A type's own definition wins; otherwise DEFAULT_4XX or DEFAULT_5XX (by the type's status class); otherwise
    the built-in response. The definition in force supplies status override, headers and template; a missing
    template falls back to the built-in one.
    """

    def __init__(self, specs: Iterable[GatewayResponseSpec]) -> None:
        self._compiled: dict[str, _CompiledGatewayResponse] = {}
        self._builtin_templates = {
            name: compile_template(b.template) for name, b in BUILTIN_RESPONSES.items()
        }
        for spec in specs:
            if spec.response_type not in _RESPONSE_TYPES:
                raise ValueError(f"unknown gateway response type: {spec.response_type!r}")
            headers: list[tuple[str, ValueExpr]] = []
            for key, expression in spec.response_parameters.items():
                prefix = "gatewayresponse.header."
                if not key.startswith(prefix):
                    raise ValueError(f"unsupported gateway response parameter: {key!r}")
                headers.append((key[len(prefix) :], _compile_parameter(expression)))
            templates = sorted(spec.response_templates.items(), key=lambda kv: kv[0] != "application/json")
            self._compiled[spec.response_type] = _CompiledGatewayResponse(
                status=spec.status_code,
                headers=tuple(headers),
                templates=tuple((ct, compile_template(t)) for ct, t in templates),
            )

    def render(self, response_type: str, scope: RenderScope) -> RenderedResponse:
        builtin = BUILTIN_RESPONSES[response_type]
        spec = self._compiled.get(response_type) or self._compiled.get(
            "DEFAULT_4XX" if builtin.status < 500 else "DEFAULT_5XX"
        )
        status = spec.status if spec is not None and spec.status is not None else builtin.status
        if spec is not None and spec.templates:
            content_type, template = spec.templates[0]
        else:
            content_type, template = "application/json", self._builtin_templates[response_type]
        headers = [("Content-Type", content_type)]
        if spec is not None:
            for name, expression in spec.headers:
                value = expression(scope)
                if value:
                    if name.lower() == "content-type":
                        headers[0] = ("Content-Type", value)
                    else:
                        headers.append((name, value))
        return RenderedResponse(status=status, headers=headers, body=template.render(scope).encode())

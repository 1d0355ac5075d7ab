"""The API's resource tree: which route a method and path match, and the path parameters it binds."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from localcloud.spec import (
    RouteSpec,
)


@dataclass(frozen=True, slots=True)
class RouteMatch:
    route: RouteSpec
    resource_id: str
    path_parameters: dict[str, str] | None  # None when the resource has no variables, as API Gateway sends


@dataclass(slots=True)
class _Node:
    resource: str
    literals: dict[str, _Node] = field(default_factory=dict)
    param_name: str | None = None
    param: _Node | None = None
    greedy_name: str | None = None
    greedy: _Node | None = None
    methods: dict[str, RouteSpec] = field(default_factory=dict)


def _resource_id(resource: str) -> str:
    # Stable across restarts so logs and tests can refer to it; AWS ids are 6-10 lowercase characters.
    return hashlib.sha256(resource.encode()).hexdigest()[:6]


def _decode_segment(segment: str) -> str:
    # Unlike the query string, '+' stays '+' in a path.
    return unquote(segment) if "%" in segment else segment


class RouteTable:
    """The API's resource tree, compiled once; `match` walks it without regular expressions."""

    def __init__(self, root: _Node, resource_ids: Mapping[str, str]) -> None:
        self._root = root
        self._resource_ids = dict(resource_ids)

    def match(self, method: str, raw_path: str) -> RouteMatch | None:
        """The most specific resource that has `method` (or ANY): literal, then {param}, then {greedy+}.

        The choice is made on the (resource, method) pair, as API Gateway does: a literal resource without the
        request's method yields to a {param} sibling or a greedy ancestor that has it (measured on AWS).
        """
        segments = [s for s in raw_path.split("/") if s]
        found = self._walk(self._root, segments, 0, method, [])
        if found is None:
            return None
        node, route, captured = found
        params = dict(captured) if captured else None
        return RouteMatch(route=route, resource_id=self._resource_ids[node.resource], path_parameters=params)

    def _walk(
        self, node: _Node, segments: list[str], index: int, method: str, captured: list[tuple[str, str]]
    ) -> tuple[_Node, RouteSpec, list[tuple[str, str]]] | None:
        if index == len(segments):
            route = node.methods.get(method) or node.methods.get("ANY")
            return (node, route, captured) if route is not None else None
        segment = _decode_segment(segments[index])
        literal = node.literals.get(segment)
        if literal is not None:
            found = self._walk(literal, segments, index + 1, method, captured)
            if found is not None:
                return found
        if node.param is not None and node.param_name is not None:
            found = self._walk(
                node.param, segments, index + 1, method, [*captured, (node.param_name, segment)]
            )
            if found is not None:
                return found
        if node.greedy is not None and node.greedy_name is not None:
            route = node.greedy.methods.get(method) or node.greedy.methods.get("ANY")
            if route is not None:
                rest = unquote("/".join(segments[index:]))
                return node.greedy, route, [*captured, (node.greedy_name, rest)]
        return None


_VARIABLE = re.compile(r"^\{([A-Za-z0-9._-]+)(\+?)\}$")


def compile_routes(routes: Iterable[RouteSpec]) -> RouteTable:
    """Builds the resource tree; raises ValueError for a tree API Gateway itself would refuse."""
    root = _Node(resource="/")
    resource_ids = {"/": _resource_id("/")}
    for route in routes:
        method = route.method.upper()
        node = root
        parts = [p for p in route.resource.split("/") if p]
        for position, part in enumerate(parts):
            resource = "/" + "/".join(parts[: position + 1])
            variable = _VARIABLE.match(part)
            if variable is None:
                node = node.literals.setdefault(part, _Node(resource=resource))
            elif variable.group(2):
                if position != len(parts) - 1:
                    raise ValueError(f"greedy path variable must be the last part: {route.resource}")
                name = variable.group(1)
                if node.greedy is None:
                    node.greedy_name, node.greedy = name, _Node(resource=resource)
                elif node.greedy_name != name:
                    raise ValueError(f"two greedy variables under one resource: {route.resource}")
                node = node.greedy
            else:
                name = variable.group(1)
                if node.param is None:
                    node.param_name, node.param = name, _Node(resource=resource)
                elif node.param_name != name:
                    # API Gateway: "A sibling ({x}) of this resource already has a variable path part".
                    raise ValueError(
                        f"conflicting path variables {{{node.param_name}}} and {part}: {route.resource}"
                    )
                node = node.param
            resource_ids.setdefault(node.resource, _resource_id(node.resource))
        if method in node.methods:
            raise ValueError(f"duplicate route {method} {route.resource}")
        node.methods[method] = route
    return RouteTable(root, resource_ids)

"""Route matching of the API Gateway emulator: precedence, methods, path parameters."""

from __future__ import annotations

import pytest

from localcloud.apigw import compile_routes
from localcloud.spec import RouteSpec

pytestmark = pytest.mark.unit


def table(*routes: tuple[str, str]) -> object:
    return compile_routes(RouteSpec(method=m, resource=r, function_name=f"{m} {r}") for m, r in routes)


def served_by(routes: list[tuple[str, str]], method: str, path: str) -> str | None:
    match = compile_routes(
        RouteSpec(method=m, resource=r, function_name=f"{m} {r}") for m, r in routes
    ).match(method, path)
    return None if match is None else match.route.function_name


def test_literal_segment_beats_path_variable() -> None:
    # Given a literal and a variable sibling
    routes = [("GET", "/v1/accounts/{account_id}"), ("GET", "/v1/accounts/summary")]

    # When / Then
    assert served_by(routes, "GET", "/v1/accounts/summary") == "GET /v1/accounts/summary"
    assert served_by(routes, "GET", "/v1/accounts/acc-1") == "GET /v1/accounts/{account_id}"


def test_path_variable_beats_greedy_variable() -> None:
    routes = [("ANY", "/{proxy+}"), ("GET", "/v1/accounts/{account_id}")]

    assert served_by(routes, "GET", "/v1/accounts/acc-1") == "GET /v1/accounts/{account_id}"
    assert served_by(routes, "GET", "/v1/accounts/acc-1/statement") == "ANY /{proxy+}"


def test_greedy_variable_captures_the_rest_without_leading_slash() -> None:
    match = compile_routes([RouteSpec("ANY", "/files/{path+}", "f")]).match("GET", "/files/a/b%20c/d.txt")

    assert match is not None
    assert match.path_parameters == {"path": "a/b c/d.txt"}


def test_greedy_variable_needs_at_least_one_segment() -> None:
    routes = [("ANY", "/{proxy+}")]

    assert served_by(routes, "GET", "/") is None
    assert served_by(routes, "GET", "/x") == "ANY /{proxy+}"


def test_any_matches_every_method_and_an_exact_method_beats_it() -> None:
    routes = [("ANY", "/v1/things"), ("POST", "/v1/things")]

    assert served_by(routes, "DELETE", "/v1/things") == "ANY /v1/things"
    assert served_by(routes, "POST", "/v1/things") == "POST /v1/things"


def test_literal_without_the_method_yields_to_a_variable_sibling_that_has_it() -> None:
    # Measured on AWS: GET /users/me is served by /users/{user_id} when /users/me only has PATCH.
    routes = [("PATCH", "/users/me"), ("GET", "/users/{user_id}")]

    assert served_by(routes, "GET", "/users/me") == "GET /users/{user_id}"
    assert served_by(routes, "PATCH", "/users/me") == "PATCH /users/me"
    assert served_by(routes, "POST", "/users/me") is None


def test_resource_without_the_method_falls_through_to_a_greedy_ancestor() -> None:
    routes = [("ANY", "/{proxy+}"), ("GET", "/jobs/{operation}")]

    assert served_by(routes, "POST", "/jobs/reboot") == "ANY /{proxy+}"
    assert served_by(routes, "GET", "/jobs") == "ANY /{proxy+}"


def test_unknown_path_or_method_matches_nothing() -> None:
    routes = [("GET", "/v1/health")]

    assert served_by(routes, "GET", "/v1/nope") is None
    assert served_by(routes, "POST", "/v1/health") is None
    assert served_by(routes, "GET", "/v1/health/extra") is None


def test_path_parameters_are_decoded_and_plus_stays_plus() -> None:
    match = compile_routes([RouteSpec("GET", "/v1/users/{email}/keys/{key_id}", "f")]).match(
        "GET", "/v1/users/a%2Bb%40x.com/keys/k+1"
    )

    assert match is not None
    assert match.path_parameters == {"email": "a+b@x.com", "key_id": "k+1"}


def test_encoded_literal_segment_still_matches_the_literal() -> None:
    assert served_by([("GET", "/v1/health")], "GET", "/v1/%68ealth") == "GET /v1/health"


def test_resource_without_variables_has_null_path_parameters() -> None:
    match = compile_routes([RouteSpec("GET", "/v1/health", "f")]).match("GET", "/v1/health")

    assert match is not None
    assert match.path_parameters is None


def test_trailing_slash_matches_the_same_resource() -> None:
    assert served_by([("GET", "/v1/health")], "GET", "/v1/health/") == "GET /v1/health"


def test_root_resource_is_matched_by_slash() -> None:
    assert served_by([("GET", "/")], "GET", "/") == "GET /"


def test_resource_ids_are_stable_and_distinct() -> None:
    routes = [RouteSpec("GET", "/a", "f"), RouteSpec("GET", "/b", "g")]
    first = compile_routes(routes)
    second = compile_routes(routes)

    a1, a2, b1 = first.match("GET", "/a"), second.match("GET", "/a"), first.match("GET", "/b")

    assert a1 is not None and a2 is not None and b1 is not None
    assert a1.resource_id == a2.resource_id != b1.resource_id


@pytest.mark.parametrize(
    ("routes", "reason"),
    [
        ([("GET", "/a/{id}"), ("GET", "/a/{name}/b")], "conflicting path variables"),
        ([("GET", "/a/{rest+}/b")], "greedy path variable must be the last part"),
        ([("GET", "/a"), ("get", "/a")], "duplicate route"),
    ],
)
def test_definitions_api_gateway_refuses_are_refused(routes: list[tuple[str, str]], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        table(*routes)

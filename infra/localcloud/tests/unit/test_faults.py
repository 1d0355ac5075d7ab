"""The fault plan: parsing and validation, resolution against deployed functions, the injector's decisions,
the NATS outage controller and the HTTP API's answers (400 with the reason for a bad plan)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from localcloud.fault_api import FaultController, add_fault_routes
from localcloud.faults import (
    DEFAULT_ERROR_MESSAGE,
    FaultInjector,
    FaultPlan,
    FaultPlanError,
    LambdaErrorRule,
    parse_plan,
)
from localcloud.services import LocalCloudError
from localcloud.spec import FunctionSpec

pytestmark = pytest.mark.unit


def a_spec(logical_id: str, name: str) -> FunctionSpec:
    return FunctionSpec(
        logical_id=logical_id,
        name=name,
        handler="app.handler",
        code_dir=Path("/code"),
        layer_dirs=(),
        runtime="python3.13",
        timeout_s=3,
        memory_mb=256,
        environment={},
    )


FUNCTIONS = {
    spec.name: spec
    for spec in (
        a_spec("ReserveFundsFunction", "vaultpay-local-ReserveFundsFunction"),
        a_spec("ReleaseFundsFunction", "vaultpay-local-ReleaseFundsFunction"),
        a_spec("RelayFunction", "vaultpay-local-RelayFunction"),
    )
}
RESERVE = "vaultpay-local-ReserveFundsFunction"
RELEASE = "vaultpay-local-ReleaseFundsFunction"
RELAY = "vaultpay-local-RelayFunction"


def an_injector() -> FaultInjector:
    return FaultInjector(lambda: FUNCTIONS, lambda: {RELAY})


# ---- parsing --------------------------------------------------------------------------------------------
def test_a_full_plan_is_parsed_with_its_defaults() -> None:
    plan = parse_plan(
        {
            "seed": 7,
            "lambda_errors": [{"functions": ["ReserveFundsFunction"], "error_type": "TransientError"}],
            "lambda_crashes": [{"functions": ["*Funds*"], "probability": 0.25}],
            "stream_duplicates": [{"functions": ["RelayFunction"]}],
            "nats_down_for_s": 3,
        }
    )
    assert plan.lambda_errors[0] == LambdaErrorRule(
        functions=("ReserveFundsFunction",),
        error_type="TransientError",
        error_message=DEFAULT_ERROR_MESSAGE,
        attempts=1,
    )
    assert plan.lambda_crashes[0].probability == 0.25
    assert plan.lambda_crashes[0].first_attempt_only is True
    assert plan.stream_duplicates[0].probability == 1.0
    assert plan.nats_down_for_s == 3.0
    assert plan.seed == 7


def test_an_empty_plan_is_valid_and_injects_nothing() -> None:
    assert parse_plan({}) == FaultPlan()


def test_a_plan_reads_back_as_the_json_it_came_from() -> None:
    raw = {
        "lambda_errors": [
            {
                "functions": ["A"],
                "error_type": "TransientError",
                "error_message": "m",
                "attempts": 2,
                "probability": 0.5,
            }
        ],
        "lambda_crashes": [{"functions": ["B"], "probability": 0.5, "first_attempt_only": False}],
        "stream_duplicates": [{"functions": ["C"], "probability": 0.1}],
        "nats_down_for_s": 2.5,
        "seed": 1,
    }
    assert parse_plan(raw).to_json() == raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "the fault plan must be a JSON object, got a list"),
        ({"lambda_error": []}, "unknown field(s) ['lambda_error']"),
        ({"lambda_errors": {}}, "lambda_errors must be a list of rules, got an object"),
        ({"lambda_errors": [{"functions": ["A"]}]}, "lambda_errors[0] is missing ['error_type']"),
        ({"lambda_errors": [{"functions": [], "error_type": "E"}]}, "lambda_errors[0].functions must be a"),
        ({"lambda_errors": [{"functions": "A", "error_type": "E"}]}, "lambda_errors[0].functions must be a"),
        ({"lambda_errors": [{"functions": [""], "error_type": "E"}]}, "must hold non-empty strings"),
        ({"lambda_errors": [{"functions": ["A"], "error_type": ""}]}, "lambda_errors[0].error_type must be"),
        ({"lambda_errors": [{"functions": ["A"], "error_type": "Bad Name"}]}, "without spaces"),
        (
            {"lambda_errors": [{"functions": ["A"], "error_type": "E", "probability": 1.5}]},
            "lambda_errors[0].probability",
        ),
        ({"lambda_errors": [{"functions": ["A"], "error_type": "E", "attempts": 0}]}, "attempts must be"),
        ({"lambda_errors": [{"functions": ["A"], "error_type": "E", "attempts": True}]}, "attempts must be"),
        (
            {"lambda_crashes": [{"functions": ["A"], "probability": 1.5}]},
            "probability must be a number from 0",
        ),
        (
            {"lambda_crashes": [{"functions": ["A"], "probability": "1"}]},
            "probability must be a number from 0",
        ),
        ({"lambda_crashes": [{"functions": ["A"], "first_attempt_only": 1}]}, "must be true or false"),
        ({"lambda_crashes": [{"functions": ["A"], "kill": True}]}, "lambda_crashes[0] has unknown field(s)"),
        ({"stream_duplicates": [{"probability": 1}]}, "stream_duplicates[0] is missing ['functions']"),
        ({"nats_down_for_s": 0}, "nats_down_for_s must be a number of seconds above 0"),
        ({"nats_down_for_s": 7200}, "nats_down_for_s must be a number of seconds above 0"),
        ({"nats_down_for_s": "5"}, "nats_down_for_s must be a number of seconds above 0"),
        ({"seed": 1.5}, "seed must be an integer"),
    ],
)
def test_an_invalid_plan_is_refused_naming_the_field_and_why(raw: Any, message: str) -> None:
    with pytest.raises(FaultPlanError) as refused:
        parse_plan(raw)
    assert message in str(refused.value)


# ---- resolving against what is deployed -----------------------------------------------------------------
def test_a_rule_names_functions_by_logical_id_physical_name_or_pattern() -> None:
    injector = an_injector()
    injector.set_plan(
        parse_plan(
            {
                "lambda_errors": [{"functions": ["ReserveFundsFunction"], "error_type": "E"}],
                "lambda_crashes": [{"functions": [RELEASE]}, {"functions": ["*Funds*"]}],
            }
        )
    )
    assert injector.lambda_fault(RESERVE, b"{}") is not None  # the error
    assert injector.lambda_fault(RELEASE, b"{}") is not None  # the crash
    assert injector.lambda_fault(RELAY, b"{}") is None


def test_a_pattern_that_matches_no_deployed_function_is_refused_and_the_old_plan_stays() -> None:
    injector = an_injector()
    injector.set_plan(parse_plan({"lambda_crashes": [{"functions": ["RelayFunction"]}]}))
    with pytest.raises(FaultPlanError, match=r"lambda_errors\[0\].functions: 'Nope\*' matches no deployed"):
        injector.set_plan(parse_plan({"lambda_errors": [{"functions": ["Nope*"], "error_type": "E"}]}))
    assert injector.plan is not None and injector.plan.lambda_crashes


def test_stream_duplicates_name_only_functions_with_a_stream_source() -> None:
    injector = an_injector()
    with pytest.raises(FaultPlanError, match="matches no function with a DynamoDB stream source"):
        injector.set_plan(parse_plan({"stream_duplicates": [{"functions": ["ReserveFundsFunction"]}]}))


# ---- decisions ------------------------------------------------------------------------------------------
def test_without_a_plan_nothing_is_injected() -> None:
    injector = an_injector()
    assert injector.lambda_fault(RESERVE, b"{}") is None
    assert injector.duplicate_delivery(RELAY) is False
    assert injector.snapshot()["active"] is False


def test_the_first_attempts_of_each_payload_fail_and_later_ones_run() -> None:
    injector = an_injector()
    injector.set_plan(
        parse_plan(
            {
                "lambda_errors": [
                    {"functions": ["ReserveFundsFunction"], "error_type": "TransientError", "attempts": 2}
                ]
            }
        )
    )
    first = injector.lambda_fault(RESERVE, b'{"id": 1}')
    assert first is not None and first.error_type == "TransientError" and not first.crash
    assert injector.lambda_fault(RESERVE, b'{"id": 1}') is not None
    assert injector.lambda_fault(RESERVE, b'{"id": 1}') is None
    # another payload has attempts of its own
    assert injector.lambda_fault(RESERVE, b'{"id": 2}') is not None
    assert injector.counters["lambda_errors"] == 3
    assert injector.by_function["lambda_errors"] == {RESERVE: 3}


def test_a_rule_with_a_probability_fails_some_payloads_for_good_and_leaves_the_others_to_the_next_rule() -> (
    None
):
    """A saga step that fails for good for a share of the transfers (the compensation path under load),
    beside a rule that fails every payload's first attempt."""
    injector = an_injector()
    plan = {
        "seed": 42,
        "lambda_errors": [
            {
                "functions": ["ReserveFundsFunction"],
                "error_type": "Broken",
                "attempts": 100,
                "probability": 0.2,
            },
            {"functions": ["ReserveFundsFunction"], "error_type": "TransientError", "attempts": 1},
        ],
    }
    injector.set_plan(parse_plan(plan))

    def errors(payload: bytes, tries: int) -> list[str]:
        faults = [injector.lambda_fault(RESERVE, payload) for _ in range(tries)]
        return [f.error_type if f is not None else "ran" for f in faults]

    outcomes = [errors(b'{"id": %d}' % n, 5) for n in range(500)]
    broken = [o for o in outcomes if o == ["Broken"] * 5]
    transient = [o for o in outcomes if o == ["TransientError", "ran", "ran", "ran", "ran"]]
    # Every payload is one or the other, about a fifth broken for good, and the choice is the seed's
    assert len(broken) + len(transient) == 500
    assert 70 <= len(broken) <= 130
    injector.set_plan(parse_plan(plan))
    assert [errors(b'{"id": %d}' % n, 5) for n in range(500)] == outcomes


def test_a_crash_applies_to_the_first_run_after_the_injected_errors() -> None:
    injector = an_injector()
    injector.set_plan(
        parse_plan(
            {
                "lambda_errors": [{"functions": ["ReserveFundsFunction"], "error_type": "TransientError"}],
                "lambda_crashes": [{"functions": ["ReserveFundsFunction"]}],
            }
        )
    )
    decisions = [injector.lambda_fault(RESERVE, b"{}") for _ in range(3)]
    assert decisions[0] is not None and decisions[0].error_type == "TransientError"
    assert decisions[1] is not None and decisions[1].crash
    assert decisions[2] is None
    # a crash is counted only once the runtime did it
    assert injector.counters["lambda_crashes"] == 0
    injector.crashed(RESERVE)
    assert injector.by_function["lambda_crashes"] == {RESERVE: 1}


def test_crashes_on_every_attempt_follow_the_probability_reproducibly_from_the_seed() -> None:
    def crashes(seed: int) -> list[bool]:
        injector = an_injector()
        plan = {
            "seed": seed,
            "lambda_crashes": [
                {"functions": ["RelayFunction"], "probability": 0.3, "first_attempt_only": False}
            ],
        }
        injector.set_plan(parse_plan(plan))
        return [injector.lambda_fault(RELAY, b"{}") is not None for _ in range(1000)]

    first = crashes(42)
    assert first == crashes(42)
    assert 200 < sum(first) < 400


def test_a_probability_of_zero_never_injects() -> None:
    injector = an_injector()
    injector.set_plan(
        parse_plan(
            {
                "lambda_crashes": [{"functions": ["RelayFunction"], "probability": 0}],
                "stream_duplicates": [{"functions": ["RelayFunction"], "probability": 0}],
            }
        )
    )
    assert all(injector.lambda_fault(RELAY, str(i).encode()) is None for i in range(200))
    assert not any(injector.duplicate_delivery(RELAY) for _ in range(200))


def test_a_stream_duplicate_is_counted_per_function() -> None:
    injector = an_injector()
    injector.set_plan(parse_plan({"stream_duplicates": [{"functions": ["RelayFunction"]}]}))
    assert injector.duplicate_delivery(RELAY) is True
    assert injector.duplicate_delivery(RESERVE) is False
    assert injector.snapshot()["by_function"]["stream_duplicates"] == {RELAY: 1}


def test_a_new_plan_starts_over_and_clearing_keeps_the_counters_readable() -> None:
    injector = an_injector()
    plan = parse_plan({"lambda_errors": [{"functions": ["RelayFunction"], "error_type": "E"}]})
    injector.set_plan(plan)
    assert injector.lambda_fault(RELAY, b"{}") is not None

    injector.clear()
    assert injector.lambda_fault(RELAY, b"{}") is None
    assert injector.snapshot()["counters"]["lambda_errors"] == 1
    assert injector.snapshot()["plan"] is None

    injector.set_plan(plan)  # the same payload is new to a new plan
    assert injector.counters["lambda_errors"] == 0
    assert injector.lambda_fault(RELAY, b"{}") is not None


# ---- the controller and the API -------------------------------------------------------------------------
class FakeNats:
    def __init__(self) -> None:
        self.running = True
        self.calls: list[str] = []

    async def nats_stop(self) -> bool:
        self.calls.append("stop")
        was, self.running = self.running, False
        return was

    async def nats_start(self) -> bool:
        self.calls.append("start")
        was, self.running = self.running, True
        return not was

    def nats_running(self) -> bool:
        return self.running

    async def nats_kill_node(self, node: str, restart_after_s: float | None) -> dict[str, Any]:
        self.calls.append(f"kill {node} {restart_after_s}")
        if node not in ("leader", "vaultpay-local-2"):
            raise LocalCloudError(f"no NATS node {node!r}: the nodes are vaultpay-local-1, vaultpay-local-2")
        return {"node": "vaultpay-local-2", "was_leader": node == "leader", "restart_in_s": restart_after_s}


async def a_client(nats: FakeNats) -> tuple[TestClient[web.Request, web.Application], FaultController]:
    controller = FaultController(an_injector(), nats)
    app = web.Application()
    add_fault_routes(app, controller)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    return client, controller


async def test_a_bad_plan_is_a_400_with_the_reason_and_changes_nothing() -> None:
    client, controller = await a_client(FakeNats())
    try:
        bad = await client.put("/_localcloud/faults", json={"lambda_crashes": [{"functions": ["X"]}]})
        not_json = await client.put("/_localcloud/faults", data=b"{")
        assert bad.status == 400
        body = await bad.json()
        assert body["error"] == "InvalidFaultPlan"
        assert "lambda_crashes[0].functions: 'X' matches no deployed function" in body["message"]
        assert not_json.status == 400
        assert (await not_json.json())["message"].startswith("the fault plan is not JSON")
        assert controller.injector.plan is None
    finally:
        await client.close()


async def test_put_get_and_delete_set_show_and_clear_the_plan() -> None:
    client, _ = await a_client(FakeNats())
    try:
        plan = {
            "seed": 3,
            "lambda_errors": [{"functions": ["RelayFunction"], "error_type": "TransientError"}],
        }
        put = await client.put("/_localcloud/faults", data=json.dumps(plan))
        assert put.status == 200
        shown = await (await client.get("/_localcloud/faults")).json()
        assert shown["active"] is True
        assert shown["seed"] == 3
        assert shown["plan"]["lambda_errors"][0]["error_type"] == "TransientError"
        assert shown["nats"] == {"running": True, "restart_in_s": None}

        cleared = await (await client.delete("/_localcloud/faults")).json()
        assert cleared["active"] is False and cleared["plan"] is None
    finally:
        await client.close()


async def test_a_planned_nats_outage_stops_now_and_starts_after_its_time() -> None:
    nats = FakeNats()
    client, controller = await a_client(nats)
    try:
        shown = await (await client.put("/_localcloud/faults", json={"nats_down_for_s": 0.2})).json()
        assert shown["nats"]["running"] is False
        assert 0 < shown["nats"]["restart_in_s"] <= 0.2
        assert controller._restart is not None
        await controller._restart
        assert nats.running is True
        assert controller.injector.counters["nats_stops"] == 1
        assert controller.injector.counters["nats_starts"] == 1
    finally:
        await client.close()


async def test_replacing_a_plan_with_an_outage_by_one_without_starts_nats_again() -> None:
    nats = FakeNats()
    client, _ = await a_client(nats)
    try:
        await client.put("/_localcloud/faults", json={"nats_down_for_s": 60})
        assert nats.running is False
        await client.put("/_localcloud/faults", json={})
        assert nats.running is True
    finally:
        await client.close()


async def test_nats_stopped_by_hand_stays_down_until_started_or_cleared() -> None:
    nats = FakeNats()
    client, _ = await a_client(nats)
    try:
        stopped = await (await client.post("/_localcloud/faults/nats/stop")).json()
        again = await (await client.post("/_localcloud/faults/nats/stop")).json()
        assert stopped["changed"] is True and stopped["nats"]["running"] is False
        assert again["changed"] is False
        await client.put("/_localcloud/faults", json={})  # a plan without an outage does not end this one
        assert nats.running is False
        await client.delete("/_localcloud/faults")
        assert nats.running is True
        started = await (await client.post("/_localcloud/faults/nats/start")).json()
        assert started["changed"] is False
    finally:
        await client.close()


async def test_killing_the_stream_leader_names_the_node_and_counts_the_kill() -> None:
    nats = FakeNats()
    client, controller = await a_client(nats)
    try:
        answer = await client.post(
            "/_localcloud/faults/nats/kill", json={"node": "leader", "restart_after_s": 5}
        )
        body = await answer.json()
        assert answer.status == 200
        assert (body["node"], body["was_leader"], body["restart_in_s"]) == ("vaultpay-local-2", True, 5)
        assert nats.calls == ["kill leader 5.0"]
        assert controller.injector.counters["nats_node_kills"] == 1
        assert body["counters"]["nats_node_kills"] == 1
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"node": ""}, "`node` must be"),
        ({"node": 3}, "`node` must be"),
        ({"node": "leader", "restart_after_s": -1}, "`restart_after_s` must be"),
        ({"node": "leader", "restart_after_s": True}, "`restart_after_s` must be"),
        ({"node": "leader", "restart_after_s": 1e9}, "`restart_after_s` must be"),
        ({"node": "leader", "signal": "TERM"}, "the body must be"),
        (["leader"], "the body must be"),
    ],
)
async def test_a_bad_kill_request_is_a_400_and_kills_nothing(body: Any, message: str) -> None:
    nats = FakeNats()
    client, controller = await a_client(nats)
    try:
        answer = await client.post("/_localcloud/faults/nats/kill", json=body)
        assert answer.status == 400
        assert message in (await answer.json())["message"]
        assert nats.calls == [] and controller.injector.counters["nats_node_kills"] == 0
    finally:
        await client.close()


async def test_killing_an_unknown_node_is_a_409_that_names_the_nodes() -> None:
    client, controller = await a_client(FakeNats())
    try:
        answer = await client.post("/_localcloud/faults/nats/kill", json={"node": "vaultpay-local-9"})
        assert answer.status == 409
        assert "the nodes are vaultpay-local-1" in (await answer.json())["message"]
        assert controller.injector.counters["nats_node_kills"] == 0
    finally:
        await client.close()

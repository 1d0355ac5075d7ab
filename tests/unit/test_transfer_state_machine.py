"""The transfer saga's ASL (infra/statemachines: transfer.asl.json, EXPRESS, and review.asl.json, STANDARD)
as graphs, with docs/design.md's rules."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
ASL_PATH = ROOT / "infra" / "statemachines" / "transfer.asl.json"
REVIEW_PATH = ROOT / "infra" / "statemachines" / "review.asl.json"
# An Express execution stops at 5 minutes: one step's retries, with a compensation's, must fit well inside.
EXPRESS_LIMIT_S = 300
TRANSIENT = {"Lambda.ServiceException", "Lambda.TooManyRequestsException", "TransientError"}
HAPPY_PATH = [
    "MarkProcessing",
    "ReserveFunds",
    "CheckFraud",
    "MarkApproved",
    "SettleTransfer",
    "CompleteTransfer",
]
COMPENSATIONS = {"ReleaseFunds", "CompensateReleaseFunds"}


@pytest.fixture(scope="module")
def asl() -> dict[str, Any]:
    return dict(json.loads(ASL_PATH.read_text()))


@pytest.fixture(scope="module")
def review() -> dict[str, Any]:
    return dict(json.loads(REVIEW_PATH.read_text()))


def _retry_delay_s(state: dict[str, Any]) -> float:
    """The longest a task's retriers may wait in all (each retrier counts its own attempts)."""
    total = 0.0
    for retrier in state.get("Retry", []):
        interval, rate = retrier.get("IntervalSeconds", 1), retrier.get("BackoffRate", 2.0)
        cap = retrier.get("MaxDelaySeconds", float("inf"))
        total += sum(min(interval * rate**n, cap) for n in range(retrier.get("MaxAttempts", 3)))
    return total


def _targets(state: dict[str, Any]) -> set[str]:
    found = {state[k] for k in ("Next", "Default") if k in state}
    found |= {c["Next"] for c in state.get("Catch", [])}
    found |= {c["Next"] for c in state.get("Choices", [])}
    return found


def _max_attempts(state: dict[str, Any], error: str) -> int:
    for retrier in state.get("Retry", []):
        if error in retrier["ErrorEquals"] or "States.ALL" in retrier["ErrorEquals"]:
            return int(retrier.get("MaxAttempts", 3))
    return 0


@pytest.mark.parametrize("path", [ASL_PATH, REVIEW_PATH], ids=lambda p: p.name)
def test_every_state_is_reachable_and_every_transition_lands_on_a_state(path: Path) -> None:
    definition = json.loads(path.read_text())
    states = definition["States"]
    seen, todo = set(), [definition["StartAt"]]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        assert name in states, name
        todo.extend(_targets(states[name]))
    assert seen == set(states)


def test_the_happy_path_is_the_designed_sequence(asl: dict[str, Any]) -> None:
    states, path, name = asl["States"], [], asl["StartAt"]
    while states[name]["Type"] != "Succeed":
        if states[name]["Type"] == "Task":
            path.append(name)
        if states[name]["Type"] == "Choice":
            approve = [c["Next"] for c in states[name]["Choices"] if c.get("StringEquals") == "APPROVE"]
            name = approve[0] if approve else states[name]["Default"]  # Begin: a new transfer
        else:
            name = states[name]["Next"]
    assert path == HAPPY_PATH


def test_every_task_retries_transient_errors_with_jittered_backoff(asl: dict[str, Any]) -> None:
    for name, state in asl["States"].items():
        if state["Type"] != "Task":
            continue
        for error in TRANSIENT:
            assert _max_attempts(state, error) >= 3, (name, error)
        for retrier in state["Retry"]:
            if retrier.get("MaxAttempts", 3) > 0:
                assert retrier.get("JitterStrategy") == "FULL", name
                assert retrier.get("BackoffRate", 2.0) > 1, name


def test_domain_errors_are_never_retried(asl: dict[str, Any]) -> None:
    for name, state in asl["States"].items():
        if state["Type"] == "Task" and name != "StartReview":
            first = state["Retry"][0]
            assert "InsufficientFunds" in first["ErrorEquals"] and first["MaxAttempts"] == 0, name


def test_compensations_retry_harder_than_forward_steps_and_end_in_an_alarm_state(asl: dict[str, Any]) -> None:
    states = asl["States"]
    forward = max(_max_attempts(states[n], "States.ALL") for n in HAPPY_PATH[:-1])
    for name in COMPENSATIONS:
        assert _max_attempts(states[name], "States.ALL") > forward, name
        fallbacks = {c["Next"] for c in states[name]["Catch"] if "States.ALL" in c["ErrorEquals"]}
        assert fallbacks == {"CompensationFailed"}, name
    assert states["CompensationFailed"]["Type"] == "Fail"


def test_every_failure_after_the_hold_runs_the_compensation(
    asl: dict[str, Any], review: dict[str, Any]
) -> None:
    states = asl["States"]
    for name in ("CheckFraud", "MarkApproved", "SettleTransfer", "MarkInReview", "StartReview"):
        catch_all = next(c for c in states[name]["Catch"] if "States.ALL" in c["ErrorEquals"])
        assert catch_all["Next"] == "CompensateReleaseFunds", name
    # A review that fails comes back to the saga as `failed`, which compensates too
    failed = next(c for c in review["States"]["AwaitReview"]["Catch"] if "States.ALL" in c["ErrorEquals"])
    assert review["States"][failed["Next"]]["Result"] == "failed"
    resume = {c["StringEquals"]: c["Next"] for c in states["ResumeAfterReview"]["Choices"]}
    assert resume["failed"] == "CompensateReleaseFunds"
    # Even a failed reserve may have held (a crash after its write): it is released before FAILED
    reserve_catch = next(c for c in states["ReserveFunds"]["Catch"] if "States.ALL" in c["ErrorEquals"])
    assert reserve_catch["Next"] == "CompensateReleaseFunds"
    assert states["CompensateReleaseFunds"]["Next"] == "MarkFailed"
    assert states["MarkFailed"]["Next"] == "Failed" and states["Failed"]["Type"] == "Fail"


def test_every_task_s_retries_fit_an_express_execution_with_a_compensation(asl: dict[str, Any]) -> None:
    states = asl["States"]
    forward = max(_retry_delay_s(states[name]) for name in HAPPY_PATH)
    compensation = _retry_delay_s(states["CompensateReleaseFunds"]) + _retry_delay_s(states["MarkFailed"])
    assert forward + compensation < EXPRESS_LIMIT_S * 0.8, (forward, compensation)


def test_a_hold_that_already_settled_completes_instead_of_failing(asl: dict[str, Any]) -> None:
    states = asl["States"]
    settled = next(
        c for c in states["CompensateReleaseFunds"]["Catch"] if c["ErrorEquals"] == ["HoldNotOpen"]
    )
    assert settled["Next"] == "ConfirmSettlement"
    assert states["ConfirmSettlement"]["Next"] == "CompleteTransfer"


def test_declines_release_the_hold_before_the_status(asl: dict[str, Any]) -> None:
    states = asl["States"]
    for entry, reason in (
        ("InsufficientFunds", "insufficient_funds"),
        ("FraudDeclined", "fraud_declined"),
        ("ReviewDeclined", "review_declined"),
        ("ReviewTimedOut", "review_timeout"),
    ):
        assert states[entry]["Result"] == reason
        assert states[entry]["Next"] == "ReleaseFunds"
    assert states["ReleaseFunds"]["Next"] == "MarkDeclined"
    assert states["MarkDeclined"]["Parameters"]["op"] == "decline"


def test_the_review_waits_for_a_task_token_and_its_timeout_declines(
    asl: dict[str, Any], review: dict[str, Any]
) -> None:
    wait = review["States"]["AwaitReview"]
    assert wait["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert wait["Parameters"]["Payload"]["task_token.$"] == "$$.Task.Token"
    assert "TimeoutSecondsPath" in wait
    timeout = next(c for c in wait["Catch"] if c["ErrorEquals"] == ["States.Timeout"])
    assert review["States"][timeout["Next"]]["Result"] == "timed_out"
    resume = {c["StringEquals"]: c["Next"] for c in asl["States"]["ResumeAfterReview"]["Choices"]}
    assert resume == {
        "approved": "MarkApproved",
        "declined": "ReviewDeclined",
        "timed_out": "ReviewTimedOut",
        "failed": "CompensateReleaseFunds",
    }


def test_the_saga_hands_a_review_to_the_standard_machine_and_is_started_again_with_its_decision(
    asl: dict[str, Any], review: dict[str, Any]
) -> None:
    states = asl["States"]
    # The Express saga starts the review named after the transfer (a second start is refused, and ends well)
    start = states["StartReview"]
    assert start["Resource"] == "arn:aws:states:::states:startExecution"
    assert start["Parameters"]["Name.$"] == "$.transfer_id"
    assert start["Parameters"]["Input"]["saga.$"] == "$"
    already = next(
        c for c in start["Catch"] if c["ErrorEquals"] == ["StepFunctions.ExecutionAlreadyExistsException"]
    )
    assert states[already["Next"]]["Type"] == "Succeed"
    # A new transfer begins at MarkProcessing; one whose input carries `saga` comes back from its review
    begin = states[asl["StartAt"]]
    assert begin["Default"] == "MarkProcessing"
    assert states[begin["Choices"][0]["Next"]]["InputPath"] == "$.saga"
    # Every decision of the review machine starts the saga again, named <transfer id>-<decision>
    resume = review["States"]["ResumeTransfer"]
    assert resume["Resource"] == "arn:aws:states:::states:startExecution"
    assert resume["Parameters"]["Name.$"] == "States.Format('{}-{}', $.saga.transfer_id, $.saga.resume)"
    for decision in ("Approved", "Declined", "TimedOut", "ReviewFailed"):
        assert review["States"][decision]["Next"] == "ResumeTransfer", decision


def test_every_placeholder_has_a_substitution_in_the_template_and_no_substitution_is_unused() -> None:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)  # noqa: S506 - SafeLoader subclass
    machine = template["Resources"]["TransferStateMachine"]["Properties"]
    assert machine["DefinitionUri"] == "infra/statemachines/transfer.asl.json"
    assert machine["Type"] == "EXPRESS"
    # Express has no history API: every event is logged, without the data (account ids, amounts)
    assert machine["Logging"]["Level"] == "ALL" and machine["Logging"]["IncludeExecutionData"] is False
    placeholders = set(re.findall(r"\$\{(\w+)\}", ASL_PATH.read_text()))
    assert placeholders == set(machine["DefinitionSubstitutions"])
    waiting = template["Resources"]["TransferReviewStateMachine"]["Properties"]
    assert waiting["DefinitionUri"] == "infra/statemachines/review.asl.json"
    assert waiting["Type"] == "STANDARD"
    placeholders = set(re.findall(r"\$\{(\w+)\}", REVIEW_PATH.read_text()))
    assert placeholders == set(waiting["DefinitionSubstitutions"])

"""The fraud handlers on DynamoDB Local and moto server: SSM rule configuration, a real `.waitForTaskToken`
execution resumed by the review route, the alerts route, and the attacks on the admin routes."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from support.apigw import proxy_event
from support.fraud import fraud_config_document
from support.handlers import load_handler
from support.lambda_context import FakeLambdaContext
from support.tables import create_table

from localcloud import services
from vaultpay.fraud.config import InvalidFraudConfig

pytestmark = pytest.mark.component

ROOT = Path(__file__).resolve().parents[3]
ACCOUNT = services.ACCOUNT_ID
REGION = "us-east-1"
PARAMETER = "/vaultpay/test/fraud/config"
STATUS_FUNCTION = "vaultpay-test-TransferStatusFunction"
AWAIT_FUNCTION = "vaultpay-test-AwaitReviewFunction"
PROBLEM_JSON = "application/problem+json"


LAMBDA_CONTEXT = FakeLambdaContext("vaultpay-test-fraud", remaining_ms=30_000)


def load(relative: str) -> ModuleType:
    """functions/fraud/<relative>/app.py, a new module at each call."""
    return load_handler(f"fraud/{relative}")


def reset_caches() -> None:
    from vaultpay import bootstrap

    bootstrap.reset()


class Edge:
    """The Lambda Invoke API for moto's Task states and the review route: AwaitReview runs in-process, and
    TransferStatusFunction answers a fake view (the transfers domain's function, faked here)."""

    def __init__(self) -> None:
        self.await_handler: Any = None
        self.views: list[dict[str, Any]] = []
        edge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                name = urllib.parse.unquote(self.path.split("/functions/")[1].split("/")[0]).rsplit(":", 1)[
                    -1
                ]
                if name.endswith("AwaitReviewFunction"):
                    body = edge.await_handler(payload, LAMBDA_CONTEXT)
                elif name == STATUS_FUNCTION:
                    edge.views.append(payload)
                    body = {"transfer_id": payload["transfer_id"], "status": "IN_REVIEW", "fraud": None}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def cloud(dynamodb_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    edge = Edge()
    moto_port = services.free_port()
    moto = services.moto_server(moto_port, edge.port, tmp_path_factory.mktemp("moto-fraud"))
    moto.start()
    suffix = uuid.uuid4().hex[:8]
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
        "AWS_ENDPOINT_URL_LAMBDA": f"http://127.0.0.1:{edge.port}",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "fraud",
        "POWERTOOLS_METRICS_NAMESPACE": "VaultPayTest",
        "STAGE": "local",
        "NATS_URL": "nats://127.0.0.1:4222",
        "FRAUD_TABLE": f"t-{suffix}-FraudTable",
        "FRAUD_COUNTERS_TABLE": f"t-{suffix}-FraudCountersTable",
        "FRAUD_CONFIG_PARAMETER": PARAMETER,
        "TRANSFER_STATUS_FUNCTION": STATUS_FUNCTION,
        "ACCOUNTS_TABLE": f"t-{suffix}-AccountsTable",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        try:
            moto.wait_ready()
            services.enable_state_machine_execution(moto_port)
            dynamodb = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
            create_table(dynamodb, "FraudTable", env["FRAUD_TABLE"])
            create_table(dynamodb, "FraudCountersTable", env["FRAUD_COUNTERS_TABLE"])
            create_table(dynamodb, "AccountsTable", env["ACCOUNTS_TABLE"])
            reset_caches()
            edge.await_handler = load("await_review").handler
            yield {"env": env, "edge": edge, "dynamodb": dynamodb, "sfn": boto3.client("stepfunctions"),
                   "ssm": boto3.client("ssm")}  # fmt: skip
        finally:
            reset_caches()
            moto.stop()
            edge.close()


def tid() -> str:
    return f"tr_{uuid.uuid4().hex}"


# HIGH_AMOUNT's review band (₹2,00,000): with a never-seen device and a new payee, REVIEW (not DECLINE).
REVIEW_AMOUNT = 20_000_000


SOURCE = "acc_" + "5" * 32
DESTINATION = "acc_" + "d" * 32


def saga_state(transfer_id: str, amount: int = 100_000) -> dict[str, Any]:
    return {
        "transfer_id": transfer_id,
        "correlation_id": f"corr-{transfer_id[-6:]}",
        "user_id": "usr_carol",
        "device_id": "carols-new-phone",
        "source_account_id": SOURCE,
        "destination_account_id": DESTINATION,
        "amount": amount,
        "currency": "INR",
        "description": "rent",
        "created_at": "2026-11-28T12:00:00.000Z",
    }


def set_config(cloud: dict[str, Any], document: str | None) -> None:
    if document is None:
        try:
            cloud["ssm"].delete_parameter(Name=PARAMETER)
        except cloud["ssm"].exceptions.ParameterNotFound:
            pass
    else:
        cloud["ssm"].put_parameter(Name=PARAMETER, Value=document, Type="String", Overwrite=True)
    reset_caches()


def review_item(cloud: dict[str, Any], transfer_id: str) -> dict[str, Any] | None:
    item = cloud["dynamodb"].get_item(
        TableName=cloud["env"]["FRAUD_TABLE"],
        Key={"pk": {"S": f"REVIEW#{transfer_id}"}, "sk": {"S": "REVIEW"}},
        ConsistentRead=True,
    )
    found: dict[str, Any] | None = item.get("Item")
    return found


def wait_for(predicate: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def _contract_await_review_payload() -> dict[str, Any]:
    """The AwaitReview payload of the review state machine itself (infra/statemachines)."""
    definition = json.loads((ROOT / "infra" / "statemachines" / "review.asl.json").read_text())
    return dict(definition["States"]["AwaitReview"]["Parameters"]["Payload"])


def start_review_execution(
    cloud: dict[str, Any],
    transfer_id: str,
    fraud: dict[str, Any],
    timeout_s: int,
    *,
    destination_account_id: str = DESTINATION,
) -> str:
    """A state machine holding only the review machine's AwaitReview state, started for `transfer_id` with
    the input the saga gives it (the saga's state under `saga`)."""
    definition = {
        "StartAt": "AwaitReview",
        "States": {
            "AwaitReview": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {
                    "FunctionName": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{AWAIT_FUNCTION}",
                    "Payload": _contract_await_review_payload(),
                },
                "TimeoutSeconds": timeout_s,
                "ResultPath": "$.saga.review",
                "End": True,
            }
        },
    }
    machine = cloud["sfn"].create_state_machine(
        name=f"review-{uuid.uuid4().hex[:8]}",
        definition=json.dumps(definition),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/vaultpay-test",
    )["stateMachineArn"]
    state = {**saga_state(transfer_id), "fraud": fraud, "destination_account_id": destination_account_id}
    return str(
        cloud["sfn"].start_execution(
            stateMachineArn=machine, name=transfer_id, input=json.dumps({"saga": state})
        )["executionArn"]
    )


def call(module: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, Any]]:
    response = module.handler(event, LAMBDA_CONTEXT)
    headers = {
        k: v[0] if isinstance(v, list) else v for k, v in (response.get("multiValueHeaders") or {}).items()
    }
    headers.update(response.get("headers") or {})
    return response["statusCode"], json.loads(response["body"]), headers


def review_event(
    transfer_id: str, body: Any, *, role: str = "admin", user: str = "usr_admin"
) -> dict[str, Any]:
    return proxy_event(
        "POST",
        f"/v1/admin/fraud/reviews/{transfer_id}",
        user_id=user,
        role=role,
        body=body,
        resource="/v1/admin/fraud/reviews/{transfer_id}",
        path_parameters={"transfer_id": transfer_id},
    )


def alerts_event(query: dict[str, str] | None, *, role: str = "admin") -> dict[str, Any]:
    return proxy_event("GET", "/v1/admin/fraud/alerts", user_id="usr_admin", role=role, query=query)


# ---- the rule configuration ----------------------------------------------------------------------------


def test_the_template_parameter_configures_the_engine_and_a_missing_one_falls_back_to_the_defaults(
    cloud: dict[str, Any],
) -> None:
    evaluate = load("evaluate")
    set_config(cloud, fraud_config_document())
    with_parameter = evaluate.handler(saga_state(tid(), REVIEW_AMOUNT), LAMBDA_CONTEXT)
    set_config(cloud, None)
    without = evaluate.handler(saga_state(tid(), REVIEW_AMOUNT), LAMBDA_CONTEXT)
    assert with_parameter["decision"] == without["decision"] == "REVIEW"
    assert set(with_parameter["reasons"]) == {"HIGH_AMOUNT", "NEW_DEVICE", "BEHAVIORAL_ANOMALY"}
    assert set(with_parameter) == {"decision", "score", "reasons", "rules", "decided_at"}


def test_a_stage_config_changes_the_decision(cloud: dict[str, Any]) -> None:
    document = json.loads(fraud_config_document())
    document["rules"]["DEVICE_MISMATCH"]["enabled"] = False
    document["rules"]["NEW_DEVICE"]["enabled"] = False
    set_config(cloud, json.dumps(document))
    result = load("evaluate").handler(saga_state(tid()), LAMBDA_CONTEXT)
    assert (result["decision"], result["reasons"]) == ("APPROVE", [])


@pytest.mark.parametrize("document", ['{"review_threshold": 50}', "not json", '{"review_threshold": "50"}'])
def test_an_invalid_config_fails_the_step_loudly_and_decides_nothing(
    cloud: dict[str, Any], document: str
) -> None:
    set_config(cloud, document)
    transfer_id = tid()
    with pytest.raises(InvalidFraudConfig):
        load("evaluate").handler(saga_state(transfer_id), LAMBDA_CONTEXT)
    stored = cloud["dynamodb"].get_item(
        TableName=cloud["env"]["FRAUD_TABLE"],
        Key={"pk": {"S": f"DECISION#{transfer_id}"}, "sk": {"S": "DECISION"}},
        ConsistentRead=True,
    )
    assert "Item" not in stored
    set_config(cloud, fraud_config_document())


# ---- human review through a real waitForTaskToken -------------------------------------------------------


def test_an_admin_decision_resumes_the_waiting_execution_and_answers_the_transfer_view(
    cloud: dict[str, Any], capfd: pytest.CaptureFixture[str]
) -> None:
    # Given a transfer the engine sent to review, and an execution waiting on AwaitReview
    set_config(cloud, fraud_config_document())
    transfer_id = tid()
    fraud = load("evaluate").handler(saga_state(transfer_id, REVIEW_AMOUNT), LAMBDA_CONTEXT)
    assert fraud["decision"] == "REVIEW"
    execution = start_review_execution(cloud, transfer_id, fraud, timeout_s=120)
    waiting = wait_for(lambda: review_item(cloud, transfer_id))
    token = waiting["task_token"]["S"]
    assert waiting["status"]["S"] == "WAITING"
    review = load("review")
    alerts = load("alerts")
    # And the alert shows the waiting review without its token
    status, page, _ = call(alerts, alerts_event({"decision": "REVIEW"}))
    assert status == 200
    [alert] = [a for a in page["items"] if a["transfer_id"] == transfer_id]
    assert alert["review"]["status"] == "WAITING" and "HIGH_AMOUNT" in alert["reasons"]
    # When the admin approves it
    status, body, headers = call(
        review, review_event(transfer_id, {"decision": "APPROVE", "note": "called her"})
    )
    # Then 200 with the transfer view, and the execution resumes with the decision
    assert status == 200, body
    assert body == {"transfer_id": transfer_id, "status": "IN_REVIEW", "fraud": None}
    assert cloud["edge"].views[-1] == {"op": "view", "transfer_id": transfer_id}
    assert headers["X-Correlation-Id"]
    done = wait_for(
        lambda: (d := cloud["sfn"].describe_execution(executionArn=execution))["status"] != "RUNNING" and d
    )
    assert done["status"] == "SUCCEEDED", done
    assert json.loads(done["output"])["saga"]["review"] == {
        "decision": "APPROVE",
        "note": "called her",
        "reviewer": "usr_admin",
    }
    # And a second decision is refused
    status, body, _ = call(review, review_event(transfer_id, {"decision": "DECLINE", "note": "again"}))
    assert (status, body["code"]) == (409, "review_already_decided")
    # And the alert now shows the decision; the token is in no response, log line or stored event
    status, page, _ = call(alerts, alerts_event(None))
    [alert] = [a for a in page["items"] if a["transfer_id"] == transfer_id]
    assert {k: alert["review"][k] for k in ("status", "decision", "reviewer", "note")} == {
        "status": "DECIDED",
        "decision": "APPROVE",
        "reviewer": "usr_admin",
        "note": "called her",
    }
    everything = json.dumps(cloud["dynamodb"].scan(TableName=cloud["env"]["FRAUD_TABLE"])["Items"])
    assert token not in everything and token not in json.dumps(page)
    assert token not in capfd.readouterr().out


def test_a_decision_after_the_review_timed_out_is_review_closed(cloud: dict[str, Any]) -> None:
    set_config(cloud, fraud_config_document())
    transfer_id = tid()
    fraud = load("evaluate").handler(saga_state(transfer_id, REVIEW_AMOUNT), LAMBDA_CONTEXT)
    assert fraud["decision"] == "REVIEW"
    execution = start_review_execution(cloud, transfer_id, fraud, timeout_s=1)
    wait_for(lambda: review_item(cloud, transfer_id))
    done = wait_for(
        lambda: (d := cloud["sfn"].describe_execution(executionArn=execution))["status"] != "RUNNING" and d
    )
    assert done["status"] == "FAILED"
    status, body, _ = call(load("review"), review_event(transfer_id, {"decision": "APPROVE", "note": "late"}))
    assert (status, body["code"]) == (409, "review_closed"), body
    item = review_item(cloud, transfer_id)
    assert item is not None and item["status"]["S"] == "CLOSED" and "task_token" not in item
    status, body, _ = call(
        load("review"), review_event(transfer_id, {"decision": "APPROVE", "note": "later"})
    )
    assert (status, body["code"]) == (409, "review_closed")


# ---- attacks on the admin routes ------------------------------------------------------------------------


@pytest.mark.parametrize("own", ["source", "destination"])
def test_an_admin_cannot_decide_the_review_of_a_transfer_from_or_to_their_own_account(
    cloud: dict[str, Any], own: str
) -> None:
    # Given a held transfer whose source (the sender is this admin) or destination account the admin owns
    set_config(cloud, fraud_config_document())
    transfer_id, admin = tid(), f"usr_{uuid.uuid4().hex}"
    destination = f"acc_{uuid.uuid4().hex}"
    owner = admin if own == "destination" else "usr_someone_else"
    cloud["dynamodb"].put_item(
        TableName=cloud["env"]["ACCOUNTS_TABLE"],
        Item={"pk": {"S": f"ACCOUNT#{destination}"}, "sk": {"S": "ACCOUNT"}, "owner_id": {"S": owner}},
    )
    fraud = load("evaluate").handler(saga_state(transfer_id, REVIEW_AMOUNT), LAMBDA_CONTEXT)
    execution = start_review_execution(
        cloud, transfer_id, fraud, timeout_s=120, destination_account_id=destination
    )
    wait_for(lambda: review_item(cloud, transfer_id))
    decider = admin if own == "destination" else saga_state(transfer_id)["user_id"]
    # When that admin approves it
    status, body, _ = call(
        load("review"), review_event(transfer_id, {"decision": "APPROVE", "note": "mine"}, user=decider)
    )
    # Then 403 four_eyes_required, the review still waits, and the refusal is an event for the audit log
    assert (status, body["code"]) == (403, "four_eyes_required"), body
    assert review_item(cloud, transfer_id)["status"]["S"] == "WAITING"  # type: ignore[index]
    outbox = cloud["dynamodb"].scan(TableName=cloud["env"]["FRAUD_TABLE"])["Items"]
    refusals = [
        json.loads(item["event"]["S"]) if "event" in item else item
        for item in outbox
        if item["pk"]["S"].startswith("OUTBOX#")
        and "four_eyes_refused" in json.dumps(item)
        and transfer_id in json.dumps(item)
    ]
    assert len(refusals) == 1, refusals
    # While another admin may decide it
    status, body, _ = call(
        load("review"), review_event(transfer_id, {"decision": "DECLINE", "note": "2nd pair"})
    )
    assert status == 200, body
    cloud["sfn"].stop_execution(executionArn=execution)


@pytest.mark.parametrize("body", [{"decision": "APPROVE", "note": "mine"}, {"decision": "nope"}, None])
def test_a_customer_gets_403_on_the_review_route_whatever_the_body(cloud: dict[str, Any], body: Any) -> None:
    status, problem, headers = call(load("review"), review_event(tid(), body, role="customer", user="usr_x"))
    assert (status, problem["code"]) == (403, "forbidden")
    assert headers["Content-Type"] == PROBLEM_JSON


def test_a_customer_gets_403_on_the_alerts_route_even_with_a_bad_query(cloud: dict[str, Any]) -> None:
    alerts = load("alerts")
    for query in (None, {"decision": "EVERYTHING", "limit": "5000"}):
        status, problem, _ = call(alerts, alerts_event(query, role="customer"))
        assert (status, problem["code"]) == (403, "forbidden")


@pytest.mark.parametrize(
    ("body", "field"),
    [({"decision": "approve", "note": "x"}, "decision"), ({"decision": "MAYBE", "note": "x"}, "decision"),
     ({"decision": 1, "note": "x"}, "decision"), ({"decision": "APPROVE"}, "note"),
     ({"decision": "APPROVE", "note": "x", "reviewer": "usr_someone_else"}, "reviewer")],
)  # fmt: skip
def test_an_admin_with_a_bad_body_gets_422_naming_the_field(
    cloud: dict[str, Any], body: Any, field: str
) -> None:
    status, problem, _ = call(load("review"), review_event(tid(), body))
    assert (status, problem["code"]) == (422, "validation_failed")
    assert field in [error["field"] for error in problem["errors"]]


def test_malformed_json_is_400_and_an_unknown_transfer_is_404(cloud: dict[str, Any]) -> None:
    review = load("review")
    event = review_event(tid(), None)
    event["body"] = "{not json"
    status, problem, _ = call(review, event)
    assert (status, problem["code"]) == (400, "malformed_json")
    for transfer_id in (tid(), "tr_short"):
        status, problem, _ = call(review, review_event(transfer_id, {"decision": "APPROVE", "note": "x"}))
        assert (status, problem["code"]) == (404, "review_not_found")


@pytest.mark.parametrize(
    "query", [{"decision": "APPROVE"}, {"limit": "0"}, {"limit": "abc"}, {"cursor": "%%%"}, {"limit": "101"}]
)
def test_bad_alert_queries_are_422(cloud: dict[str, Any], query: dict[str, str]) -> None:
    status, problem, _ = call(load("alerts"), alerts_event(query))
    assert status == 422 and problem["code"] in {"validation_failed", "invalid_cursor"}


def test_the_sample_events_answer_as_documented(cloud: dict[str, Any]) -> None:
    samples = ROOT / "events" / "fraud"
    forbidden = json.loads((samples / "review_customer_forbidden.json").read_text())
    status, problem, _ = call(load("review"), forbidden)
    assert (status, problem["code"]) == (403, "forbidden")
    status, page, _ = call(load("alerts"), json.loads((samples / "alerts_admin.json").read_text()))
    assert status == 200 and set(page) == {"items", "next_cursor"}

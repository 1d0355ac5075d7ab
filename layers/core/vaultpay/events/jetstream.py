"""NATS JetStream for every VaultPay function: where NATS is and how to log in, how a connection is opened,
the one connection a warm Lambda keeps, and the pull-consumer loop the audit and fraud consumers share.

Connections. Every connection VaultPay opens goes through `open_connection`: each server is tried at most
twice, each attempt within the connect timeout, and nothing reconnects in the background (nats-py would
buffer publishes and pull requests while it tries, so a call would wait instead of failing). A function
keeps one `NatsConnection` per process: a lost connection is noticed at once, and the next call opens a new
one with the credentials read again (a refused login drops the cached secret, so a rotated one reaches the
next attempt); a connection idle for a while is PINGed before it is used.

One event loop per process. Lambda handlers are synchronous, and an asyncio connection belongs to the loop
that opened it: a fresh `asyncio.run()` per invocation would strand the connection on a closed loop. So the
process keeps one `asyncio.Runner` (`run_blocking`; its loop lives as long as the process) for its
connection.

Pull consumers. `pull` fetches a durable consumer's batches until nothing is waiting or the invocation's
end is near, and settles each message as its consumer's handler decides: acked once what it learned is
durable (or was already: a redelivery), or rejected. A rejected message is nak'd, not terminated: each nak
is another delivery, and after `max_deliver` of them JetStream publishes a MAX_DELIVERIES advisory, from
which the dead-letter stream (infra/nats/) keeps the message for an operator to inspect and replay.
`term()` would stop redelivery at once, but it raises a MSG_TERMINATED advisory instead, which a
dead-letter stream fed from MAX_DELIVERIES never sees: the event would be missing from the consumer's read
model with no one told. The price is a few wasted deliveries per poison message. When the handler fails (its
store is down), the run stops: what was settled before reaches the server, the rest of the batch comes back
after `ack_wait`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import json
import re
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from vaultpay.shared.errors import ConfigurationError, TransientError

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger
    from nats.aio.client import Client
    from nats.js.client import JetStreamContext

    from vaultpay.shared.secrets import SecretCache

_T = TypeVar("_T")
_SCHEMES = ("nats://", "tls://")
_CREDS_MARKER = "-----BEGIN NATS USER JWT-----"
_INBOX_USER = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A connection idle for longer than this is checked with a PING before use: while a Lambda is frozen
# nothing answers the server's PINGs, so after a few minutes the server has dropped it without telling us.
DEFAULT_IDLE_CHECK_S = 30.0
DEFAULT_CONNECT_TIMEOUT_S = 2.0
# Reading the credentials secret at a cold start: short, one retry (the connect itself is retried by callers).
_SECRETS_TIMEOUT_S = 2.0
_SECRETS_ATTEMPTS = 2
# A JetStream API request of a pull consumer (consumer info, binding) and the flush that confirms its acks.
_API_TIMEOUT_S = 2
# How long a fetch waits for a first message: an empty queue ends the run after this.
FETCH_TIMEOUT_S = 1.0
# No new fetch when less than this is left of the invocation: a batch (read, write, ack) takes well under a
# second, and the stores' client timeouts bound a slow one.
RESERVE_MS = 5_000


# ---- settings and credentials ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NatsSettings:
    """Where NATS is and how to log in. A plain dataclass: pydantic would add to every cold start."""

    servers: tuple[str, ...]
    credentials_secret_arn: str | None = None
    tls_ca: str | None = field(default=None, repr=False)  # PEM of the CA the servers' certificates chain to

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> NatsSettings:
        """NATS_URL (one URL, or several comma-separated for a cluster), optional
        NATS_CREDENTIALS_SECRET_ARN and NATS_TLS_CA (a PEM, for servers whose certificates a private CA
        signed). Outside the local stage (STAGE) a loopback server is refused: on AWS it can only be a
        mistake, and every event would end in a dead-letter queue. Errors name the variable, never its
        value (a URL may hold a password)."""
        raw = environ.get("NATS_URL", "").strip()
        if not raw:
            raise ConfigurationError("invalid settings: NATS_URL is not set")
        servers = tuple(part.strip() for part in raw.split(",") if part.strip())
        if not servers or not all(server.startswith(_SCHEMES) for server in servers):
            raise ConfigurationError("invalid settings: NATS_URL must be nats:// or tls:// URLs")
        stage = environ.get("STAGE", "local").strip() or "local"
        if stage != "local" and any(_is_loopback(server) for server in servers):
            raise ConfigurationError(
                f"invalid settings: NATS_URL names a loopback server on stage {stage}: set NatsUrls to the "
                "cluster's tls:// URLs (docs/nats-on-aws.md)"
            )
        if stage != "local" and not all(server.startswith("tls://") for server in servers):
            raise ConfigurationError(
                f"invalid settings: NATS_URL must be tls:// URLs on stage {stage} (events and credentials "
                "never cross the network in plain text)"
            )
        secret = environ.get("NATS_CREDENTIALS_SECRET_ARN", "").strip() or None
        ca = environ.get("NATS_TLS_CA", "").strip() or None
        if ca is not None and "-----BEGIN CERTIFICATE-----" not in ca:
            raise ConfigurationError("invalid settings: NATS_TLS_CA must be a PEM certificate")
        return cls(servers=servers, credentials_secret_arn=secret, tls_ca=ca)

    def tls_options(self) -> dict[str, Any]:
        """`nats.connect` keyword arguments for TLS: a context trusting NATS_TLS_CA (else the system's CAs
        for tls:// URLs; none for nats:// ones)."""
        if self.tls_ca is None:
            return {}
        import ssl

        context = ssl.create_default_context(cadata=self.tls_ca)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return {"tls": context}


def server_info(client: Any) -> Mapping[str, Any] | None:
    """The INFO the connected server sent (its `server_name`, `cluster`...), or None without one. nats-py
    keeps it only in a private attribute: this is the one place that reads it."""
    info = getattr(client, "_server_info", None)
    return info if isinstance(info, Mapping) and info else None


def server_list(urls: str | Sequence[str]) -> list[str]:
    """`nats.connect`'s servers from a NATS_URL-style value: one URL, several comma-separated (a cluster), or
    a list already (nats-py does not split a string)."""
    parts = urls.split(",") if isinstance(urls, str) else list(urls)
    return [part.strip() for part in parts if part.strip()]


def _is_loopback(url: str) -> bool:
    host = url.split("://", 1)[1].rsplit("@", 1)[-1]
    host = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]", 1)[0] + "]"
    return host in ("localhost", "[::1]") or host.startswith("127.")


def credentials_from(settings: NatsSettings) -> CredentialSource | None:
    """The process's credentials for `settings` (from Secrets Manager, cached), or None without a secret."""
    if not settings.credentials_secret_arn:
        return None
    from vaultpay.shared.aws import aws_client
    from vaultpay.shared.secrets import SecretCache

    client = aws_client("secretsmanager", timeout_s=_SECRETS_TIMEOUT_S, max_attempts=_SECRETS_ATTEMPTS)
    return SecretCredentials(SecretCache(client), settings.credentials_secret_arn)


@dataclass(frozen=True, slots=True, repr=False)
class NatsCredentials:
    """One way to log in to NATS: user and password, a token, or a `.creds` file's content (JWT + seed)."""

    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds: str | None = None

    def __repr__(self) -> str:
        # The values are secrets: a repr that reached a log must not carry them.
        kind = "creds" if self.creds else "token" if self.token else "user/password"
        return f"NatsCredentials({kind})"

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for `nats.connect`."""
        if self.creds:
            if importlib.util.find_spec("nkeys") is None:
                raise ConfigurationError(
                    "NATS .creds credentials need the nkeys package: add nats-py[nkeys] to the deps layer"
                )
            from nats.aio.client import RawCredentials

            return {"user_credentials": RawCredentials(self.creds)}
        if self.token:
            return {"token": self.token}
        options: dict[str, Any] = {"user": self.user, "password": self.password}
        if self.user and _INBOX_USER.fullmatch(self.user):
            # Replies to this user come on an inbox of its own, the only one its permissions let it read:
            # no other user's stolen password reads what this one pulls (infra/nats/cluster.yaml).
            options["inbox_prefix"] = f"_INBOX_{self.user}"
        return options


def parse_credentials(secret: str) -> NatsCredentials:
    """A Secrets Manager value: `{"user": ..., "password": ...}`, `{"token": ...}`, `{"creds": ...}`, or the
    text of a `.creds` file. Errors say which shape was expected, never what the secret holds."""
    text = secret.strip()
    if text.startswith(_CREDS_MARKER):
        return NatsCredentials(creds=text)
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, Mapping):
        values = {k: v for k, v in document.items() if isinstance(v, str) and v}
        if "creds" in values:
            return NatsCredentials(creds=values["creds"])
        if "token" in values:
            return NatsCredentials(token=values["token"])
        if "user" in values and "password" in values:
            return NatsCredentials(user=values["user"], password=values["password"])
    raise ConfigurationError(
        'the NATS credentials secret must be JSON {"user", "password"}, {"token"} or {"creds"}, '
        "or the text of a .creds file"
    )


class CredentialSource(Protocol):
    """Where the connection gets its credentials at each (re)connect."""

    def get(self) -> NatsCredentials: ...

    def invalidate(self) -> None: ...


class SecretCredentials:
    """Credentials from Secrets Manager through the shared SecretCache: a rotation reaches the next connect
    within the cache's TTL, and a refused login drops the cached value at once."""

    def __init__(self, secrets: SecretCache, secret_id: str) -> None:
        self._secrets = secrets
        self._secret_id = secret_id

    def get(self) -> NatsCredentials:
        return parse_credentials(self._secrets.get(self._secret_id))

    def invalidate(self) -> None:
        self._secrets.invalidate(self._secret_id)


def login_options(credentials: CredentialSource | None, tls: Mapping[str, Any]) -> dict[str, Any]:
    """`nats.connect`'s login keyword arguments: the credentials as the source holds them now (read at each
    connect, so a rotated secret reaches the next connection) and the TLS of `NatsSettings.tls_options`."""
    options = credentials.get().connect_options() if credentials is not None else {}
    return {**options, **tls}


# ---- the process's event loop ------------------------------------------------------------------------


@functools.cache
def _process_runner() -> asyncio.Runner:
    return asyncio.Runner()


def run_blocking(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Runs `coroutine` to completion on the process's one event loop (from synchronous code only)."""
    return _process_runner().run(coroutine)


# ---- opening a connection ----------------------------------------------------------------------------


async def open_connection(servers: Sequence[str], *, name: str, timeout_s: float, **options: Any) -> Client:
    """A new connection to the first of `servers` that accepts it, opened as every VaultPay connection is:
    each server tried at most twice, each attempt bounded by `timeout_s` (nats-py takes whole seconds), and
    no reconnecting in the background once it is lost. `options`: the login (`login_options`, or an
    operator's own), callbacks. nats-py's errors are raised as they are."""
    import nats

    return await nats.connect(
        list(servers),
        name=name,
        connect_timeout=max(1, round(timeout_s)),
        allow_reconnect=False,
        # 1, not 0: nats-py reads 0 as "no limit" and would retry a dead server forever.
        max_reconnect_attempts=1,
        reconnect_time_wait=0,
        **options,
    )


# ---- the connection ---------------------------------------------------------------------------------


class NatsConnection:
    """A NATS connection opened on first use and kept for the life of the process (the relay's, the sweeper's
    and each consumer's).

    It does not reconnect in the background (`open_connection`): a lost connection is noticed at once
    through `lost`, and the next call to `client()` opens a new one, with the credentials read again; a
    refused login drops the cached secret, so the attempt after it reads a rotated one. A connection idle for
    `idle_check_s` is PINGed before it is handed out. The JetStream context and the consumers' bound pull
    subscriptions belong to one connection and are made again with the next.
    """

    def __init__(
        self,
        servers: tuple[str, ...] | list[str],
        *,
        name: str,
        credentials: CredentialSource | None = None,
        tls: Mapping[str, Any] | None = None,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        idle_check_s: float = DEFAULT_IDLE_CHECK_S,
        jetstream_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        log: Any = None,
    ) -> None:
        self._servers = list(servers)
        self._name = name
        self._credentials = credentials
        self._tls = dict(tls or {})
        self._connect_timeout_s = connect_timeout_s
        self._idle_check_s = idle_check_s
        self._jetstream_timeout_s = jetstream_timeout_s
        self._clock = clock
        self._log = log
        self._client: Client | None = None
        self._jetstream: JetStreamContext | None = None
        self._sources: dict[tuple[str, str], NatsPullSource] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lost = asyncio.Event()
        self._last_used = 0.0
        self.connects = 0  # connections opened: a warm Lambda should show 1

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, name: str, log: Any = None) -> NatsConnection:
        """A function's connection: NATS_URL, NATS_TLS_CA and its own NATS user (NATS_CREDENTIALS_SECRET_ARN,
        which may do only what the function needs: publish for the relay, read its durable for a consumer)."""
        settings = NatsSettings.from_environ(environ)
        return cls(
            settings.servers,
            name=name,
            credentials=credentials_from(settings),
            tls=settings.tls_options(),
            log=log,
        )

    @property
    def lost(self) -> asyncio.Event:
        """Set when the current connection is lost (disconnected or closed)."""
        return self._lost

    async def client(self) -> Client:
        """A connected client: the kept one when it is healthy, else a new one (TransientError if NATS
        cannot be reached, ConfigurationError if the credentials are unusable)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Opened on another loop (closed by now, or a test's): unusable here, and not closable from here.
            self._drop()
            self._loop = loop
        client = self._client
        fresh = client is not None and self._clock() - self._last_used <= self._idle_check_s
        if client is not None and client.is_connected and (fresh or await self._answers_ping(client)):
            self._last_used = self._clock()
            return client
        await self.reset()
        client = await self._connect()
        self._last_used = self._clock()
        return client

    async def jetstream(self) -> JetStreamContext:
        """The JetStream context of the current connection (one per connection: it owns the PubAck inbox)."""
        client = await self.client()
        if self._jetstream is None:
            self._jetstream = client.jetstream(timeout=self._jetstream_timeout_s)
        return self._jetstream

    async def pull_source(self, stream: str, durable: str) -> NatsPullSource:
        """The bound pull subscription of a durable consumer, made once per connection (ConfigurationError if
        the consumer does not exist, TransientError if JetStream does not answer)."""
        import nats.errors
        import nats.js.errors

        client = await self.client()
        key = (stream, durable)
        source = self._sources.get(key)
        if source is None:
            js = client.jetstream(timeout=_API_TIMEOUT_S)
            try:
                # Binding does not check that the consumer exists; a missing one must fail loudly here.
                await js.consumer_info(stream, durable)
            except nats.js.errors.NotFoundError as exc:
                missing = f"JetStream consumer {durable} on stream {stream} does not exist"
                raise ConfigurationError(missing) from exc
            except (nats.errors.Error, OSError) as exc:
                raise TransientError(f"JetStream did not answer: {type(exc).__name__}") from exc
            subscription = await js.pull_subscribe_bind(durable, stream=stream)
            source = self._sources[key] = NatsPullSource(client, subscription, stream=stream, durable=durable)
        return source

    def touch(self) -> None:
        """Record that the connection was just used successfully (postpones the idle check)."""
        self._last_used = self._clock()

    async def reset(self) -> None:
        """Close the current connection, if any; the next `client()` opens a new one."""
        client = self._client
        self._drop()
        if client is not None and not client.is_closed:
            try:
                await asyncio.wait_for(client.close(), timeout=self._connect_timeout_s)
            except Exception as exc:  # closing a broken connection may fail; it is abandoned either way
                self._warn("closing the NATS connection failed", exc)

    async def close(self) -> None:
        await self.reset()

    def _drop(self) -> None:
        self._lost.set()
        self._client = None
        self._jetstream = None
        self._sources.clear()

    async def _answers_ping(self, client: Client) -> bool:
        try:
            await client.flush(timeout=max(1, round(self._connect_timeout_s)))
        except Exception as exc:
            self._warn("the idle NATS connection did not answer a PING; reconnecting", exc)
            return False
        return True

    async def _connect(self) -> Client:
        options = login_options(self._credentials, self._tls)
        lost = asyncio.Event()
        refused: list[Exception] = []

        async def on_error(exc: Exception) -> None:
            # nats-py reports every connection error here; its default handler logs a traceback per attempt.
            if _is_refused_login(exc):
                refused.append(exc)

        async def on_lost() -> None:
            lost.set()

        try:
            client = await asyncio.wait_for(
                open_connection(
                    self._servers,
                    name=self._name,
                    timeout_s=self._connect_timeout_s,
                    error_cb=on_error,
                    disconnected_cb=on_lost,
                    closed_cb=on_lost,
                    **options,
                ),
                # Each server gets its attempts bounded by the connect timeout; this bounds them all.
                timeout=self._connect_timeout_s * (len(self._servers) + 1),
            )
        except Exception as exc:
            if _is_refused_login(exc):
                refused.append(exc)
            if refused and self._credentials is not None:
                # The secret may have been rotated since it was cached: read it again next time.
                self._credentials.invalidate()
            reason = "refused the credentials" if refused else type(exc).__name__
            # The URL is not in the message: it may carry a user and password.
            raise TransientError(f"NATS is unreachable ({reason})") from exc
        self._client = client
        self._lost = lost
        self.connects += 1
        return client

    def _warn(self, message: str, exc: Exception) -> None:
        if self._log is not None:
            self._log.warning(message, extra={"error": type(exc).__name__})


def _is_refused_login(exc: BaseException) -> bool:
    from nats.errors import AuthorizationError

    # During the handshake nats-py raises a plain Error quoting the server's "-ERR 'Authorization Violation'".
    return isinstance(exc, AuthorizationError) or "authorization violation" in str(exc).lower()


# ---- pull consumers ----------------------------------------------------------------------------------


class Delivery(Protocol):
    """What a consumer needs of a JetStream message (nats.aio.msg.Msg is one)."""

    @property
    def data(self) -> bytes: ...

    @property
    def metadata(self) -> Any: ...

    async def ack(self) -> None: ...

    async def nak(self, delay: float | None = None) -> None: ...


class PullSource(Protocol):
    """A pull consumer: a fetch returns [] when nothing is waiting; flush confirms acks reached the server."""

    async def fetch(self, batch: int, wait_s: float) -> list[Delivery]: ...

    async def flush(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ConsumerLag:
    """A durable consumer's backlog: messages not yet delivered, delivered but unacknowledged, redelivered."""

    pending: int
    ack_pending: int
    redelivered: int

    def as_dict(self) -> dict[str, int]:
        return {"pending": self.pending, "ack_pending": self.ack_pending, "redelivered": self.redelivered}


@dataclass
class PullReport:
    """What one run did; `stopped` is "drained" (queue empty) or "time" (the invocation's end is near).

    `pull` counts the batches, the messages fetched and those rejected; the handler counts what it learned
    (`duplicates`: redeliveries of work already done, acked); `lag` is the durable consumer's backlog after
    the run, when it was read. A consumer's report adds its own counts."""

    batches: int = 0
    fetched: int = 0
    duplicates: int = 0
    rejected: int = 0
    stopped: str = ""
    lag: ConsumerLag | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Plain classes, not dataclasses: every function that imports this module would pay for their generated code
# at its cold start (the relay too, which never pulls).
class Ack:
    """The message's work is durable, was already (a duplicate), or there is none for this consumer."""

    __slots__ = ("message",)

    def __init__(self, message: Delivery) -> None:
        self.message = message


class Reject:
    """The message can never be handled (poison): nak'd towards `max_deliver` and the dead-letter stream.
    `reason` is logged with the message's stream position, never its payload."""

    __slots__ = ("message", "reason")

    def __init__(self, message: Delivery, reason: str) -> None:
        self.message = message
        self.reason = reason


Verdict = Ack | Reject
# A consumer's handling of one fetched batch: a verdict for each message, yielded as soon as it is decided
# (after the write that makes it durable), so a failure part-way leaves only the rest of the batch unsettled.
Handler = Callable[[Sequence[Delivery]], AsyncGenerator[Verdict, None]]
_Report = TypeVar("_Report", bound=PullReport)


async def pull(
    source: PullSource,
    handle: Handler,
    report: _Report,
    *,
    name: str,
    remaining_ms: Callable[[], int],
    batch: int,
    fetch_timeout_s: float = FETCH_TIMEOUT_S,
    reserve_ms: int = RESERVE_MS,
    log: Logger | None = None,
) -> _Report:
    """Fetches batches and settles each message as `handle` decides, until the consumer has nothing waiting
    or less than `reserve_ms` of the invocation is left (`remaining_ms`: the Lambda context's). Each batch's
    acks and naks are flushed before the next fetch, and when `handle` fails, before the failure is raised."""
    while True:
        if remaining_ms() < reserve_ms:
            report.stopped = "time"
            return report
        messages = await source.fetch(batch, fetch_timeout_s)
        if not messages:
            report.stopped = "drained"
            return report
        report.batches += 1
        report.fetched += len(messages)
        try:
            async with contextlib.aclosing(handle(messages)) as verdicts:
                async for verdict in verdicts:
                    await _settle(verdict, report, name, log)
        finally:
            # Whatever was settled before a failure reaches the server; the rest comes back after ack_wait.
            await source.flush()


async def _settle(verdict: Verdict, report: PullReport, name: str, log: Logger | None) -> None:
    if isinstance(verdict, Ack):
        await verdict.message.ack()
        return
    report.rejected += 1
    if log is not None:
        # The reason and the stream position only: the payload may hold anything.
        log.warning(
            f"{name} message rejected", extra={"reason": verdict.reason, **_position(verdict.message)}
        )
    await verdict.message.nak()


def _position(message: Delivery) -> dict[str, Any]:
    try:
        metadata = message.metadata
        return {"stream_seq": metadata.sequence.stream, "deliveries": metadata.num_delivered}
    except (AttributeError, ValueError, TypeError):
        return {}


def consume_durable(
    connection: NatsConnection,
    stream: str,
    durable: str,
    consume: Callable[[NatsPullSource], Coroutine[Any, Any, _Report]],
) -> _Report:
    """One scheduled run of a durable consumer, on the process's event loop: `consume` pulls from its bound
    subscription, then the backlog it left goes into the report and out as the lag metrics (`consumer`:
    the durable's name), which the consumer's alarm watches."""
    from vaultpay.shared.observability import publish_lag

    async def run() -> tuple[_Report, ConsumerLag]:
        source = await connection.pull_source(stream, durable)
        report = await consume(source)
        return report, await source.lag()

    report, lag = run_blocking(run())
    report.lag = lag
    publish_lag(durable, **lag.as_dict())
    return report


class NatsPullSource:
    """A bound pull subscription on a durable (or a replay's ephemeral) consumer."""

    def __init__(self, client: Any, subscription: Any, *, stream: str = "", durable: str = "") -> None:
        self._client = client
        self._subscription = subscription
        self._stream = stream
        self._durable = durable

    async def fetch(self, batch: int, wait_s: float) -> list[Delivery]:
        import nats.errors

        try:
            messages: list[Delivery] = await self._subscription.fetch(batch, timeout=wait_s)
        except (nats.errors.TimeoutError, TimeoutError):
            # An empty wait. Under load nats-py can surface it as the builtin TimeoutError (an OSError),
            # which must not be mistaken for a broken connection below.
            return []
        except (nats.errors.Error, OSError) as exc:
            raise TransientError(f"JetStream fetch failed: {type(exc).__name__}") from exc
        return messages

    async def lag(self) -> ConsumerLag:
        """How far behind the durable consumer is now (JetStream's consumer info)."""
        import nats.errors

        try:
            info = await self._client.jetstream(timeout=_API_TIMEOUT_S).consumer_info(
                self._stream, self._durable
            )
        except (nats.errors.Error, OSError) as exc:
            raise TransientError(f"JetStream consumer info failed: {type(exc).__name__}") from exc
        return ConsumerLag(
            pending=int(info.num_pending or 0),
            ack_pending=int(info.num_ack_pending or 0),
            redelivered=int(info.num_redelivered or 0),
        )

    async def flush(self) -> None:
        import nats.errors

        try:
            await self._client.flush(timeout=_API_TIMEOUT_S)
        except (nats.errors.Error, OSError) as exc:
            # The acks may be lost: the messages come back, and the consumers' markers make that harmless.
            raise TransientError(f"NATS flush failed: {type(exc).__name__}") from exc

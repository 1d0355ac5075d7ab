"""One NATS connection per warm Lambda, on one event loop reused by every invocation, with its credentials.

Lambda handlers are synchronous, and an asyncio connection belongs to the loop that opened it: a fresh
`asyncio.run()` per invocation would strand the connection on a closed loop. So the process keeps one
`asyncio.Runner` (its loop lives as long as the process) and one `NatsConnection` that reconnects lazily.
The audit consumer and any other NATS-speaking function can share both.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import re
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from vaultpay.shared.errors import ConfigurationError, TransientError

if TYPE_CHECKING:
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


# ---- the process's event loop ------------------------------------------------------------------------


@functools.cache
def _process_runner() -> asyncio.Runner:
    return asyncio.Runner()


def run_blocking(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Runs `coroutine` to completion on the process's one event loop (from synchronous code only)."""
    return _process_runner().run(coroutine)


# ---- the connection ---------------------------------------------------------------------------------


class NatsConnection:
    """A NATS connection opened on first use and kept for the life of the process.

    It does not reconnect in the background (nats-py would buffer publishes while it tries, so a publish
    would wait instead of failing): a lost connection is noticed at once through `lost`, and the next call
    to `client()` opens a new one. A connection idle for `idle_check_s` is PINGed before it is handed out.
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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lost = asyncio.Event()
        self._last_used = 0.0
        self.connects = 0  # connections opened: a warm Lambda should show 1

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

    async def _answers_ping(self, client: Client) -> bool:
        try:
            await client.flush(timeout=max(1, round(self._connect_timeout_s)))
        except Exception as exc:
            self._warn("the idle NATS connection did not answer a PING; reconnecting", exc)
            return False
        return True

    async def _connect(self) -> Client:
        import nats

        options = self._credentials.get().connect_options() if self._credentials else {}
        options.update(self._tls)
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
                nats.connect(
                    self._servers,
                    name=self._name,
                    connect_timeout=max(1, round(self._connect_timeout_s)),
                    allow_reconnect=False,
                    # 1, not 0: nats-py reads 0 as "no limit" and would retry a dead server forever.
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0,
                    error_cb=on_error,
                    disconnected_cb=on_lost,
                    closed_cb=on_lost,
                    **options,
                ),
                # Each server gets one attempt bounded by the connect timeout; this bounds them all.
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

"""`vaultpay ops events tail`, `vaultpay ops dlq list|replay`: follow the event stream, handle dead letters.

Replay re-publishes a copy of the message a consumer gave up on, keeping the CloudEvent id (consumers are
idempotent on it) under a new Nats-Msg-Id `<event id>:replay:<dead-letter seq>`; see
vaultpay.events.dead_letters for why a copy and not a redelivery. The NATS URL is --nats-url (or NATS_URL),
else the running local cloud's, from its state file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from vaultpay_cli.context import StateDir, local_state, repo_root
from vaultpay_cli.target import Yes, confirm_write_to, is_loopback

ops_events_app = typer.Typer(help="Operate the event backbone (NATS JetStream).", no_args_is_help=True)
events_app = typer.Typer(help="The VAULTPAY event stream.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters: events a consumer gave up on.", no_args_is_help=True)
ops_events_app.add_typer(events_app, name="events")
ops_events_app.add_typer(dlq_app, name="dlq")

NatsUrl = Annotated[
    str | None,
    typer.Option("--nats-url", envvar="NATS_URL", help="NATS server (default: the running local cloud's)"),
]
Creds = Annotated[Path | None, typer.Option("--creds", help="NATS .creds file, for a secured server")]


# How to log in to a local cloud's NATS, by URL, once resolve_nats_url found it (localcloud.nats_security),
# and how many nodes it has (a single node applies the cluster's replicas as 1).
_LOCAL_LOGINS: dict[str, dict[str, Any]] = {}
_LOCAL_NODES: dict[str, int] = {}


def resolve_nats_url(nats_url: str | None, state_dir: Path | None) -> str:
    """--nats-url / NATS_URL, else the local cloud's endpoint; exits 1 with advice when there is neither.
    For the local cloud's, the commands below then log in as its operator over TLS."""
    url, login = resolve_nats(nats_url, state_dir)
    if login:
        _LOCAL_LOGINS[url] = login
    return url


def resolve_nats(nats_url: str | None, state_dir: Path | None) -> tuple[str, dict[str, Any]]:
    """The URL (as resolve_nats_url) and, for the local cloud's, how to log in to it: TLS trusting its CA,
    as its operator user (localcloud.nats_security)."""
    if nats_url:
        return nats_url, {}
    from localcloud.nats_security import operator_options

    state = local_state(state_dir)
    endpoints = (state or {}).get("endpoints", {})
    url = endpoints.get("nats")
    if not url:
        typer.echo("No NATS server: start the local cloud (`make run`) or pass --nats-url.", err=True)
        raise typer.Exit(1)
    _LOCAL_NODES[str(url)] = len(endpoints.get("nats_nodes") or [url])
    return str(url), operator_options(endpoints)


def confirm_nats_write(url: str, action: str, *, yes: bool) -> None:
    """A write to NATS is confirmed as one to AWS: asked for (or --yes) when a node is off this machine."""
    local = all(is_loopback(node) for node in url.split(","))
    confirm_write_to(
        f"NATS {url}" + (" (this machine)" if local else ""), local=local, action=action, yes=yes
    )


async def _connect(url: str, creds: Path | None) -> Any:
    from vaultpay.events.jetstream import open_connection, server_list

    options: dict[str, Any] = {"user_credentials": str(creds)} if creds else dict(_LOCAL_LOGINS.get(url, {}))

    async def quiet(_exc: Exception) -> None:
        return None  # the failure is reported once, below, not per connection attempt

    try:
        return await open_connection(
            server_list(url), name="vaultpay-cli", timeout_s=3, error_cb=quiet, **options
        )
    except Exception as exc:
        typer.echo(f"Cannot connect to NATS at {url}: {type(exc).__name__} {exc}".rstrip(), err=True)
        raise typer.Exit(1) from exc


# ---- events tail ---------------------------------------------------------------------------------------


def _envelope(data: bytes) -> dict[str, Any] | None:
    """The CloudEvent envelope of a message, or None when it is not one."""
    try:
        envelope = json.loads(data)
    except ValueError:
        return None
    return envelope if isinstance(envelope, dict) else None


def format_event_json(data: bytes, subject: str) -> str:
    """One JSON object per event (JSON Lines, for a stream): the same fields as the line, never the data."""
    envelope = _envelope(data)
    if envelope is None:
        return json.dumps({"stream_subject": subject, "cloudevent": False})
    fields = ("id", "time", "type", "subject", "correlationid")
    return json.dumps({"stream_subject": subject, **{key: envelope.get(key) for key in fields}})


def format_event_line(data: bytes, subject: str) -> str:
    """One line per event: time, type, subject, correlation id (never the data: it may be sensitive)."""
    envelope = _envelope(data)
    if envelope is None:
        return f"{'-':<24}  {subject:<40}  (not a CloudEvent)"
    return (
        f"{envelope.get('time', '-'):<24}  {envelope.get('type', subject):<40}  "
        f"{envelope.get('subject', '-'):<28}  {envelope.get('correlationid', '-')}"
    )


async def tail_events(
    url: str,
    *,
    subject: str = "vaultpay.>",
    from_start: bool = False,
    limit: int | None = None,
    emit: Callable[[str], None] = typer.echo,
    stop: asyncio.Event | None = None,
    creds: Path | None = None,
    render: Callable[[bytes, str], str] = format_event_line,
) -> int:
    """Follows the stream with an ordered ephemeral consumer (no state left on the server, gaps
    re-requested by the client) until `stop` is set or `limit` events were printed; returns the count."""
    from nats.js.api import DeliverPolicy

    from vaultpay.events.jetstream_config import EVENTS_STREAM

    stop = stop or asyncio.Event()
    nc = await _connect(url, creds)
    printed = 0
    try:
        js = nc.jetstream()
        sub = await js.subscribe(
            subject,
            stream=EVENTS_STREAM,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL if from_start else DeliverPolicy.NEW,
        )
        try:
            while not stop.is_set() and (limit is None or printed < limit):
                try:
                    msg = await sub.next_msg(timeout=0.25)
                except TimeoutError:
                    continue  # nats-py's TimeoutError is one too: look at `stop` again
                emit(render(msg.data, msg.subject))
                printed += 1
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
    finally:
        # close(), not drain(): draining with a subscription open can time out (docs/emulators.md).
        await nc.close()
    return printed


@events_app.command("tail")
def events_tail(
    event_type: Annotated[
        str, typer.Option("--type", help="Subject filter, e.g. vaultpay.auth.> (default: every event)")
    ] = "vaultpay.>",
    from_start: Annotated[
        bool, typer.Option("--from-start", help="Replay the stream from its first message")
    ] = False,
    limit: Annotated[int | None, typer.Option("--limit", help="Stop after this many events")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line (JSON Lines) instead of text")
    ] = False,
    nats_url: NatsUrl = None,
    creds: Creds = None,
    state_dir: StateDir = None,
) -> None:
    """Print one line per event (time, type, subject, correlation id) as it arrives; Ctrl-C stops."""
    url = resolve_nats_url(nats_url, state_dir)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        render = format_event_json if as_json else format_event_line
        await tail_events(
            url, subject=event_type, from_start=from_start, limit=limit, stop=stop, creds=creds, render=render
        )

    asyncio.run(main())


@events_app.command("apply-config")
def events_apply_config(
    config: Annotated[
        Path | None,
        typer.Option("--config", help="JetStream configuration (default: infra/nats/jetstream.json)"),
    ] = None,
    nats_url: NatsUrl = None,
    creds: Creds = None,
    yes: Yes = False,
    state_dir: StateDir = None,
) -> None:
    """Create or update the streams and consumers of the JetStream configuration (the deploy step)."""
    from vaultpay.events.jetstream_config import JetStreamConfigError, apply_jetstream_config

    url = resolve_nats_url(nats_url, state_dir)
    path = config or repo_root() / "infra" / "nats" / "jetstream.json"
    confirm_nats_write(url, f"apply {path.name}", yes=yes)
    options: dict[str, Any] = {"user_credentials": str(creds)} if creds else dict(_LOCAL_LOGINS.get(url, {}))
    try:
        done = asyncio.run(apply_jetstream_config(url, path, nodes=_LOCAL_NODES.get(url), **options))
    except JetStreamConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    except Exception as exc:  # the server is unreachable or refused the login: say so, without a traceback
        typer.echo(f"Cannot apply {path} to {url}: {type(exc).__name__} {exc}".rstrip(), err=True)
        raise typer.Exit(1) from None
    for line in done:
        typer.echo(line)


# ---- dlq list / replay ---------------------------------------------------------------------------------


async def _with_jetstream(url: str, creds: Path | None, work: Callable[[Any], Any]) -> Any:
    nc = await _connect(url, creds)
    try:
        return await work(nc.jetstream())
    finally:
        await nc.close()


@dlq_app.command("list")
def dlq_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
    limit: Annotated[int, typer.Option("--limit", help="Show at most this many")] = 1000,
    nats_url: NatsUrl = None,
    creds: Creds = None,
    state_dir: StateDir = None,
) -> None:
    """List dead letters: the events a consumer gave up on, oldest first."""
    from nats.js.errors import NotFoundError

    from vaultpay.events.dead_letters import list_dead_letters
    from vaultpay.events.jetstream_config import DEAD_LETTER_STREAM

    url = resolve_nats_url(nats_url, state_dir)
    try:
        letters = asyncio.run(_with_jetstream(url, creds, lambda js: list_dead_letters(js, limit=limit)))
    except NotFoundError:
        typer.echo(
            f"There is no {DEAD_LETTER_STREAM} stream: apply infra/nats/jetstream.json first.", err=True
        )
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps([asdict(letter) for letter in letters], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Dead letters ({len(letters)})")
    # What an operator copies (the id) never wraps nor is cut; the rest folds whole on a narrow terminal.
    table.add_column("id", no_wrap=True, min_width=max((len(str(x.dlq_seq)) for x in letters), default=2))
    for column in ("consumer", "stream seq", "type", "deliveries", "reason", "time"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(
            str(letter.dlq_seq),
            letter.consumer,
            str(letter.stream_seq),
            letter.event_type or "(aged out)",
            str(letter.deliveries),
            letter.reason,
            letter.at,
        )
    Console().print(table)


@dlq_app.command("replay")
def dlq_replay(
    dlq_id: Annotated[int, typer.Argument(help="The dead letter's id (first column of `dlq list`)")],
    nats_url: NatsUrl = None,
    creds: Creds = None,
    yes: Yes = False,
    state_dir: StateDir = None,
) -> None:
    """Publish the dead letter's event again for its consumers, then remove the dead letter."""
    from vaultpay.events.dead_letters import replay_dead_letter
    from vaultpay.shared.errors import Conflict, NotFound

    url = resolve_nats_url(nats_url, state_dir)
    confirm_nats_write(url, f"replay dead letter {dlq_id}", yes=yes)
    try:
        replayed = asyncio.run(_with_jetstream(url, creds, lambda js: replay_dead_letter(js, dlq_id)))
    except (NotFound, Conflict) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    letter = replayed.dead_letter
    typer.echo(
        f"Replayed dead letter {letter.dlq_seq}: event {replayed.event_id} ({letter.event_type}) "
        f"for {letter.consumer}, now stream seq {replayed.new_stream_seq}."
    )

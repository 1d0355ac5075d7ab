"""`vaultpay ops audit`: verify the audit hash chain, and replay JetStream events into a read model."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vaultpay_cli.context import StateDir, aws_errors
from vaultpay_cli.target import (
    EndpointUrl,
    Profile,
    Region,
    Stack,
    Target,
    Yes,
    invoke_when_not_throttled,
    is_loopback,
    resolve_target,
)

if TYPE_CHECKING:
    from vaultpay.audit.model import AppendOutcome, AuditEntry

ops_audit_app = typer.Typer(
    help="The audit log: verify its hash chain, rebuild a read model from JetStream.", no_args_is_help=True
)

TableOption = Annotated[
    str | None,
    typer.Option("--table", help="Audit table name (default: the one table whose name ends with AuditTable)"),
]
TABLE_SUFFIX = "AuditTable"
# The read models `replay --consumer` can rebuild, by name; the durable consumer's name works too.
READ_MODELS = {"audit": "audit", "audit-workers": "audit"}


def _audit_table(client: Any, given: str | None, target: Target) -> str:
    if given:
        return given
    from_stack = target.resource(TABLE_SUFFIX)
    if from_stack:
        return from_stack
    names: list[str] = []
    for page in client.get_paginator("list_tables").paginate():
        names.extend(
            name for name in page["TableNames"] if name.endswith(TABLE_SUFFIX) and target.in_stack(name)
        )
    if len(names) != 1:
        found = ", ".join(names) if names else "none"
        typer.echo(f"Pass --table: tables ending with {TABLE_SUFFIX}: {found}.", err=True)
        raise typer.Exit(2)
    return names[0]


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(2)


FunctionOption = Annotated[
    str | None,
    typer.Option(
        "--function-name",
        help="AuditCheckpointFunction's name (default: the stack's, or the one deployed as such)",
    ),
]
CHECKPOINT_FUNCTION = "AuditCheckpointFunction"


def _checkpoint_deployed(target: Target, given: str | None) -> str | None:
    """The checkpoint function to ask, when it can be known without listing every function: --function-name,
    the stack's, or the local cloud's."""
    return given or target.resource(CHECKPOINT_FUNCTION)


def _invoke_checkpoint(target: Target, name: str, payload: dict[str, Any]) -> dict[str, Any]:
    with aws_errors(f"invoke {name}"):
        response = invoke_when_not_throttled(
            target.client("lambda"), FunctionName=name, Payload=json.dumps(payload).encode()
        )
        body = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError") or not isinstance(body, dict) or "verified" not in body:
        raise _fail(f"AuditCheckpointFunction failed: {json.dumps(body)[:2000]}")
    return body


def _heads(verified: dict[str, Any]) -> list[str]:
    """The head line(s) to print: one per chain when the log has several, each in --expect-head's form."""
    chains = verified.get("chains") or []
    if len(chains) <= 1:
        return [f"Head: {verified.get('head_seq')}:{verified['head_hash']}"]
    return [f"Head of chain {c['chain']}: {c['chain']}/{c['head_seq']}:{c['head_hash']}" for c in chains]


def _report(verified: dict[str, Any], what: str) -> None:
    checkpoints = verified.get("checkpoints_checked", 0)
    if verified["ok"]:
        typer.echo(
            f"{what}: OK, {verified['records_checked']} records through {checkpoints} signed checkpoint(s)."
        )
        for line in _heads(verified):
            typer.echo(line)
        return
    typer.echo(f"{what}: BROKEN after {verified['records_checked']} records.", err=True)
    bad = verified.get("first_bad_record") or {}
    typer.echo(
        f"First bad record: seq {bad.get('seq')}, audit_id {bad.get('audit_id')}: "
        f"{bad.get('reason')} ({bad.get('detail')})",
        err=True,
    )


@ops_audit_app.command("verify")
def verify(
    table: TableOption = None,
    expect_head: Annotated[
        str | None,
        typer.Option(
            "--expect-head",
            help="[<chain>/]<seq>:<hash> printed by an earlier verify: checks that chain against it too "
            "(with --table-only, the only defence against deleted newest records or a rewritten chain)",
        ),
    ] = None,
    table_only: Annotated[
        bool,
        typer.Option(
            "--table-only",
            help="Read the table here instead of asking AuditCheckpointFunction, which also checks "
            "every signed checkpoint (the default)",
        ),
    ] = False,
    function_name: FunctionOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
    profile: Profile = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    stack: Stack = None,
    state_dir: StateDir = None,
) -> None:
    """Recompute the whole audit chain through its signed checkpoints; exit status 1 when it is broken."""
    from botocore.exceptions import BotoCoreError

    from vaultpay.audit.model import ChainAnchor
    from vaultpay.audit.service import AuditService
    from vaultpay.audit.store import DynamoDBAuditStore
    from vaultpay.shared.errors import VaultPayError

    try:
        anchor = ChainAnchor.parse(expect_head) if expect_head else None
    except ValueError as exc:
        raise _fail(f"--expect-head: {exc}") from exc
    target = resolve_target(
        profile=profile, region=region, endpoint_url=endpoint_url, stack=stack, state_dir=state_dir
    )
    target.announce()
    deployed = (
        None
        if table_only or anchor is not None or table is not None
        else _checkpoint_deployed(target, function_name)
    )
    if deployed:
        verified = _invoke_checkpoint(target, deployed, {"verify_only": True})["verified"]
        if as_json:
            typer.echo(json.dumps(verified, indent=2))
        else:
            _report(verified, "Audit chain")
        if not verified["ok"]:
            raise typer.Exit(1)
        return
    try:
        client = target.client("dynamodb")
        name = _audit_table(client, table, target)
        began = time.monotonic()
        result = AuditService(DynamoDBAuditStore(client, name)).verify(anchor)
    except (VaultPayError, BotoCoreError) as exc:
        raise _fail(f"Could not read the audit table: {exc}") from exc
    elapsed = time.monotonic() - began
    if as_json:
        typer.echo(json.dumps({"table": name, **result.to_dict()}, indent=2))
    elif result.ok:
        typer.echo(f"Audit chain of {name}: OK, {result.records_checked} records in {elapsed:.2f} s.")
        for line in _heads(result.to_dict()):
            typer.echo(line)
        typer.echo(
            "The table alone cannot show deleted newest records or a rewritten chain: verify through "
            "the signed checkpoints (without --table/--table-only), or pass --expect-head."
        )
    else:
        bad = result.first_bad_record
        typer.echo(f"Audit chain of {name}: BROKEN after {result.records_checked} records.", err=True)
        if bad is not None:
            where = f"seq {bad.seq}, audit_id {bad.audit_id}"
            typer.echo(f"First bad record: {where}: {bad.reason} ({bad.detail})", err=True)
        typer.echo(f"Last good record: {result.head_seq}:{result.head_hash}", err=True)
    if not result.ok:
        raise typer.Exit(1)


@ops_audit_app.command("checkpoint")
def checkpoint(
    function_name: FunctionOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
    profile: Profile = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    stack: Stack = None,
    yes: Yes = False,
    state_dir: StateDir = None,
) -> None:
    """Verify the chain now and, when it verifies, sign its head into a new checkpoint (as the schedule)."""
    target = resolve_target(
        profile=profile, region=region, endpoint_url=endpoint_url, stack=stack, state_dir=state_dir
    )
    name = function_name or target.function_name(CHECKPOINT_FUNCTION)
    target.confirm_write(f"sign a new audit checkpoint with {name}", yes=yes)
    body = _invoke_checkpoint(target, name, {})
    if as_json:
        typer.echo(json.dumps(body, indent=2))
    else:
        _report(body["verified"], "Audit chain")
        point = body.get("checkpoint")
        if point:
            typer.echo(f"Signed checkpoint: seq {point['seq']} at {point['at']} (key {point['key_id']}).")
        elif body["verified"]["ok"]:
            typer.echo("No new checkpoint: the head has one already, or the chain is empty.")
    if not body["verified"]["ok"]:
        raise typer.Exit(1)


def _start(given: str) -> tuple[int | None, datetime | None]:
    from vaultpay.shared.kernel import parse_rfc3339

    if given.isascii() and given.isdigit() and int(given) >= 1:
        return int(given), None
    try:
        return None, parse_rfc3339(given)
    except ValueError as exc:
        raise _fail(f"--from must be a stream sequence (1, 2, ...) or an RFC 3339 time: {exc}") from exc


def _ensure_table(client: Any, name: str) -> None:
    from vaultpay.audit.store import table_definition

    try:
        client.create_table(**table_definition(name))
    except client.exceptions.ResourceInUseException:
        return
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    typer.echo(f"Created {name}.", err=True)


def _read_model(name: str, client: Any, table: str) -> Callable[[Sequence[AuditEntry]], list[AppendOutcome]]:
    """The append function of a read model: what replay feeds each batch of entries to."""
    from vaultpay.audit.service import AuditService
    from vaultpay.audit.store import DynamoDBAuditStore

    if READ_MODELS[name] == "audit":
        service = AuditService(DynamoDBAuditStore(client, table))
        return service.append_entries
    raise _fail(f"No read model {name!r}")


@ops_audit_app.command("replay")
def replay(
    start: Annotated[str, typer.Option("--from", help="Stream sequence or RFC 3339 time to start from")],
    consumer: Annotated[
        str, typer.Option("--consumer", help=f"Read model to rebuild: {', '.join(sorted(READ_MODELS))}")
    ],
    table: Annotated[str, typer.Option("--table", help="Table of the rebuilt read model (a fresh chain)")],
    create_table: Annotated[
        bool, typer.Option("--create-table", help="Create the table (audit layout) if it does not exist")
    ] = False,
    nats_url: Annotated[
        str | None, typer.Option("--nats-url", help="Default: the local cloud's, else NATS_URL")
    ] = None,
    profile: Profile = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    yes: Yes = False,
    state_dir: StateDir = None,
) -> None:
    """Rebuild a read model from VAULTPAY through an ephemeral consumer; safe to run again (idempotent)."""
    import nats

    from localcloud.nats_security import operator_options
    from vaultpay.audit.consumer import replay as replay_stream
    from vaultpay.shared.errors import VaultPayError

    if consumer not in READ_MODELS:
        raise _fail(f"--consumer must be one of: {', '.join(sorted(READ_MODELS))}")
    start_seq, start_time = _start(start)
    target = resolve_target(profile=profile, region=region, endpoint_url=endpoint_url, state_dir=state_dir)
    state = target.state
    url = nats_url or (state["endpoints"]["nats"] if state else os.environ.get("NATS_URL"))
    # The local cloud's NATS: TLS trusting its CA, as its operator user.
    login = operator_options(state["endpoints"]) if state and not nats_url else {}
    if not url:
        raise _fail("No NATS server: start the local cloud, or pass --nats-url (or set NATS_URL).")
    typer.echo(
        f"source: NATS {url}" + ("" if is_loopback(url.split(",")[0]) else " (off this machine)"), err=True
    )
    target.confirm_write(f"write the {consumer} read model into {table}", yes=yes)
    client = target.client("dynamodb")
    if create_table:
        _ensure_table(client, table)
    append = _read_model(consumer, client, table)

    async def run() -> Any:
        from vaultpay.events.jetstream import server_list

        connection = await nats.connect(
            server_list(url), connect_timeout=5, max_reconnect_attempts=2, **login
        )
        try:
            return await replay_stream(connection, append, start_seq=start_seq, start_time=start_time)
        finally:
            await connection.close()

    began = time.monotonic()
    try:
        report = asyncio.run(run())
    except (VaultPayError, OSError, nats.errors.Error) as exc:
        raise _fail(f"Replay failed: {type(exc).__name__}: {exc}") from exc
    typer.echo(
        f"Replayed {report.delivered} messages up to stream seq {report.last_stream_seq} into {table} "
        f"({consumer}) in {time.monotonic() - began:.1f} s: {report.appended} appended, "
        f"{report.duplicates} already there, {report.rejected} refused, {len(report.skipped)} not CloudEvents"
        + (f" (stream seq {', '.join(map(str, report.skipped[:20]))})" if report.skipped else "")
        + "."
    )

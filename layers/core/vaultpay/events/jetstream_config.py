"""JetStream as code: validate infra/nats/jetstream.json, then create or update its streams and consumers.

The file lists `streams` and `consumers` with nats-py's StreamConfig/ConsumerConfig field names (durations
in seconds, sizes in bytes); a consumer also names its `stream`. Applying is idempotent: what exists and
matches is left alone, what differs is updated in place, what is missing is created, and nothing the file
does not mention is deleted (removing a stream is an operator's decision, never a deploy side effect).

It lives in the core package, not in infra/, so that every caller applies the same rules: the local cloud
at start-up, a deploy step run from a build machine, or a CloudFormation custom resource in the VPC that can
reach a private NATS cluster (the loader also takes an already parsed document for that case).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from vaultpay.shared.errors import ConfigurationError

EVENTS_STREAM = "VAULTPAY"
DEAD_LETTER_STREAM = "VAULTPAY_DLQ"
# The relay's retries de-duplicate on Nats-Msg-Id only inside this window, so it must outlast a retry burst.
MIN_DUPLICATE_WINDOW_S = 120.0
EVENT_SUBJECT_PREFIX = "vaultpay."

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TOP_LEVEL_KEYS = frozenset({"description", "streams", "consumers"})


class JetStreamConfigError(ConfigurationError):
    """The JetStream configuration is invalid, or the server refused to apply it."""


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One stream as the file declares it: only the fields given are managed."""

    name: str
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """One durable consumer of `stream`: only the fields given are managed."""

    stream: str
    name: str
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class JetStreamSpec:
    """The whole validated configuration, streams first (consumers need their stream)."""

    streams: tuple[StreamSpec, ...]
    consumers: tuple[ConsumerSpec, ...]


def load_jetstream_config(path: str | os.PathLike[str]) -> JetStreamSpec:
    """Reads and validates the configuration file."""
    try:
        with open(path, encoding="utf-8") as fh:
            document = json.load(fh)
    except (OSError, ValueError) as exc:
        raise JetStreamConfigError(f"cannot read JetStream configuration {os.fspath(path)}: {exc}") from exc
    return parse_jetstream_config(document)


def parse_jetstream_config(document: Any) -> JetStreamSpec:
    """Validates a parsed document; every problem is reported before anything touches the server."""
    from nats.js.api import ConsumerConfig, StreamConfig

    if not isinstance(document, Mapping):
        raise JetStreamConfigError("the JetStream configuration must be a JSON object")
    unknown = set(document) - _TOP_LEVEL_KEYS
    if unknown:
        raise JetStreamConfigError(f"unknown top-level keys: {', '.join(sorted(unknown))}")
    stream_fields = {f.name for f in dataclasses.fields(StreamConfig)}
    # `name` is always the durable name: a second spelling of it could only disagree.
    consumer_fields = {f.name for f in dataclasses.fields(ConsumerConfig)} - {"name"}
    problems: list[str] = []
    streams = [
        _stream_spec(entry, index, stream_fields, problems)
        for index, entry in enumerate(_list(document, "streams", problems))
    ]
    # Every stream the file names, valid or not: a consumer of an invalid stream is not a second problem.
    entries = _list(document, "streams", [])
    names = [str(e["name"]) for e in entries if isinstance(e, Mapping) and isinstance(e.get("name"), str)]
    twice = sorted({n for n in names if names.count(n) > 1})
    problems.extend(f"stream {name} is declared twice" for name in twice)
    consumers = [
        _consumer_spec(entry, index, consumer_fields, set(names), problems)
        for index, entry in enumerate(_list(document, "consumers", problems))
    ]
    keys = [(c.stream, c.name) for c in consumers if c is not None]
    problems.extend(
        f"consumer {stream}/{name} is declared twice"
        for stream, name in sorted({k for k in keys if keys.count(k) > 1})
    )
    if problems:
        raise JetStreamConfigError("invalid JetStream configuration: " + "; ".join(problems))
    return JetStreamSpec(
        streams=tuple(s for s in streams if s is not None),
        consumers=tuple(c for c in consumers if c is not None),
    )


def _list(document: Mapping[str, Any], key: str, problems: list[str]) -> list[Any]:
    value = document.get(key, [])
    if not isinstance(value, list):
        problems.append(f"`{key}` must be a list")
        return []
    return value


def _stream_spec(entry: Any, index: int, allowed: set[str], problems: list[str]) -> StreamSpec | None:
    if not isinstance(entry, Mapping):
        problems.append(f"streams[{index}] must be an object")
        return None
    name = entry.get("name")
    where = f"stream {name}" if isinstance(name, str) else f"streams[{index}]"
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"{where}: `name` must be 1..64 letters, digits, '_' or '-'")
        return None
    count = len(problems)
    unknown = set(entry) - allowed
    if unknown:
        problems.append(f"{where}: unknown fields {', '.join(sorted(unknown))}")
    subjects = entry.get("subjects")
    if not isinstance(subjects, list) or not subjects or not all(isinstance(s, str) and s for s in subjects):
        problems.append(f"{where}: `subjects` must be a non-empty list of subjects")
        subjects = []
    # Memory storage loses every event on a restart: never acceptable for the event or dead-letter stream.
    if entry.get("storage") != "file":
        problems.append(f'{where}: `storage` must be "file"')
    if any(s.startswith(EVENT_SUBJECT_PREFIX) for s in subjects):
        window = entry.get("duplicate_window")
        if not isinstance(window, int | float) or window < MIN_DUPLICATE_WINDOW_S:
            problems.append(
                f"{where}: `duplicate_window` must be at least {MIN_DUPLICATE_WINDOW_S:.0f} s, so that a "
                "retried publish of the same event id is de-duplicated"
            )
    for key in ("max_age", "duplicate_window"):
        if key in entry and (not _is_number(entry[key]) or entry[key] < 0):
            problems.append(f"{where}: `{key}` must be a number of seconds")
    _check_replicas(entry, where, problems)
    if len(problems) > count:
        return None
    return StreamSpec(name=name, fields={k: v for k, v in entry.items()})


def _consumer_spec(
    entry: Any, index: int, allowed: set[str], streams: set[str], problems: list[str]
) -> ConsumerSpec | None:
    if not isinstance(entry, Mapping):
        problems.append(f"consumers[{index}] must be an object")
        return None
    stream, name = entry.get("stream"), entry.get("durable_name")
    where = f"consumer {stream}/{name}"
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"consumers[{index}]: `durable_name` must be 1..64 letters, digits, '_' or '-'")
        return None
    if not isinstance(stream, str) or stream not in streams:
        problems.append(f"{where}: `stream` must name a stream declared in this file")
        return None
    count = len(problems)
    unknown = set(entry) - allowed - {"stream"}
    if unknown:
        problems.append(f"{where}: unknown fields {', '.join(sorted(unknown))}")
    # Only explicit acks let a worker confirm each event after its own durable write.
    if entry.get("ack_policy") != "explicit":
        problems.append(f'{where}: `ack_policy` must be "explicit"')
    max_deliver = entry.get("max_deliver")
    if not isinstance(max_deliver, int) or isinstance(max_deliver, bool) or max_deliver < 1:
        problems.append(f"{where}: `max_deliver` must be a positive integer (a poison message must stop)")
        max_deliver = None
    ack_wait = entry.get("ack_wait")
    if ack_wait is not None and (not _is_number(ack_wait) or ack_wait <= 0):
        problems.append(f"{where}: `ack_wait` must be a positive number of seconds")
    backoff = entry.get("backoff")
    if backoff is not None:
        if not isinstance(backoff, list) or not backoff or not all(_is_number(b) and b > 0 for b in backoff):
            problems.append(f"{where}: `backoff` must be a non-empty list of positive seconds")
        else:
            if max_deliver is not None and len(backoff) >= max_deliver:
                problems.append(f"{where}: `backoff` must have fewer values than `max_deliver` (server rule)")
            # The server replaces ack_wait with the first back-off step; a different value here would be
            # a setting that silently does nothing.
            if isinstance(ack_wait, int | float) and not math.isclose(ack_wait, backoff[0]):
                problems.append(f"{where}: `ack_wait` must equal the first `backoff` value")
    _check_replicas(entry, where, problems)
    if len(problems) > count:
        return None
    fields = {k: v for k, v in entry.items() if k != "stream"}
    return ConsumerSpec(stream=stream, name=name, fields=fields)


def _check_replicas(entry: Mapping[str, Any], where: str, problems: list[str]) -> None:
    # JetStream replicates by Raft: 1, 3 or 5 copies (an even count tolerates no more failures than one
    # fewer, and the server refuses more than 5).
    replicas = entry.get("num_replicas")
    if replicas is not None and replicas not in (1, 3, 5):
        problems.append(f"{where}: `num_replicas` must be 1, 3 or 5")


def with_replicas_at_most(spec: JetStreamSpec, nodes: int) -> JetStreamSpec:
    """The spec for a server of `nodes` nodes: no stream or consumer asks for more replicas than there are
    (the local cloud's single node applies the cluster's file with 1)."""

    def clamp(fields: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(fields)
        if isinstance(out.get("num_replicas"), int) and out["num_replicas"] > nodes:
            out["num_replicas"] = nodes
        return out

    return JetStreamSpec(
        streams=tuple(dataclasses.replace(s, fields=clamp(s.fields)) for s in spec.streams),
        consumers=tuple(dataclasses.replace(c, fields=clamp(c.fields)) for c in spec.consumers),
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# ---- applying ------------------------------------------------------------------------------------------


async def apply_jetstream_config(
    nats_url: str | list[str],  # one URL, several comma-separated, or a list
    config_path: str | os.PathLike[str],
    *,
    connect_timeout_s: float = 5.0,
    nodes: int | None = None,
    **connect_options: Any,
) -> list[str]:
    """Creates or updates every stream and consumer of the file; returns one line per object saying what
    was done ("created", "updated (fields)", "unchanged"). `nodes`: how many servers the cluster has, when
    it may be fewer than the file's replicas (see `with_replicas_at_most`); without it, a server that is in
    no cluster gets 1 replica and a clustered one the file's.

    `connect_options` go to `nats.connect` (user/password, token, user_credentials, tls). The file is
    validated before the connection is opened, so a bad file never half-applies.
    """
    from vaultpay.events.jetstream import open_connection, server_list

    spec = load_jetstream_config(config_path)
    if nodes is not None:
        spec = with_replicas_at_most(spec, nodes)
    client = await open_connection(
        server_list(nats_url),
        name="vaultpay-jetstream-config",
        timeout_s=connect_timeout_s,
        **connect_options,
    )
    try:
        if nodes is None and not _clustered(client):
            # A server outside any cluster holds one copy whatever the file asks: say so, do not fail.
            spec = with_replicas_at_most(spec, 1)
            done = await apply_spec(client.jetstream(timeout=connect_timeout_s), spec)
            return [f"{line} (a single server: 1 replica)" for line in done]
        return await apply_spec(client.jetstream(timeout=connect_timeout_s), spec)
    finally:
        await client.close()


def _clustered(client: Any) -> bool:
    """Whether the server the client reached is part of a cluster (its INFO names one); a client without an
    INFO is taken as clustered (the file's replicas)."""
    from vaultpay.events.jetstream import server_info

    info = server_info(client)
    return info is None or bool(info.get("cluster"))


async def apply_spec(js: Any, spec: JetStreamSpec) -> list[str]:
    """Applies a validated spec through a JetStream context (nats-py's `nc.jetstream()`)."""
    done = [await _apply_stream(js, stream) for stream in spec.streams]
    done += [await _apply_consumer(js, consumer) for consumer in spec.consumers]
    return done


async def _apply_stream(js: Any, stream: StreamSpec) -> str:
    from nats.js.api import StreamConfig
    from nats.js.errors import APIError, NotFoundError

    label = f"stream {stream.name}"
    wanted = StreamConfig(**stream.fields)
    try:
        info = await js.stream_info(stream.name)
    except NotFoundError:
        try:
            await js.add_stream(wanted)
        except APIError as exc:
            raise JetStreamConfigError(f"{label}: the server refused to create it: {_describe(exc)}") from exc
        return f"{label}: created"
    changed = _differences(stream.fields, info.config)
    if not changed:
        return f"{label}: unchanged"
    try:
        await js.update_stream(wanted)
    except APIError as exc:
        # Some fields cannot change in place (storage, deny_delete once set): say which were asked for.
        raise JetStreamConfigError(
            f"{label}: the server refused to update {', '.join(changed)}: {_describe(exc)}"
        ) from exc
    return f"{label}: updated ({', '.join(changed)})"


async def _apply_consumer(js: Any, consumer: ConsumerSpec) -> str:
    from nats.js.api import ConsumerConfig
    from nats.js.errors import APIError, NotFoundError

    label = f"consumer {consumer.stream}/{consumer.name}"
    # `name` as well as `durable_name`: nats-py then uses the CONSUMER.CREATE API, which also updates.
    wanted = ConsumerConfig(name=consumer.name, **consumer.fields)
    try:
        info = await js.consumer_info(consumer.stream, consumer.name)
    except NotFoundError:
        info = None
    changed = [] if info is None else _differences(consumer.fields, info.config)
    if info is not None and not changed:
        return f"{label}: unchanged"
    try:
        await js.add_consumer(consumer.stream, wanted)
    except APIError as exc:
        verb = "create" if info is None else f"update {', '.join(changed)} of"
        raise JetStreamConfigError(f"{label}: the server refused to {verb} it: {_describe(exc)}") from exc
    return f"{label}: created" if info is None else f"{label}: updated ({', '.join(changed)})"


def _differences(wanted: Mapping[str, Any], current: Any) -> list[str]:
    """The managed fields whose live value differs from the file's (fields the file omits are ignored)."""
    return [key for key, value in wanted.items() if not _same(value, getattr(current, key, None))]


def _same(wanted: Any, current: Any) -> bool:
    if isinstance(current, Enum):
        current = current.value
    if _is_number(wanted) and _is_number(current):
        return math.isclose(float(wanted), float(current), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(wanted, list) and isinstance(current, list):
        return len(wanted) == len(current) and all(_same(w, c) for w, c in zip(wanted, current, strict=True))
    if isinstance(wanted, Mapping) and isinstance(current, Mapping):
        # The server adds metadata of its own (`_nats.*`): only the keys the file sets are compared.
        return all(_same(value, current.get(key)) for key, value in wanted.items())
    return bool(wanted == current)


def _describe(exc: Exception) -> str:
    description = getattr(exc, "description", None)
    code = getattr(exc, "err_code", None)
    text = str(description) if description else type(exc).__name__
    return f"{text} (error {code})" if code else text

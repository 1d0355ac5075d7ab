"""JetStream as code against a real nats-server: create, re-apply unchanged, update in place, refuse."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vaultpay.events.jetstream_config import (
    DEAD_LETTER_STREAM,
    EVENTS_STREAM,
    JetStreamConfigError,
    apply_jetstream_config,
)
from vaultpay_cli.ops_events import ops_events_app

pytestmark = pytest.mark.component
# The file asks for three replicas; this server is in no cluster, so it holds one copy and says so.
ONE = " (a single server: 1 replica)"


def _apply(kit: Any, path: Path | None = None) -> list[str]:
    return asyncio.run(apply_jetstream_config(kit.server.url, path or kit.config))


@pytest.fixture(scope="module")
def first_apply(kit: Any) -> list[str]:
    return _apply(kit)


def test_a_first_apply_creates_both_streams_and_every_consumer(first_apply: list[str]) -> None:
    assert first_apply == [
        "stream VAULTPAY: created" + ONE,
        "stream VAULTPAY_DLQ: created" + ONE,
        "consumer VAULTPAY/audit-workers: created" + ONE,
        "consumer VAULTPAY/fraud-workers: created" + ONE,
        "consumer VAULTPAY/webhook-workers: created" + ONE,
    ]


def test_applying_again_changes_nothing(kit: Any, first_apply: list[str]) -> None:
    assert _apply(kit) == [
        "stream VAULTPAY: unchanged" + ONE,
        "stream VAULTPAY_DLQ: unchanged" + ONE,
        "consumer VAULTPAY/audit-workers: unchanged" + ONE,
        "consumer VAULTPAY/fraud-workers: unchanged" + ONE,
        "consumer VAULTPAY/webhook-workers: unchanged" + ONE,
    ]


def test_the_event_stream_is_file_backed_with_a_duplicate_window_of_at_least_two_minutes(
    kit: Any, first_apply: list[str]
) -> None:
    info = kit.js(lambda js: js.stream_info(EVENTS_STREAM))
    config = info.config
    assert config.subjects == ["vaultpay.>"]
    assert config.storage == "file"
    assert config.duplicate_window >= 120
    assert config.num_replicas == 1  # the file asks for 3: a server in no cluster holds one copy
    assert config.retention == "limits" and config.discard == "old"
    assert config.max_age == 30 * 24 * 3600 and config.max_bytes > 0
    # Events cannot be removed through the API: only the limits age them out.
    assert config.deny_delete and config.deny_purge


def test_the_dead_letter_stream_captures_the_give_up_advisories_of_vaultpay_consumers(
    kit: Any, first_apply: list[str]
) -> None:
    info = kit.js(lambda js: js.stream_info(DEAD_LETTER_STREAM))
    assert info.config.subjects == [
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.VAULTPAY.*",
        "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.VAULTPAY.*",
    ]
    assert info.config.storage == "file"


@pytest.mark.parametrize("name", ["audit-workers", "fraud-workers", "webhook-workers"])
def test_the_durable_consumers_ack_explicitly_with_max_deliver_and_backoff(
    kit: Any, first_apply: list[str], name: str
) -> None:
    info = kit.js(lambda js: js.consumer_info(EVENTS_STREAM, name))
    config = info.config
    assert config.durable_name == name
    assert config.ack_policy == "explicit"
    assert config.max_deliver == 5
    assert config.backoff == [30, 60, 120, 300]
    assert config.ack_wait == 30
    assert config.deliver_subject is None  # a pull consumer


def test_a_changed_field_is_updated_in_place(kit: Any, first_apply: list[str], tmp_path: Path) -> None:
    document: dict[str, Any] = json.loads(kit.config.read_text())
    document["consumers"][1]["max_ack_pending"] = 250
    document["streams"][0]["max_age"] = 14 * 24 * 3600
    changed = tmp_path / "jetstream.json"
    changed.write_text(json.dumps(document))
    try:
        done = _apply(kit, changed)
        assert "stream VAULTPAY: updated (max_age)" + ONE in done
        assert "consumer VAULTPAY/fraud-workers: updated (max_ack_pending)" + ONE in done
        assert "consumer VAULTPAY/audit-workers: unchanged" + ONE in done
        info = kit.js(lambda js: js.consumer_info(EVENTS_STREAM, "fraud-workers"))
        assert info.config.max_ack_pending == 250
    finally:
        _apply(kit)  # back to the checked-in file for the other tests


def test_a_change_the_server_cannot_make_is_refused_with_the_field(
    kit: Any, first_apply: list[str], tmp_path: Path
) -> None:
    # Given a file that would allow deleting events again (the server never lifts deny_delete)
    document: dict[str, Any] = json.loads(kit.config.read_text())
    document["streams"][0]["deny_delete"] = False
    changed = tmp_path / "jetstream.json"
    changed.write_text(json.dumps(document))
    # Then applying it fails, naming the field, and the stream keeps its guard
    with pytest.raises(JetStreamConfigError, match="deny_delete"):
        _apply(kit, changed)
    info = kit.js(lambda js: js.stream_info(EVENTS_STREAM))
    assert info.config.deny_delete


def test_an_invalid_file_is_refused_before_any_connection(kit: Any, tmp_path: Path) -> None:
    document: dict[str, Any] = json.loads(kit.config.read_text())
    document["streams"][0]["duplicate_window"] = 30
    bad = tmp_path / "jetstream.json"
    bad.write_text(json.dumps(document))
    # No server listens on this URL: the file's error comes first.
    with pytest.raises(JetStreamConfigError, match="duplicate_window"):
        asyncio.run(apply_jetstream_config("nats://127.0.0.1:1", bad))


def test_the_deploy_command_applies_the_file_and_prints_what_it_did(kit: Any, first_apply: list[str]) -> None:
    result = CliRunner().invoke(ops_events_app, ["events", "apply-config", "--nats-url", kit.server.url])
    assert result.exit_code == 0, result.output
    # The target first (on stderr, before the write), then what was applied
    target, *applied = result.output.splitlines()
    assert target == f"target: NATS {kit.server.url} (this machine)"
    assert applied == [
        "stream VAULTPAY: unchanged" + ONE,
        "stream VAULTPAY_DLQ: unchanged" + ONE,
        "consumer VAULTPAY/audit-workers: unchanged" + ONE,
        "consumer VAULTPAY/fraud-workers: unchanged" + ONE,
        "consumer VAULTPAY/webhook-workers: unchanged" + ONE,
    ]


def test_the_deploy_command_fails_with_the_reason_on_a_bad_file(kit: Any, tmp_path: Path) -> None:
    bad = tmp_path / "jetstream.json"
    bad.write_text(json.dumps({"streams": [{"name": "VAULTPAY"}]}))
    args = ["events", "apply-config", "--nats-url", kit.server.url, "--config", str(bad)]
    result = CliRunner().invoke(ops_events_app, args)
    assert result.exit_code == 1 and "subjects" in result.output

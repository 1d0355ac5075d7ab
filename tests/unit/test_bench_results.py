"""bench/results.py: RESULTS.md takes only figures of the run it sums up, and flags any other file loudly."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support.handlers import load_module

pytestmark = pytest.mark.unit

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def results() -> ModuleType:
    # results.py imports its sibling runinfo.py, as a script does; its dataclasses look their module up.
    return load_module(BENCH / "results.py", "bench_results", register=True, siblings=True)


def figures_file(path: Path, commit: str, figures: dict[str, Any], written: float) -> Path:
    run = {"epoch": written, "commit": commit, "dirty": False}
    path.write_text(json.dumps({"bench": path.stem, "run": run, "figures": figures}))
    os.utime(path, (written, written))
    return path


def test_a_file_of_this_run_is_fresh_and_an_older_one_is_stale(results: ModuleType, tmp_path: Path) -> None:
    started = time.time() - 60
    fresh = figures_file(tmp_path / "a-results.json", "abc1234", {}, started + 10)
    old = figures_file(tmp_path / "b-results.json", "abc1234", {}, started - 3600)
    assert results.load(fresh, "abc1234", started).fresh
    stale = results.load(old, "abc1234", started)
    assert not stale.fresh
    assert "before this `make bench` started" in stale.problems[0]


def test_a_file_measured_at_another_commit_is_stale(results: ModuleType, tmp_path: Path) -> None:
    other = figures_file(tmp_path / "a-results.json", "0ld0ld0", {}, time.time())
    source = results.load(other, "abc1234", None)
    assert source.problems == ["measured at commit 0ld0ld0, not at HEAD abc1234"]


def test_a_markdown_file_names_its_commit_or_cannot_be_placed(results: ModuleType, tmp_path: Path) -> None:
    named = tmp_path / "x-results.md"
    named.write_text("# X\n\n- Date: 2026-11-28 14:09 UTC\n- Commit: abc1234 (with uncommitted changes)\n")
    source = results.load(named, "abc1234def", None)
    assert (source.fresh, source.commit, source.when()) == (True, "abc1234", "2026-11-28 14:09 UTC")
    anonymous = tmp_path / "y-results.md"
    anonymous.write_text("# Y\n\nn=20: p50 34 ms\n")
    assert not results.load(anonymous, "abc1234", None).fresh
    assert results.load(anonymous, "abc1234", time.time() - 60).fresh  # written since the run began


def test_module_lists_are_dropped_from_the_cold_start_tables(results: ModuleType) -> None:
    lines = [
        "Summary line.",
        "",
        "| | before ms | after ms | heaviest imports, ms |",
        "|---|---:|---:|---|",
        r"| RelayFunction | 364 | 120 | `a` 3, `b \| c` 2 |",
        "",
        "Caveats.",
    ]
    assert results.without_column(lines, "heaviest") == [
        "Summary line.",
        "",
        "|  | before ms | after ms |",
        "| --- | ---: | ---: |",
        "| RelayFunction | 364 | 120 |",
        "",
        "Caveats.",
    ]


def test_results_md_flags_a_missing_figure_and_strict_fails(
    results: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    head = results.run_info()["commit"]
    now = time.time()
    relay = {
        "events": 2000,
        "batch_size": 100,
        "rounds": 5,
        "events_per_s_median": {"relay_handler": 900.0, "raw_publish_async_per_batch": 18000.0},
        "ratio_handler_to_raw_per_batch": 0.05,
    }
    figures_file(tmp_path / "relay-results.json", head, relay, now)
    monkeypatch.setattr(
        sys, "argv", ["results.py", "--dir", str(tmp_path), "--since", str(now - 60), "--strict"]
    )
    with pytest.raises(SystemExit, match="not from this run"):
        results.main()
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| Relay handler (BatchProcessor, publish_async, PubAcks per batch) | 900 |" in text
    assert "Relay handler / raw publish_async per batch: **5%**." in text
    assert "STALE — not from this run**: `bench/saga-results.json` missing" in text
    assert "3 of the 4 required results files are not from this run" in text


def test_relay_figures_per_nats_topology_get_a_column_each_and_their_ratios(
    results: ModuleType, tmp_path: Path
) -> None:
    head = results.run_info()["commit"]

    def topology(nodes: int, handler: float, raw: float) -> dict[str, Any]:
        return {
            "nodes": nodes,
            "events_per_s_median": {"relay_handler": handler, "raw_publish_async_per_batch": raw},
            "ratio_handler_to_raw_per_batch": handler / raw,
        }

    relay = {
        "events": 2000,
        "batch_size": 100,
        "rounds": 5,
        "topology": "cluster",
        "events_per_s_median": {"relay_handler": 600.0, "raw_publish_async_per_batch": 4000.0},
        "ratio_handler_to_raw_per_batch": 0.15,
        "topologies": {"single": topology(1, 1000.0, 20000.0), "cluster": topology(3, 600.0, 4000.0)},
        "cluster_to_single": {"relay_handler": 0.6, "raw_publish_async_per_batch": 0.2},
    }
    source = results.load(figures_file(tmp_path / "relay-results.json", head, relay, time.time()), head, None)
    text = "\n".join(results.relay_section(source))
    assert "| Path | single (1 node), events/s | cluster (3 nodes), events/s | cluster / single |" in text
    assert "| Relay handler (BatchProcessor, publish_async, PubAcks per batch) | 1,000 | 600 | 60% |" in text
    assert "Relay handler / raw publish_async per batch, single: **5%**." in text
    assert "Relay handler / raw publish_async per batch, cluster: **15%**." in text
    assert "Cluster / single: relay handler **60%**, raw publish_async per batch **20%**." in text


def test_results_json_carries_issue_17s_figures_and_results_md_shows_them_beside_the_previous_run(
    results: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given this run's results files and a previous run's results.json
    monkeypatch.setattr(
        results,
        "run_info",
        lambda: {
            "commit": "abc1234",
            "dirty": False,
            "date": "2026-12-08 04:00:00 UTC",
            "epoch": time.time(),
            "load_1min": 0.5,
            "python": "3.11",
            "machine": {"cpu": "x", "cores": 2, "memory_gib": 8, "os": "Debian", "kernel": "6"},
        },
    )
    now = time.time()
    # The committed saga figures (every field the saga sections read), with this run's headline values
    saga = json.loads((BENCH / "saga-results.json").read_text())["figures"]
    saga |= {
        "transfers_per_s": 4.0,
        "ceiling": {**saga["ceiling"], "per_s": 10.0},
        "same_definition_noop": {"per_s": 5.0},
        "single_in_flight": {"p50_s": 0.8},
        "per_transfer": {
            **saga["per_transfer"],
            "standard_transitions": 0.05,
            "lambda_invocations": 9.0,
            "dynamodb_wru": 48.0,
        },
        "cost_per_million_usd": {**saga["cost_per_million_usd"], "total": 62.5},
    }
    figures_file(tmp_path / "saga-results.json", "abc1234", saga, now)
    relay = json.loads((BENCH / "relay-results.json").read_text())["figures"]
    relay["events_per_s_median"] = {"relay_handler": 6000.0, "raw_publish_async_per_batch": 10000.0}
    figures_file(tmp_path / "relay-results.json", "abc1234", relay, now)
    api = json.loads((BENCH / "api-latency-results.json").read_text())["figures"]
    api["api_p99_ms"] = {
        "health": 40.0,
        "authorized_get": 45.0,
        "authorized_get_route": "GET /v1/me",
        "create_transfer": 90.0,
    }
    figures_file(tmp_path / "api-latency-results.json", "abc1234", api, now)
    cold = {
        "coldstart_median_ms": 120.0,
        "coldstart_boto3_floor_ms": 160.0,
        "first_invocation_ratio_max": 1.2,
    }
    figures_file(tmp_path / "coldstart-results.json", "abc1234", cold, now)
    soak = {
        "scale": "soak",
        "transfers": 1000,
        "completed": 900,
        "declined": 60,
        "failed": 40,
        "violations": 0,
    }
    (tmp_path / "bank-results.json").write_text(json.dumps(soak))
    (tmp_path / "results.json").write_text(json.dumps({"commit": "0ld0ld0", "cost_per_million_usd": 273.7}))

    # When RESULTS.md is rendered
    text, _ = results.render(tmp_path, None)

    # Then results.json has every figure a machine reads, from this run's files
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["commit"] == "abc1234" and written["date"]
    assert written["cost_per_million_usd"] == 62.5
    assert written["transitions_per_transfer"] == 0.05
    assert (written["relay_events_per_s"], written["raw_publish_events_per_s"]) == (6000.0, 10000.0)
    assert written["api_p99_ms"]["create_transfer"] == 90.0
    assert (written["saga_transfers_per_s"], written["saga_same_definition_noop_per_s"]) == (4.0, 5.0)
    assert (written["saga_noop_ceiling_per_s"], written["transfer_p50_s_single"]) == (10.0, 0.8)
    assert written["first_invocation_ratio_max"] == 1.2 and written["soak"]["failed"] == 40
    # And RESULTS.md shows each beside its baseline and the previous run's value
    headline = text.split("## Headline figures", 1)[1].split("\n## ", 1)[0].splitlines()
    [cost] = [line for line in headline if line.startswith("| Cost per million")]
    assert "62.50" in cost and "273.70" in cost
    [relay_line] = [line for line in headline if line.startswith("| Relay events/s")]
    assert "0.60x" in relay_line
    [saga_line] = [line for line in headline if line.startswith("| Saga transfers/s")]
    assert "0.80x" in saga_line

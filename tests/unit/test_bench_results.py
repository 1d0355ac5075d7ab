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

"""Gathers the figures of one `make bench` run into bench/RESULTS.md (issue 7 "Benchmarks").

The last step of `make bench`. It also writes bench/results.json, the headline figures a machine can read
(issue 17), and shows each beside its same-run baseline and the previous run's value. It reads the results
files the benches of the same run wrote: the JSON
figures of api_latency_bench, saga_bench and relay_bench (bench/<name>-results.json, see runinfo.py), the
tables of bench/coldstart-results.md, bench/schemathesis-results.md when it exists, and lists the other
results files. Each file is checked against the run: written after `--since` (the time `make bench`
started) and at the current commit. A file that fails a check is flagged STALE in RESULTS.md and on
stderr, never silently included; with `--strict` (as `make bench` runs it) a stale or missing required
file makes the exit status 1, after RESULTS.md is written.

    .venv/bin/python bench/results.py                       # over whatever results files are there
    .venv/bin/python bench/results.py --since 1795000000 --strict
"""

from __future__ import annotations

import argparse
import calendar
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its sibling is a module
from runinfo import ROOT, run_info

DATE = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2})(?::\d{2})? UTC")
COMMIT = re.compile(r"\bcommit:?\s+`?([0-9a-f]{7,40})\b", re.IGNORECASE)
OTHER_RESULTS = [
    ("localcloud-results.md", "Local cloud: start-up, memory, Lambda invoke, Step Functions"),
    ("identity-results.md", "Identity: login, MFA verify, GET /v1/me"),
    ("audit-results.md", "Audit: append, verify, consumer"),
    ("audit-lag-results.md", "Audit lag: committed change to audit record"),
    ("audit-shard-results.md", "Audit: appends/s against the number of chains"),
    ("ledger-results.md", "Ledger: reserve and settle, hot account vs many"),
    ("restart-results.md", "Local cloud restart: empty vs populated state, state dir size"),
    ("token-signing-results.md", "Access-token signing: kms:Sign vs a key in memory"),
    ("session-check-results.md", "Authorizer: the session check against none"),
]


# ---- freshness ---------------------------------------------------------------------------------------------


@dataclass
class Source:
    """One results file and what is known of the run that wrote it."""

    path: Path
    written: float | None = None  # epoch seconds, from the file's own date (else its mtime)
    commit: str | None = None
    dirty: bool | None = None
    problems: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # the JSON document, for JSON sources
    text: str = ""

    @property
    def exists(self) -> bool:
        return self.path.exists()

    @property
    def fresh(self) -> bool:
        return self.exists and not self.problems

    def when(self) -> str:
        if self.written is None:
            return "—"
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.written))


def load(path: Path, head: str, since: float | None) -> Source:
    """Reads a results file and checks it against this run: written since `since`, at commit `head`."""
    source = Source(path)
    if not path.exists():
        source.problems.append("missing: its bench did not write it")
        return source
    mtime = path.stat().st_mtime
    source.text = path.read_text()
    if path.suffix == ".json":
        source.data = json.loads(source.text)
        run = source.data.get("run", {})
        source.written, source.commit, source.dirty = run.get("epoch"), run.get("commit"), run.get("dirty")
    else:
        date = DATE.search(source.text)
        source.written = calendar.timegm(time.strptime(date[1], "%Y-%m-%d %H:%M")) if date else mtime
        commit = COMMIT.search(source.text)
        source.commit = commit[1] if commit else None
    # The Markdown files' own dates have minute precision: the modification time decides.
    if since is not None and mtime < since:
        source.problems.append(
            f"written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(mtime))}, before this "
            f"`make bench` started ({time.strftime('%H:%M UTC', time.gmtime(since))})"
        )
    if source.commit is None:
        if since is None:
            source.problems.append(
                "names no commit and no run start was given (--since): cannot tell its run"
            )
    elif not (head.startswith(source.commit) or source.commit.startswith(head)):
        source.problems.append(f"measured at commit {source.commit}, not at HEAD {head}")
    return source


def stale_note(source: Source) -> list[str]:
    if source.fresh:
        return []
    return [f"> **STALE — not from this run**: `bench/{source.path.name}` {'; '.join(source.problems)}.", ""]


# ---- Markdown tables (the cold-start results) --------------------------------------------------------------


def sections(text: str) -> dict[str, list[str]]:
    """`## heading` -> its lines."""
    current: list[str] = []
    out: dict[str, list[str]] = {"": current}
    for line in text.splitlines():
        if line.startswith("## "):
            current = out.setdefault(line[3:].strip(), [])
        else:
            current.append(line)
    return out


def cells(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [c.strip() for c in re.split(r"(?<!\\)\|", inner)]


def tables(lines: list[str]) -> list[list[list[str]]]:
    """Each run of `|` lines as rows of cells (the separator row included)."""
    found: list[list[list[str]]] = []
    block: list[list[str]] = []
    for line in [*lines, ""]:
        if line.lstrip().startswith("|"):
            block.append(cells(line))
        elif block:
            found.append(block)
            block = []
    return found


def without_columns(table: list[list[str]], drop: str) -> list[str]:
    """The table as Markdown lines, without the columns whose header contains `drop`."""
    keep = [i for i, name in enumerate(table[0]) if drop not in name.lower()]
    return ["| " + " | ".join(row[i] if i < len(row) else "" for i in keep) + " |" for row in table]


def without_column(lines: list[str], drop: str) -> list[str]:
    """A section's lines in order, its tables without the columns whose header contains `drop`."""
    out: list[str] = []
    block: list[str] = []
    for line in [*lines, ""]:
        if line.lstrip().startswith("|"):
            block.append(line)
            continue
        if block:
            out += without_columns(tables(block)[0], drop)
            block = []
        out.append(line)
    return out[:-1]


# ---- the sections of RESULTS.md ----------------------------------------------------------------------------


def f1(value: float | None, unit: str = "") -> str:
    return "—" if value is None else f"{value:,.1f}{unit}"


def coldstart_section(source: Source) -> list[str]:
    lines = ["## Cold-start import time per function, against `import boto3`", "", *stale_note(source)]
    if not source.exists:
        return lines
    parts = sections(source.text)
    header = [line for line in parts.get("", []) if line.startswith("- ")]
    lines += [f"From `bench/coldstart-results.md` ({source.when()}, commit {source.commit or '?'}).", ""]
    lines += [*[line for line in header if not line.startswith(("- Machine", "- Python"))], ""]
    for heading, body in parts.items():
        if heading and tables(body):
            lines += [f"### {heading}", *without_column(body, "heaviest")]
    lines += [
        "",
        "Module lists (which imports a lazy import would cut) and the method: `bench/coldstart-results.md`.",
        "",
    ]
    return lines


def api_section(source: Source) -> list[str]:
    lines = ["## API latency per route, p50/p99", "", *stale_note(source)]
    if not source.exists:
        return lines
    figures = source.data["figures"]
    base = figures["baselines"][figures["baseline"]]
    lines += [
        f"From `bench/api-latency-results.json` ({source.when()}, commit {source.commit}); method and notes "
        "in `bench/api-latency-results.md`. Warm, one request at a time, a new TCP connection each, "
        f"through the API Gateway emulator; ms. Baseline, measured interleaved with the routes: "
        f"`{figures['baseline']}` (no authorizer, the smallest function) p50 {f1(base['p50_ms'])}, p99 "
        f"{f1(base['p99_ms'])}; Δ p50 is each route's p50 over it: the route's own work (with the "
        "caller's checks, and the authorizer when its decision was not cached, for protected routes).",
        "",
        "| Baseline | p50 | p99 | mean | n |",
        "|---|---:|---:|---:|---:|",
        *[
            f"| {name} | {f1(f['p50_ms'])} | {f1(f['p99_ms'])} | {f1(f['mean_ms'])} | {f['n']} |"
            for name, f in figures["baselines"].items()
        ],
        "",
        "| Route | auth | p50 | p99 | mean | n | Δ p50 over baseline | first call (cold) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, f in figures["routes"].items():
        delta = f"+{f['p50_ms'] - base['p50_ms']:.1f}" if f["p50_ms"] is not None else "—"
        lines.append(
            f"| {name} | {f['kind']} | {f1(f['p50_ms'])} | {f1(f['p99_ms'])} | {f1(f['mean_ms'])} | "
            f"{f['n']} | {delta} | {f1(f['cold_ms'])} |"
        )
    p99 = figures.get("api_p99_ms")  # issue 17's figures; older results files have none
    if p99:
        lines += [
            "",
            "Issue 17 (targets: authorized GETs ≤ 50 ms, POST /v1/transfers ≤ 100 ms, p99): "
            f"`GET /v1/health` {f1(p99['health'])}, the worst authorized GET {f1(p99['authorized_get'])} "
            f"({p99['authorized_get_route']}), `POST /v1/transfers` {f1(p99['create_transfer'])}.",
        ]
    warm_starts = {n: f["worker_starts_in_samples"] for n, f in figures["routes"].items()}
    if any(warm_starts.values()):
        lines += [
            "",
            "Worker starts during the warm samples (cold starts inside the figures): "
            + ", ".join(f"{n} {c}" for n, c in warm_starts.items() if c)
            + ".",
        ]
    return [*lines, ""]


def saga_sections(source: Source) -> tuple[list[str], list[str]]:
    throughput = ["## Transfers per second through the local cloud, against the engine ceiling", ""]
    per_transfer = [
        "## Per transfer: state transitions, Lambda invocations, DynamoDB write units; cost per million",
        "",
    ]
    throughput += stale_note(source)
    per_transfer += stale_note(source)
    if not source.exists:
        return throughput, per_transfer
    f = source.data["figures"]
    ceiling = f["ceiling"]
    origin = (
        f"From `bench/saga-results.json` ({source.when()}, commit {source.commit}); method, per-function "
        "and per-table breakdowns in `bench/saga-results.md`."
    )
    throughput += [
        origin,
        "",
        "| Figure | Value | Baseline in the same run |",
        "|---|---|---|",
        f"| Transfers, HTTP in → saga → `vaultpay.transaction.completed` in JetStream "
        f"({f['completed']}/{f['transfers']} completed, {f['threads']} at a time) | "
        f"**{f['transfers_per_s']:.2f} transfers/s** | engine ceiling: {ceiling['machine']}, "
        f"{ceiling['succeeded']}/{ceiling['executions']} executions, **{ceiling['per_s']:.2f}/s** → "
        f"**{f['ratio_to_ceiling']:.2f}x** the ceiling |",
        f"| POST → COMPLETED | p50 {f['post_to_completed_p50_s']:.2f} s, p99 "
        f"{f['post_to_completed_p99_s']:.2f} s | ceiling execution p50 {ceiling['p50_s']:.2f} s, p99 "
        f"{ceiling['p99_s']:.2f} s |",
        "",
    ]
    p = f["per_transfer"]
    cost = f["cost_per_million_usd"]
    per_transfer += [
        origin,
        "",
        "| Per transfer | Value |",
        "|---|---:|",
        f"| Step Functions state transitions | {p['state_transitions']:g} |",
        f"| Lambda invocations (API, saga tasks, relay and consumers amortised) | "
        f"{p['lambda_invocations']:.2f} |",
        f"| Lambda GB-s (local durations, arm64 pricing) | {p['lambda_gb_s']:.4f} |",
        f"| DynamoDB write request units (AWS rules; table + GSI) | {p['dynamodb_wru']:g} "
        f"({p['dynamodb_wru_table']:g} + {p['dynamodb_wru_gsi']:g}) |",
        "",
        "| Cost item, AWS list prices us-east-1 | Per transfer | Per million transfers |",
        "|---|---|---:|",
        *[f"| {c['item']} | {c['per_transfer']} | ${c['usd']:,.2f} |" for c in cost["items"]],
        f"| **Total** | | **${cost['total']:,.2f}** |",
        "",
    ]
    return throughput, per_transfer


def relay_section(source: Source) -> list[str]:
    lines = ["## Relay events per second, against raw nats-py `publish_async`", "", *stale_note(source)]
    if not source.exists:
        return lines
    f = source.data["figures"]
    names = {
        "relay_handler": "Relay handler (BatchProcessor, publish_async, PubAcks per batch)",
        "relay_core": "Relay core alone (no Powertools, no metrics)",
        "relay_handler_duplicates": "Relay handler, the same batches re-delivered (JetStream duplicates)",
        "raw_publish_async_per_batch": "**Baseline**: raw nats-py publish_async, PubAcks awaited per batch",
        "raw_publish_async_all": "Raw nats-py publish_async, all then publish_async_completed()",
        "raw_sequential_publish": "Raw nats-py sequential `await js.publish`",
    }
    # Fewest nodes first (the JSON's keys are sorted by name); a file from before the bench ran each NATS
    # topology has one column.
    topologies = dict(
        sorted((f.get("topologies") or {"": f}).items(), key=lambda item: item[1].get("nodes", 0))
    )
    columns = {name: t["events_per_s_median"] for name, t in topologies.items()}
    share: dict[str, float] = f.get("cluster_to_single") or {}
    keys = {k for rates in columns.values() for k in rates}
    header = [
        "Path",
        *[
            f"{name} ({t['nodes']} node{'s' if t['nodes'] > 1 else ''}), events/s" if name else "events/s"
            for name, t in topologies.items()
        ],
        *(["cluster / single"] if share else []),
    ]
    where = (
        "each NATS topology as the local cloud runs it (TLS, the relay's own user), one after the other; on "
        "each, the same servers for every path, one path after the other"
        if f.get("topologies")
        else "the same nats-server, one path after the other"
    )
    lines += [
        f"From `bench/relay-results.json` ({source.when()}, commit {source.commit}); {f['events']} events "
        f"in batches of {f['batch_size']}, median of {f['rounds']} rounds, {where}.",
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
        *[
            "| "
            + " | ".join(
                [
                    names.get(k, k),
                    *[f"{rates[k]:,.0f}" if k in rates else "—" for rates in columns.values()],
                    *([f"{share[k]:.0%}" if k in share else "—"] if share else []),
                ]
            )
            + " |"
            for k in [*names, *sorted(keys - set(names))]
            if k in keys
        ],
        "",
    ]
    for name, t in topologies.items():
        on = f", {name}" if name else ""
        lines.append(
            f"Relay handler / raw publish_async per batch{on}: **{t['ratio_handler_to_raw_per_batch']:.0%}**."
        )
    if share:
        lines.append(
            f"Cluster / single: relay handler **{share['relay_handler']:.0%}**, raw publish_async per batch "
            f"**{share['raw_publish_async_per_batch']:.0%}**."
        )
    return [*lines, ""]


def schemathesis_section(source: Source) -> list[str]:
    lines = ["## Schemathesis (API fuzzing from the OpenAPI document)", "", *stale_note(source)]
    lines += [f"`bench/schemathesis-results.md` ({source.when()}, commit {source.commit or '?'}):", ""]
    for line in source.text.splitlines():
        lines.append("#" * 2 + line if line.startswith("#") else line)  # its headings below this one
    return [*lines, ""]


def freshness_table(rows: list[tuple[str, Source]]) -> list[str]:
    lines = ["| Figure | Results file | Written | Commit | This run? |", "|---|---|---|---|---|"]
    for what, source in rows:
        verdict = "yes" if source.fresh else "**STALE: " + "; ".join(source.problems) + "**"
        dirty = " (uncommitted changes)" if source.dirty else ""
        lines.append(
            f"| {what} | `bench/{source.path.name}` | {source.when()} | {source.commit or '—'}{dirty} | "
            f"{verdict} |"
        )
    return lines


def _figure(source: Source, *path: str) -> Any:
    """`source`'s JSON figure at `path` (under its "figures"); None when the file or the figure is missing."""
    value: Any = source.data.get("figures", source.data)
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def machine_figures(
    sources: dict[str, Source], soak: dict[str, Any] | None, run: dict[str, Any]
) -> dict[str, Any]:
    """bench/results.json: issue 17's figures from this run's results files (None: its bench did not run)."""
    saga, api, relay, coldstart = sources["saga"], sources["api"], sources["relay"], sources["coldstart"]
    per_transfer = _figure(saga, "per_transfer") or {}
    transitions = per_transfer.get("standard_transitions", per_transfer.get("state_transitions"))
    return {
        "commit": run["commit"],
        "date": run["date"],
        "cost_per_million_usd": _figure(saga, "cost_per_million_usd", "total"),
        "transitions_per_transfer": transitions,
        "lambda_invocations_per_transfer": per_transfer.get("lambda_invocations"),
        "wru_per_transfer": per_transfer.get("dynamodb_wru"),
        "relay_events_per_s": _figure(relay, "events_per_s_median", "relay_handler"),
        "raw_publish_events_per_s": _figure(relay, "events_per_s_median", "raw_publish_async_per_batch"),
        "api_p99_ms": _figure(api, "api_p99_ms"),
        "saga_transfers_per_s": _figure(saga, "transfers_per_s"),
        "saga_same_definition_noop_per_s": _figure(saga, "same_definition_noop", "per_s"),
        "saga_noop_ceiling_per_s": _figure(saga, "ceiling", "per_s"),
        "transfer_p50_s_single": _figure(saga, "single_in_flight", "p50_s"),
        "coldstart_median_ms": _figure(coldstart, "coldstart_median_ms"),
        "coldstart_boto3_floor_ms": _figure(coldstart, "coldstart_boto3_floor_ms"),
        "first_invocation_ratio_max": _figure(coldstart, "first_invocation_ratio_max"),
        "soak": soak,
    }


# The headline figures with the baseline each is judged against (the same run's) and issue 17's target.
HEADLINES: list[tuple[str, str, str | None, str]] = [
    ("Cost per million transfers, USD", "cost_per_million_usd", None, "≤ 100"),
    ("Standard transitions per transfer", "transitions_per_transfer", None, ""),
    ("Lambda invocations per transfer", "lambda_invocations_per_transfer", None, ""),
    ("DynamoDB WRU per transfer", "wru_per_transfer", None, "≤ 50"),
    ("Relay events/s", "relay_events_per_s", "raw_publish_events_per_s", "≥ 0.5x raw publish_async"),
    (
        "Saga transfers/s",
        "saga_transfers_per_s",
        "saga_same_definition_noop_per_s",
        "≥ 0.8x same definition, no-op",
    ),
    ("POST → COMPLETED p50, one in flight, s", "transfer_p50_s_single", None, "≤ 1"),
    ("Cold import, median function, ms", "coldstart_median_ms", "coldstart_boto3_floor_ms", "< import boto3"),
    ("First invocation, worst function ÷ bare GetItem", "first_invocation_ratio_max", None, "≤ 1.3"),
]


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def headline_section(figures: dict[str, Any], previous: dict[str, Any]) -> list[str]:
    lines = [
        "## Headline figures (bench/results.json)",
        "",
        f"Previous run: {previous.get('date', '—')}, commit {previous.get('commit', '—')}.",
        "",
        "| Figure | This run | Baseline (same run) | Ratio | Previous run | Target |",
        "|---|---|---|---|---|---|",
    ]
    for label, key, baseline_key, target in HEADLINES:
        value, baseline = figures.get(key), figures.get(baseline_key) if baseline_key else None
        ratio = f"{value / baseline:.2f}x" if isinstance(value, float | int) and baseline else ""
        before = _shown(previous.get(key))
        lines.append(f"| {label} | {_shown(value)} | {_shown(baseline)} | {ratio} | {before} | {target} |")
    p99 = figures.get("api_p99_ms") or {}
    p99_before = previous.get("api_p99_ms") or {}
    for name, target in (("health", ""), ("authorized_get", "≤ 50"), ("create_transfer", "≤ 100")):
        lines.append(
            f"| API p99 {name}, ms | {_shown(p99.get(name))} | health {_shown(p99.get('health'))} | | "
            f"{_shown(p99_before.get(name))} | {target} |"
        )
    soak, soak_before = figures.get("soak") or {}, previous.get("soak") or {}
    if soak:
        lines.append(
            f"| Soak ({soak.get('scale')}, {soak.get('date')}): transfers / completed / declined / failed / "
            f"violations | {soak.get('transfers')} / {soak.get('completed')} / {soak.get('declined')} / "
            f"{soak.get('failed')} / {soak.get('violations')} | | | {soak_before.get('transfers', '—')} "
            f"transfers, {soak_before.get('violations', '—')} violations | ≥ 1,000, failed > 0, none |"
        )
    return [*lines, ""]


def render(directory: Path, since: float | None) -> tuple[str, list[Source]]:
    run = run_info()
    head = run["commit"]
    coldstart = load(directory / "coldstart-results.md", head, since)
    api = load(directory / "api-latency-results.json", head, since)
    saga = load(directory / "saga-results.json", head, since)
    relay = load(directory / "relay-results.json", head, since)
    required = [
        ("Cold-start import time per function", coldstart),
        ("API latency per route", api),
        ("Transfers/s, per-transfer counts and cost", saga),
        ("Relay events/s", relay),
    ]
    schemathesis_path = directory / "schemathesis-results.md"
    schemathesis = load(schemathesis_path, head, since) if schemathesis_path.exists() else None
    others = [(what, load(directory / name, head, since)) for name, what in OTHER_RESULTS]
    m = run["machine"]
    started = (
        f"; `make bench` started {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(since))} and took "
        f"{(run['epoch'] - since) / 60:.0f} min"
        if since is not None
        else ""
    )
    stale = [s for _, s in required if not s.fresh]
    throughput, per_transfer = saga_sections(saga)
    coldstart_json = load(directory / "coldstart-results.json", head, since)
    soak_path = directory / "bank-results.json"
    soak = json.loads(soak_path.read_text()) if soak_path.exists() else None
    results_path = directory / "results.json"
    previous = json.loads(results_path.read_text()) if results_path.exists() else {}
    figures = machine_figures(
        {"saga": saga, "api": api, "relay": relay, "coldstart": coldstart_json}, soak, run
    )
    results_path.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    lines = [
        "# VaultPay benchmark results",
        "",
        "Written by `bench/results.py`, the last step of `make bench`, from the results files the benches "
        "of the run wrote (each figure measured in the same run as its baseline); do not edit by hand.",
        "",
        f"- Date: {run['date']}{started}",
        f"- Commit: {head}{' with uncommitted changes in the working tree' if run['dirty'] else ''}",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['os']}; {m['kernel']}",
        f"- Python: {run['python']}; load average (1 min) at the end: {run['load_1min']:.2f}",
        "",
    ]
    if stale:
        lines += [
            f"> **WARNING: {len(stale)} of the {len(required)} required results files are not from this "
            "run** (see the table): their sections below are flagged STALE.",
            "",
        ]
    lines += [
        *freshness_table(required + ([("Schemathesis", schemathesis)] if schemathesis else [])),
        "",
        *headline_section(figures, previous),
        *coldstart_section(coldstart),
        *api_section(api),
        *throughput,
        *relay_section(relay),
        *per_transfer,
    ]
    if schemathesis is not None:
        lines += schemathesis_section(schemathesis)
    lines += [
        "## Other results of this run",
        "",
        *freshness_table(others),
        "",
    ]
    return "\n".join(lines), [s for _, s in required]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--since", type=float, help="epoch seconds when `make bench` started")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a required results file is stale")
    parser.add_argument("--dir", type=Path, default=ROOT / "bench", help="where the results files are")
    parser.add_argument("--out", type=Path, default=None, help="default: RESULTS.md in --dir")
    args = parser.parse_args()
    text, required = render(args.dir, args.since)
    out = args.out or args.dir / "RESULTS.md"
    out.write_text(text)
    print(f"wrote {out}")
    stale = [s for s in required if not s.fresh]
    for source in stale:
        print(f"STALE: bench/{source.path.name}: {'; '.join(source.problems)}", file=sys.stderr)
    if stale and args.strict:
        raise SystemExit(f"{len(stale)} results file(s) not from this run: see {out}")


if __name__ == "__main__":
    main()

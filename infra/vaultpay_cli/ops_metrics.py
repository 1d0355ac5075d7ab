"""`vaultpay ops metrics`: the key CloudWatch metrics (namespaces VaultPay and AWS/States) with recent sums.

ListMetrics finds what exists; GetMetricStatistics reads each one over the window. On AWS the functions'
EMF log lines become metrics in VaultPay and Step Functions publishes AWS/States. The local cloud does
neither: it ships the EMF lines to CloudWatch Logs as they are, and moto's Step Functions publishes no
metrics, so locally the command finds only what something put with PutMetricData, and says so when that is
nothing.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from vaultpay_cli.context import StateDir, aws_errors, stderr_console
from vaultpay_cli.ops_history import format_time
from vaultpay_cli.target import EndpointUrl, Profile, Region, resolve_target

ops_metrics_app = typer.Typer(help="CloudWatch metrics.")

DEFAULT_NAMESPACES = ("VaultPay", "AWS/States")
STATISTICS = ["Sum", "Average", "Maximum", "SampleCount"]
# GetMetricStatistics answers at most 1,440 datapoints: the period grows with the window to stay under it.
MAX_DATAPOINTS = 1_440


def list_metrics(cloudwatch: Any, namespace: str) -> list[dict[str, Any]]:
    metrics: list[dict[str, Any]] = []
    for page in cloudwatch.get_paginator("list_metrics").paginate(Namespace=namespace):
        metrics.extend(page.get("Metrics", []))
    return sorted(metrics, key=lambda m: (m["MetricName"], _dimensions(m)))


def _dimensions(metric: dict[str, Any]) -> str:
    """`Name=value` pairs; an ARN is cut to its last part (the state machine's or function's name)."""
    return ", ".join(
        f"{d['Name']}={str(d['Value']).rsplit(':', 1)[-1]}" for d in metric.get("Dimensions", [])
    )


def period_for(window_s: float, wanted: int) -> int:
    """The wanted period, raised to a multiple of 60 s that keeps the window within MAX_DATAPOINTS."""
    floor = max(60, int(window_s / MAX_DATAPOINTS) + 1)
    return -(-max(wanted, floor) // 60) * 60


def summarise(datapoints: list[dict[str, Any]]) -> dict[str, Any]:
    """The window's totals: sum and count added up, maximum of maxima, average weighted by samples."""
    if not datapoints:
        return {"datapoints": 0, "sum": None, "average": None, "maximum": None, "samples": 0, "last": None}
    samples = sum(float(d.get("SampleCount", 0)) for d in datapoints)
    total = sum(float(d.get("Sum", 0)) for d in datapoints)
    return {
        "datapoints": len(datapoints),
        "sum": total,
        "average": total / samples if samples else None,
        "maximum": max(float(d.get("Maximum", 0)) for d in datapoints),
        "samples": int(samples),
        "unit": datapoints[0].get("Unit"),
        "last": format_time(max(d["Timestamp"] for d in datapoints)),
    }


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


@ops_metrics_app.command("metrics")
def key_metrics(
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Namespace (repeatable; default VaultPay, AWS/States)"),
    ] = None,
    hours: Annotated[
        float, typer.Option("--hours", min=0.02, max=24 * 15, help="Window, back from now")
    ] = 3.0,
    period: Annotated[int, typer.Option("--period", min=60, help="Statistics period in seconds")] = 300,
    max_metrics: Annotated[
        int, typer.Option("--max-metrics", min=1, help="Read statistics for at most this many metrics")
    ] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
    profile: Profile = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    state_dir: StateDir = None,
) -> None:
    """Key CloudWatch metrics and their sums over the last hours (ListMetrics + GetMetricStatistics)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    namespaces = namespace or list(DEFAULT_NAMESPACES)
    target = resolve_target(profile=profile, region=region, endpoint_url=endpoint_url, state_dir=state_dir)
    target.announce()
    cloudwatch = target.client("cloudwatch")
    seconds = period_for(hours * 3600, period)
    # The window ends at the next period boundary, so the current, partial period is read too.
    end = datetime.fromtimestamp(-(-time.time() // seconds) * seconds, UTC)
    start = end - timedelta(hours=hours)
    found: list[tuple[str, dict[str, Any]]] = []
    with aws_errors("list the metrics"), stderr_console().status("Listing metrics…"):
        for ns in namespaces:
            found.extend((ns, metric) for metric in list_metrics(cloudwatch, ns))
    shown, left_out = found[:max_metrics], len(found) - min(len(found), max_metrics)
    rows: list[dict[str, Any]] = []
    with (
        aws_errors("read the metric statistics"),
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=stderr_console(),
            transient=True,
        ) as progress,
    ):
        task = progress.add_task("Reading statistics", total=len(shown))
        for ns, metric in shown:
            answer = cloudwatch.get_metric_statistics(
                Namespace=ns,
                MetricName=metric["MetricName"],
                Dimensions=metric.get("Dimensions", []),
                StartTime=start,
                EndTime=end,
                Period=seconds,
                Statistics=STATISTICS,
            )
            rows.append(
                {
                    "namespace": ns,
                    "metric": metric["MetricName"],
                    "dimensions": _dimensions(metric),
                    **summarise(answer.get("Datapoints", [])),
                }
            )
            progress.advance(task)
    window = f"last {hours:g} h, period {seconds} s"
    if as_json:
        body = {"namespaces": namespaces, "window": window, "metrics": rows, "not_read": left_out}
        typer.echo(json.dumps(body, indent=2))
        return
    console = Console(highlight=False)
    if not rows:
        console.print(f"No CloudWatch metrics in {', '.join(namespaces)} yet.")
        if target.is_local:
            console.print(
                "On the local cloud that is expected: it ships the functions' EMF metric lines to CloudWatch "
                "Logs without extracting them, and moto's Step Functions publishes no AWS/States metrics, so "
                "only what is put with PutMetricData shows here. On AWS they appear minutes after the first "
                "invocations."
            )
        return
    table = Table(title=f"CloudWatch metrics ({window})")
    for column in ("namespace", "metric", "dimensions"):
        table.add_column(column, overflow="fold")
    for column in ("sum", "average", "maximum", "samples"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("unit", no_wrap=True)
    table.add_column("last datapoint (UTC)", no_wrap=True)
    for row in rows:
        table.add_row(
            row["namespace"],
            row["metric"],
            row["dimensions"] or "-",
            _number(row["sum"]),
            _number(row["average"]),
            _number(row["maximum"]),
            f"{row['samples']:,}",
            str(row.get("unit") or "-"),
            row["last"] or "none in window",
        )
    console.print(table)
    if left_out:
        console.print(f"{left_out} more metrics not read: pass --max-metrics or --namespace.")

"""End-to-end lag: a committed change (register) → outbox → stream → relay → JetStream → audit record.

The audit consumer runs on a schedule (rate(1 minute) on AWS). The local cloud here runs schedules 60 times
faster, so the figure is the pipeline's own lag plus up to one second of schedule wait; on AWS add up to 60 s.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from localcloud_bench import ROOT, client, percentile, stop_cloud


def main(samples: int = 20) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp) / "s"
        # The project's stack with schedules 60x faster (the consumer's rate(1 minute) fires every second).
        argv = [
            sys.executable, "-m", "vaultpay_cli.main", "local", "up", "--in-memory", "--time-scale", "60",
            "--edge-port", "0", "--api-port", "0", "--nats-port", "0", "--nats-monitor-port", "0",
            "--state-dir", str(state_dir),
        ]  # fmt: skip
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not (state_dir / "state.json").exists():
            time.sleep(0.1)
        state = json.loads((state_dir / "state.json").read_text())
        try:
            ddb = client(state, "dynamodb")
            table = next(t for t in ddb.list_tables()["TableNames"] if t.endswith("AuditTable"))
            lags = []
            for _ in range(samples):
                correlation_id = f"lag-{uuid.uuid4().hex}"
                body = json.dumps(
                    {
                        "email": f"lag.{uuid.uuid4().hex[:8]}@example.com",
                        "password": "a long pass phrase",
                        "full_name": "Lag",
                        "phone": "+919800000001",
                    }
                ).encode()
                req = urllib.request.Request(  # noqa: S310 - loopback only
                    state["endpoints"]["api"] + "/v1/auth/register",
                    data=body,
                    headers={"Content-Type": "application/json", "X-Correlation-Id": correlation_id},
                )
                with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
                    resp.read()
                committed = time.monotonic()
                while True:
                    found = ddb.query(
                        TableName=table,
                        IndexName="ByCorrelation",
                        KeyConditionExpression="correlation_id = :c",
                        ExpressionAttributeValues={":c": {"S": correlation_id}},
                    )["Items"]
                    if any(i["type"]["S"] == "vaultpay.auth.user.created" for i in found):
                        lags.append((time.monotonic() - committed) * 1000)
                        break
                    time.sleep(0.02)
        finally:
            stop_cloud(proc)
    text = (
        "# Audit lag (committed change → audit record), local cloud, schedules 60x\n\n"
        f"Command: `.venv/bin/python bench/audit_lag_bench.py`; n={samples}: "
        f"p50 {statistics.median(lags):.0f} ms, p99 {percentile(lags, 99):.0f} ms "
        "(includes up to 1 s of schedule wait; on AWS the consumer runs every minute).\n"
    )
    print(text)
    (ROOT / "bench" / "audit-lag-results.md").write_text(text)


if __name__ == "__main__":
    main()

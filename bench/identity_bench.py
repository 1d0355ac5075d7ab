"""Identity latency through the local API: login, MFA verify, authorized GET /v1/me; baseline /v1/health."""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pyotp

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its sibling is a module
from localcloud_bench import ROOT, percentile, start_cloud, stop_cloud

PASSWORD = "benchmark password 123"  # noqa: S105 - a throwaway user in a throwaway cloud


def call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    source_ip: str = "127.0.0.1",
) -> Any:
    """One request from `source_ip` (a loopback address: registrations are limited per source IP)."""
    data = json.dumps(body).encode() if body is not None else None
    sent = {"Content-Type": "application/json", "X-Device-Id": "bench-device", **(headers or {})}
    parsed = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30, source_address=(source_ip, 0))
    try:
        conn.request(method, path, body=data, headers=sent)
        resp = conn.getresponse()
        raw = resp.read()
        if resp.status >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status} {raw[:300]!r}")
    finally:
        conn.close()
    return json.loads(raw) if raw else None


def timed(fn: Any) -> tuple[float, Any]:
    began = time.perf_counter()
    out = fn()
    return (time.perf_counter() - began) * 1000, out


def summary(name: str, values: list[float]) -> str:
    return f"| {name} | {statistics.median(values):.1f} | {percentile(values, 99):.1f} | {len(values)} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--me-calls", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "identity-results.md")
    args = parser.parse_args()
    logins, verifies, mes, healths = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        proc, state, _ = start_cloud(Path(tmp) / "s")
        base = state["endpoints"]["api"]
        try:
            token = ""
            for i in range(args.users):
                email = f"bench.{uuid.uuid4().hex[:10]}@example.com"
                user = call(
                    base,
                    "POST",
                    "/v1/auth/register",
                    {"email": email, "password": PASSWORD, "full_name": "Bench", "phone": "+919800000000"},
                    source_ip=f"127.0.{1 + i // 250}.{2 + i % 250}",
                )
                ms, challenge = timed(
                    lambda e=email: call(base, "POST", "/v1/auth/login", {"email": e, "password": PASSWORD})
                )
                code = pyotp.TOTP(user["mfa"]["secret"]).now()
                body = {"challenge_id": challenge["challenge_id"], "code": code}
                ms2, tokens = timed(lambda b=body: call(base, "POST", "/v1/auth/mfa/verify", b))
                if i > 0:  # the first call of each function pays its cold start
                    logins.append(ms)
                    verifies.append(ms2)
                token = tokens["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            call(base, "GET", "/v1/me", headers=auth)
            call(base, "GET", "/v1/health")
            for _ in range(args.me_calls):
                mes.append(timed(lambda: call(base, "GET", "/v1/me", headers=auth))[0])
                healths.append(timed(lambda: call(base, "GET", "/v1/health"))[0])
        finally:
            stop_cloud(proc)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    text = "\n".join(
        [
            "# Identity latency through the local API",
            "",
            f"Machine: {platform.machine()}, Python {platform.python_version()}; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; commit {commit.stdout.strip()}.",
            "Command: `.venv/bin/python bench/identity_bench.py "
            f"--users {args.users} --me-calls {args.me_calls}`",
            "",
            "| Route | p50 ms | p99 ms | n |",
            "|---|---|---|---|",
            summary("POST /v1/auth/login (Argon2id m=19 MiB, t=2)", logins),
            summary("POST /v1/auth/mfa/verify (TOTP, tokens, one transaction)", verifies),
            summary("GET /v1/me (authorizer + KMS decrypt)", mes),
            summary("GET /v1/health (baseline: no authorizer, 3 dependency checks)", healths),
            "",
        ]
    )
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()

"""What checking that a token's session has not ended costs the authorizer, against not checking.

The authorizer's decision (vaultpay.auth.authorizer.Authorizer.decide: token verification, role, device,
per-user rate limit) timed three ways in the same run, against DynamoDB Local: without the session check
(the path before sessions could end), with it cached as deployed (`SessionCheckSeconds`, one BatchGetItem
per session per interval), and uncached (a read on every request: the worst case, a new session each time).

    .venv/bin/python bench/session_check_bench.py --out bench/session-check-results.md [--n 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its siblings are modules
from localcloud_bench import endpoint_client, percentile, timed
from runinfo import heading, publish

from localcloud import services
from vaultpay.auth.adapters import DynamoDBSessionRevocations
from vaultpay.auth.authorizer import Authorizer, AuthorizerRequest, NoSessionRevocations, SessionRevocations
from vaultpay.auth.tokens import SigningKeySet, generate_signing_key_document, issue_access_token

USER, DEVICE, FAMILY = "usr_" + "b" * 32, "bench-device", "fam_bench"
TABLE = "bench-auth"


class _Keys:
    def __init__(self, keys: SigningKeySet) -> None:
        self._by_kid = keys.public_keys_by_kid()

    def public_keys_by_kid(self) -> Any:
        return self._by_kid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/session-check-results.md"))
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    keys = SigningKeySet.from_secret(generate_signing_key_document())
    token, _ = issue_access_token(
        keys, user_id=USER, role="customer", device_id=DEVICE, issuer="i", audience="a", now=time.time(),
        session_id=FAMILY,
    )  # fmt: skip
    event = {
        "methodArn": "arn:aws:execute-api:us-east-1:000000000000:api/local/GET/v1/me",
        "resource": "/v1/me",
        "httpMethod": "GET",
        "headers": {"Authorization": f"Bearer {token}", "X-Device-Id": DEVICE},
        "requestContext": {"requestId": "r-1", "identity": {"sourceIp": "127.0.0.1"}},
    }
    request = AuthorizerRequest.from_event(event)
    port = services.free_port()
    with tempfile.TemporaryDirectory() as tmp:
        dynamodb_local = services.dynamodb_local(port, Path(tmp))
        dynamodb_local.start()
        try:
            dynamodb_local.wait_ready()
            client = endpoint_client("dynamodb", f"http://127.0.0.1:{port}")
            client.create_table(
                TableName=TABLE,
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
            client.put_item(
                TableName=TABLE,
                Item={"pk": {"S": f"USER#{USER}"}, "sk": {"S": "PROFILE"}, "status": {"S": "ACTIVE"}},
            )
            client.put_item(
                TableName=TABLE,
                Item={"pk": {"S": f"FAMILY#{FAMILY}"}, "sk": {"S": "FAMILY"}, "revoked": {"BOOL": False}},
            )

            def authorizer(sessions: SessionRevocations) -> Authorizer:
                return Authorizer(keys=_Keys(keys), issuer="i", audience="a", sessions=sessions)

            paths = {
                "no session check (before)": authorizer(NoSessionRevocations()),
                "session check, cached 30 s (as deployed)": authorizer(
                    DynamoDBSessionRevocations(client, TABLE, ttl_s=30)
                ),
                "session check, uncached (a read every call)": authorizer(
                    DynamoDBSessionRevocations(client, TABLE, ttl_s=0)
                ),
            }
            for decide in paths.values():  # warm: the first read pays the client's set-up
                decide.decide(request)
            times: dict[str, list[float]] = {name: [] for name in paths}
            for _ in range(args.n // 50):  # interleaved, so a noisy moment hits every path
                for name, decide in paths.items():
                    times[name] += timed(lambda d=decide: d.decide(request), 50)
        finally:
            dynamodb_local.stop()
    figures = {
        name: {"p50_ms": statistics.median(values), "p99_ms": percentile(values, 99), "n": len(values)}
        for name, values in times.items()
    }
    lines = [
        *heading(
            "Authorizer: the cost of checking that a session has not ended",
            f".venv/bin/python bench/session_check_bench.py --n {args.n}",
        ),
        "DynamoDB Local on loopback.",
        "",
        "| Authorizer.decide | p50 ms | p99 ms |",
        "|---|---:|---:|",
        *(f"| {name} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} |" for name, f in figures.items()),
        "",
    ]
    publish(args.out, "session-check", figures, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What signing access tokens inside KMS costs a login or refresh, against signing with a key in memory.

Both paths issue the same token (vaultpay.auth.tokens.issue_access_token) in the same run: the old one with
a P-256 key held by the function (what the signing-key secret gave every verifier too), the new one with
`kms:Sign` on an ECC_NIST_P256 key (vaultpay.auth.adapters.KmsTokenSigner) through moto's KMS on loopback,
as the local cloud runs it. Also timed: a verifier's first `kms:GetPublicKey` (once per container).
On AWS, KMS Sign is a network call inside the region; read the moto figure as the local cost, not AWS's.

    .venv/bin/python bench/token_signing_bench.py --out bench/token-signing-results.md [--n 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its siblings are modules
from localcloud_bench import endpoint_client, percentile, timed
from runinfo import heading, publish

from localcloud import services
from vaultpay.auth.adapters import KmsPublicKeys, KmsTokenSigner
from vaultpay.auth.tokens import SigningKeySet, TokenSigner, generate_signing_key_document, issue_access_token


def _issue(signer: TokenSigner) -> Callable[[], object]:
    return lambda: issue_access_token(
        signer,
        user_id="usr_bench",
        role="customer",
        device_id="d-1",
        issuer="i",
        audience="a",
        now=time.time(),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/token-signing-results.md"))
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    port = services.free_port()
    with tempfile.TemporaryDirectory() as tmp:
        moto = services.moto_server(port, port, Path(tmp))
        moto.start()
        try:
            moto.wait_ready()
            kms = endpoint_client("kms", f"http://127.0.0.1:{port}")
            arn = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
            memory = SigningKeySet.from_secret(generate_signing_key_document())
            kms_signer = KmsTokenSigner(kms, arn)
            for signer in (memory, kms_signer):  # warm both: the first KMS call pays the client's set-up
                _issue(signer)()
            old, new = [], []
            for _ in range(args.n // 50):  # interleaved, so a noisy moment hits both paths
                old += timed(_issue(memory), 50)
                new += timed(_issue(kms_signer), 50)
            public_key_ms = timed(lambda: KmsPublicKeys(kms, [arn]).public_keys_by_kid(), 20)
        finally:
            moto.stop()
    figures = {
        "n": len(old),
        "memory_key_p50_ms": statistics.median(old),
        "memory_key_p99_ms": percentile(old, 99),
        "kms_sign_p50_ms": statistics.median(new),
        "kms_sign_p99_ms": percentile(new, 99),
        "added_p50_ms": statistics.median(new) - statistics.median(old),
        "get_public_key_p50_ms": statistics.median(public_key_ms),
    }
    lines = [
        *heading(
            "Access-token signing: KMS vs a key in memory",
            f".venv/bin/python bench/token_signing_bench.py --n {args.n}",
        ),
        "KMS is moto's, on loopback.",
        "",
        "| issue_access_token | p50 ms | p99 ms |",
        "|---|---:|---:|",
        f"| key in memory (before) | {figures['memory_key_p50_ms']:.2f} "
        f"| {figures['memory_key_p99_ms']:.2f} |",
        f"| kms:Sign (now) | {figures['kms_sign_p50_ms']:.2f} | {figures['kms_sign_p99_ms']:.2f} |",
        "",
        f"Added per login (MFA verify) or refresh: {figures['added_p50_ms']:.2f} ms at p50. A verifier's "
        f"kms:GetPublicKey, once per container: {figures['get_public_key_p50_ms']:.2f} ms p50.",
        "",
    ]
    publish(args.out, "token-signing", figures, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

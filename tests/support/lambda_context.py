"""A stand-in for the Lambda context object: the parts the handlers and Powertools read."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FakeLambdaContext:
    """The context of an invocation of `function_name` with `remaining_ms` left (Powertools' logger reads its
    names and ids, the idempotency utility and the consumers its remaining time)."""

    function_name: str = "vaultpay-test-Function"
    remaining_ms: int = 30_000
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = "2f1d9c6e-0000-4000-8000-000000000000"
    log_stream_name: str = "test"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:000000000000:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms

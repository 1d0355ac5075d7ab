"""What the local cloud runs, as plain data resolved from template.yaml (the contract between its parts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

REGION = "us-east-1"
# LocalStack's account id, so ARNs look the same on both local clouds (moto is started with MOTO_ACCOUNT_ID).
ACCOUNT_ID = "000000000000"


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"


def function_name_from(name_or_arn: str) -> str:
    """The bare function name from a name, a full or partial ARN, or either with a qualifier."""
    parts = name_or_arn.split(":")
    if name_or_arn.startswith("arn:"):
        # arn:aws:lambda:region:account:function:name[:qualifier]
        return parts[6] if len(parts) > 6 else parts[-1]
    if len(parts) >= 3 and parts[1] == "function":
        return parts[2]  # account:function:name[:qualifier]
    return parts[0]


@dataclass(frozen=True)
class Interpreter:
    """The Python a function's workers run on."""

    executable: str
    version: str  # "3.13.0"
    # True: the worker sees only the standard library, its code and its layers (a function from `sam build`'s
    # output on the template's runtime); False: the interpreter's own site-packages too (the source tree,
    # whose third-party packages come from the venv).
    isolated: bool


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str  # physical name: FunctionName, or "<stack>-<LogicalId>"
    handler: str  # "app.handler" -> module app, attribute handler
    code_dir: Path  # CodeUri, absolute
    layer_dirs: tuple[Path, ...]  # each layer's ContentUri, absolute; the runtime adds dir and dir/python
    runtime: str  # "python3.13"
    timeout_s: int
    memory_mb: int
    environment: dict[str, str]  # Globals + the function's own, every intrinsic resolved
    reserved_concurrency: int | None = None
    log_group: str = ""  # "/aws/lambda/<name>" when empty
    interpreter: Interpreter | None = None  # None: the runtime's own Python, site-packages included
    # Bumped when the code changes under a running cloud (localcloud.watch): a different spec retires the
    # function's warm workers, so the next invoke imports the new code.
    revision: int = 0

    @property
    def arn(self) -> str:
        return function_arn(self.name)

    @property
    def log_group_name(self) -> str:
        return self.log_group or f"/aws/lambda/{self.name}"


@dataclass(frozen=True)
class InvokeResult:
    """What the Lambda Invoke API answers, in the shape of its HTTP response."""

    status: int  # 200 sync, 202 Event, 204 DryRun
    payload: bytes
    function_error: str | None = None  # "Unhandled" when the function raised or timed out
    log_result: str | None = None  # base64 of the last 4 KB of the log when LogType=Tail
    request_id: str = ""


class FunctionNotFound(LookupError):
    """No function of that name is deployed in the local cloud."""


class Invoker(Protocol):
    """Invokes a deployed function by name or ARN; implemented by the Lambda runtime."""

    async def invoke(
        self,
        function: str,
        payload: bytes,
        *,
        invocation_type: str = "RequestResponse",  # or "Event" / "DryRun"
        log_type: str = "None",  # or "Tail"
    ) -> InvokeResult: ...


@dataclass(frozen=True)
class TableSpec:
    logical_id: str
    name: str
    properties: dict[str, Any]  # AWS::DynamoDB::Table properties, intrinsics resolved

    @property
    def arn(self) -> str:
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{self.name}"


@dataclass(frozen=True)
class StreamMappingSpec:
    """An AWS::Lambda::EventSourceMapping on a DynamoDB stream."""

    logical_id: str
    function_name: str
    table_name: str
    batch_size: int = 100
    starting_position: str = "LATEST"  # or TRIM_HORIZON
    filter_patterns: tuple[dict[str, Any], ...] = ()  # FilterCriteria.Filters[].Pattern, parsed JSON
    report_batch_item_failures: bool = False  # FunctionResponseTypes has ReportBatchItemFailures
    maximum_retry_attempts: int = -1  # -1: until the record expires, as AWS
    bisect_on_error: bool = False
    on_failure_queue_arn: str | None = None  # DestinationConfig.OnFailure.Destination (SQS)
    maximum_batching_window_s: int = 0
    enabled: bool = True


@dataclass(frozen=True)
class ScheduleSpec:
    """An AWS::Events::Rule (or AWS::Scheduler::Schedule) with a schedule expression and a Lambda target."""

    logical_id: str
    name: str
    expression: str  # "rate(5 minutes)" or "cron(0/5 * * * ? *)"
    function_name: str
    input: str | None = None  # the target's constant Input (JSON text), else a scheduled-event payload
    enabled: bool = True


@dataclass(frozen=True)
class AuthorizerSpec:
    name: str
    function_name: str
    kind: str  # "request" or "token"
    identity_sources: tuple[str, ...]  # e.g. ("method.request.header.Authorization",)
    ttl_s: int = 300


@dataclass(frozen=True)
class RouteSpec:
    method: str  # "GET", "POST", ..., or "ANY"
    resource: str  # API Gateway resource path: "/v1/accounts/{account_id}", "/{proxy+}"
    function_name: str | None  # None for a MOCK/other integration the emulator cannot serve
    authorizer: AuthorizerSpec | None = None


@dataclass(frozen=True)
class GatewayResponseSpec:
    """AWS::ApiGateway::GatewayResponse, e.g. UNAUTHORIZED / ACCESS_DENIED / DEFAULT_4XX."""

    response_type: str
    status_code: int | None
    response_parameters: dict[str, str] = field(default_factory=dict)  # gatewayresponse.header.X -> "'v'"
    response_templates: dict[str, str] = field(default_factory=dict)  # content type -> template


@dataclass(frozen=True)
class ApiSpec:
    logical_id: str
    rest_api_id: str
    stage_name: str
    routes: tuple[RouteSpec, ...]
    gateway_responses: tuple[GatewayResponseSpec, ...] = ()
    binary_media_types: tuple[str, ...] = ()
    throttle_rate: float | None = None  # requests/s, stage MethodSettings
    throttle_burst: int | None = None


@dataclass(frozen=True)
class SubscriptionFilterSpec:
    """An AWS::Logs::SubscriptionFilter whose destination is a Lambda function."""

    logical_id: str
    name: str
    log_group: str
    pattern: str
    function_name: str


@dataclass
class Deployment:
    """Everything provisioned from one template."""

    functions: dict[str, FunctionSpec] = field(default_factory=dict)  # by physical name
    tables: dict[str, TableSpec] = field(default_factory=dict)  # by physical name
    stream_mappings: list[StreamMappingSpec] = field(default_factory=list)
    schedules: list[ScheduleSpec] = field(default_factory=list)
    apis: list[ApiSpec] = field(default_factory=list)
    subscriptions: list[SubscriptionFilterSpec] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    physical_ids: dict[str, str] = field(default_factory=dict)  # logical id -> physical id

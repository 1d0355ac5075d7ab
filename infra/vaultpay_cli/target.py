"""Where a `vaultpay` command that calls AWS goes: one rule for every command, the options that set it, the
boto3 clients for it, and the confirmation a write to anything but this machine needs.

The rule (README, "The CLI and its target"), first match wins:

1. flags: `--endpoint-url` → that endpoint; `--profile` or `--region` → AWS;
2. the environment: `AWS_ENDPOINT_URL` → that endpoint; `AWS_PROFILE` or `AWS_REGION` → AWS;
3. the running local cloud (its state file in --state-dir, VAULTPAY_STATE_DIR or the checkout's .localcloud);
4. AWS, with boto3's own configuration (its default profile and region).

An endpoint on this machine (loopback) counts as local: the local cloud, DynamoDB Local, LocalStack. The stack
(`--stack`, else VAULTPAY_STACK) names where resources are looked up (CloudFormation's ListStackResources); it
never chooses the target. Clients for a local target come from localstack-client (`local_client`), the one way
the CLI, the tests' support code and the benches make them.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import typer

from vaultpay_cli.context import LOCAL_REGION, StateDir, aws_errors, fail, local_state, state_dir_or_default

__all__ = [
    "EndpointUrl",
    "Profile",
    "Region",
    "Stack",
    "StateDir",
    "Target",
    "Yes",
    "client_config",
    "confirm_write_to",
    "is_loopback",
    "local_client",
    "local_resource",
    "named_after",
    "resolve_target",
]

Profile = Annotated[str | None, typer.Option("--profile", help="AWS profile (else AWS_PROFILE); means AWS")]
Region = Annotated[str | None, typer.Option("--region", help="AWS region (else AWS_REGION); means AWS")]
EndpointUrl = Annotated[
    str | None,
    typer.Option("--endpoint-url", help="AWS endpoint (else AWS_ENDPOINT_URL, else the local cloud's)"),
]
Stack = Annotated[
    str | None,
    typer.Option("--stack", help="CloudFormation stack whose resources to use (else VAULTPAY_STACK)"),
]
Yes = Annotated[
    bool, typer.Option("--yes", "-y", help="Write to a target off this machine without asking first")
]

Kind = Literal["local cloud", "endpoint", "AWS"]


def client_config(service: str) -> Any:
    """Bounded waits and a few retries, so an unreachable target fails in seconds. A Lambda invoke is never
    retried (a second create-user or replay is not the same as the first) and may run its full 15 minutes."""
    from botocore.config import Config

    if service == "lambda":
        return Config(
            connect_timeout=5, read_timeout=905, retries={"mode": "standard", "total_max_attempts": 1}
        )
    return Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 3})


# A throttled invoke (TooManyRequestsException: reserved concurrency or the account's limit) never ran the
# function, so it alone is safe to try again; every other failure of an invoke is the caller's to judge.
THROTTLED_INVOKE_ATTEMPTS = 5


def invoke_when_not_throttled(client: Any, **request: Any) -> Any:
    """`client.invoke(**request)`, tried again with a growing pause while Lambda throttles it."""
    import time

    from botocore.exceptions import ClientError

    for attempt in range(1, THROTTLED_INVOKE_ATTEMPTS + 1):
        try:
            return client.invoke(**request)
        except ClientError as exc:
            throttled = exc.response.get("Error", {}).get("Code") == "TooManyRequestsException"
            if not throttled or attempt == THROTTLED_INVOKE_ATTEMPTS:
                raise
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable: the last attempt returns or raises")


def is_loopback(url: str) -> bool:
    """True when `url` names this machine (127.0.0.0/8, ::1, localhost): an emulator, not a cloud."""
    host = urlsplit(url if "://" in url else f"//{url}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_client(service: str, endpoint_url: str, *, region: str = LOCAL_REGION, **kwargs: Any) -> Any:
    """A boto3 client for `service` on a LocalStack-compatible edge at `endpoint_url` (the local cloud's,
    LocalStack, moto or DynamoDB Local), with the test credentials every emulator accepts."""
    kwargs.setdefault("config", client_config(service))
    return _edge_session(endpoint_url, region).client(service, **kwargs)


def local_resource(service: str, endpoint_url: str, *, region: str = LOCAL_REGION) -> Any:
    """A boto3 resource on the edge at `endpoint_url`, made as `local_client` makes a client."""
    return _edge_session(endpoint_url, region).resource(service)


def _edge_session(endpoint_url: str, region: str) -> Any:
    """localstack-client's session for the edge. It takes the edge from AWS_ENDPOINT_URL when that is set,
    which would send a client meant for one emulator to another (the tests set it for the functions they
    run), and its `localstack_host` is host:port without a scheme (an IPv6 host fails to parse): the edge
    asked for, scheme and all, is put in every service's slot instead."""
    from localstack_client.session import Session

    session: Any = Session(
        aws_access_key_id="test",
        aws_secret_access_key="test",  # noqa: S106 - the emulators accept any credentials
        region_name=region,
    )
    session._service_endpoint_mapping = dict.fromkeys(session._service_endpoint_mapping, endpoint_url)
    return session


@dataclass
class Target:
    """The resolved target of one command: what it is, why (`chosen_by`), and its clients."""

    kind: Kind
    chosen_by: str
    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None
    stack: str | None = None
    state: dict[str, Any] | None = None
    state_dir: Path | None = None
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    _resources: dict[str, str] | None = field(default=None, repr=False)
    _account: str | None = field(default=None, repr=False)

    @property
    def is_local(self) -> bool:
        """The local cloud or an emulator on this machine: writes there need no confirmation."""
        return self.kind == "local cloud" or (
            self.endpoint_url is not None and is_loopback(self.endpoint_url)
        )

    def client(self, service: str) -> Any:
        """A boto3 client for `service` on this target (one per service and command)."""
        if service not in self._clients:
            self._clients[service] = self._new_client(service)
        return self._clients[service]

    def _new_client(self, service: str) -> Any:
        if self.endpoint_url is not None and self.is_local:
            return local_client(service, self.endpoint_url, region=self.region or LOCAL_REGION)
        import boto3

        with aws_errors("create a client"):
            session: Any = boto3.session.Session(profile_name=self.profile, region_name=self.region)
            extra = {"endpoint_url": self.endpoint_url} if self.endpoint_url else {}
            return session.client(service, config=client_config(service), **extra)

    # ---- describing it ---------------------------------------------------------------------------------
    def account(self) -> str:
        """The AWS account the credentials belong to (STS GetCallerIdentity, asked once)."""
        if self._account is None:
            with aws_errors("ask STS which account the credentials belong to"):
                self._account = str(self.client("sts").get_caller_identity()["Account"])
        return self._account

    def caller_arn(self) -> str:
        """Who the credentials belong to (the IAM principal's ARN), as the admin's event records it."""
        with aws_errors("ask STS who the credentials belong to"):
            return str(self.client("sts").get_caller_identity()["Arn"])

    def describe(self) -> str:
        """One line naming the target, as printed on stderr before a command reads or writes."""
        stack = f", stack {self.stack}" if self.stack else ""
        if self.kind == "local cloud":
            where = f" (state {self.state_dir})" if self.state_dir else ""
            return f"local cloud at {self.endpoint_url}{where}{stack}"
        if self.kind == "endpoint":
            region = self.client("sts").meta.region_name
            return f"endpoint {self.endpoint_url} ({self.chosen_by}), region {region}{stack}"
        region = self.region or self.client("sts").meta.region_name
        profile = f", profile {self.profile}" if self.profile else ", default credentials"
        return f"AWS account {self.account()}{profile}, region {region}{stack} ({self.chosen_by})"

    def announce(self) -> None:
        """Print the target on stderr, so stdout stays the command's table or JSON."""
        typer.echo(f"target: {self.describe()}", err=True)

    def confirm_write(self, action: str, *, yes: bool) -> None:
        """Announce the target and confirm a write there (confirm_write_to)."""
        confirm_write_to(self.describe(), local=self.is_local, action=action, yes=yes)

    # ---- its resources ---------------------------------------------------------------------------------
    def stack_resources(self) -> dict[str, str]:
        """The stack's logical id → physical id (name, or ARN for a state machine), from CloudFormation;
        empty without a stack or on the local cloud (which names resources `<stack>-<LogicalId>`)."""
        if self._resources is None:
            self._resources = {}
            if self.stack and self.kind != "local cloud":
                cloudformation = self.client("cloudformation")
                with aws_errors(f"list the resources of stack {self.stack}"):
                    pages = cloudformation.get_paginator("list_stack_resources").paginate(
                        StackName=self.stack
                    )
                    for page in pages:
                        for resource in page["StackResourceSummaries"]:
                            self._resources[resource["LogicalResourceId"]] = resource["PhysicalResourceId"]
        return self._resources

    def resource(self, logical_id: str) -> str | None:
        """The physical id of the stack's `logical_id`; None when no stack names it (the caller then finds
        it by its name, as the local cloud and `sam deploy` name resources after their logical ids)."""
        if self.kind == "local cloud":
            deployed = self.local_functions(logical_id)
            return deployed[0] if len(deployed) == 1 else None  # two stacks' namesakes: never a guess
        found = self.stack_resources().get(logical_id)
        if self.stack and found is None:
            raise fail(f"Stack {self.stack} has no resource {logical_id}.", 2)
        return found

    def local_functions(self, logical_id: str) -> list[str]:
        """The local cloud's functions deployed as `logical_id` (in --stack, when given), from its state."""
        functions = ((self.state or {}).get("functions") or {}).items()
        return sorted(
            str(name)
            for name, info in functions
            if info.get("logical_id") == logical_id and self.in_stack(name)
        )

    def function_name(self, logical_id: str) -> str:
        """The deployed function `logical_id` names here: the stack's resource, the local cloud's state, else
        the one function ListFunctions shows under that name; exits 2 when there is none or several."""
        found = self.resource(logical_id)
        if found:
            return found
        if self.kind == "local cloud":
            found = ", ".join(self.local_functions(logical_id)) or "none"
            raise fail(f"Pass --stack or --function-name: the local cloud's {logical_id}: {found}.", 2)
        names: list[str] = []
        with aws_errors("list the functions"):
            for page in self.client("lambda").get_paginator("list_functions").paginate():
                names.extend(str(f["FunctionName"]) for f in page["Functions"])
        matching = [n for n in names if named_after(n, logical_id) and self.in_stack(n)]
        if len(matching) != 1:
            listed = ", ".join(matching) or "none"
            raise fail(f"Pass --stack or --function-name: functions deployed as {logical_id}: {listed}.", 2)
        return matching[0]

    def in_stack(self, physical_name: str) -> bool:
        """Whether a resource found by name belongs to --stack (always, without one): CloudFormation and the
        local cloud both name resources `<stack>-<LogicalId>[-<suffix>]`."""
        return not self.stack or physical_name.startswith(f"{self.stack}-")


def confirm_write_to(where: str, *, local: bool, action: str, yes: bool) -> None:
    """Print `target: <where>` on stderr; before a write to anything off this machine, ask (or take --yes).
    Without a terminal to ask on and without --yes, refuse: a script must say it means it. The NATS commands
    (ops dlq replay, ops events apply-config) confirm through here too."""
    typer.echo(f"target: {where}", err=True)
    if local:
        return
    if yes:
        typer.echo(f"{action[0].upper()}{action[1:]}: confirmed by --yes.", err=True)
        return
    if not sys.stdin.isatty():
        raise fail(
            f"Refusing to {action} on {where} without confirmation: no terminal to ask on. "
            "Pass --yes to write there.",
            2,
        )
    if not typer.confirm(f"{action[0].upper()}{action[1:]} on {where}?", default=False, err=True):
        raise fail("Nothing done.", 1)


def named_after(physical_name: str, logical_id: str) -> bool:
    """The names a deploy gives a resource: `<stack>-<LogicalId>` (the local cloud),
    `<stack>-<LogicalId>-<suffix>` (CloudFormation), or the logical id itself."""
    return (
        physical_name == logical_id
        or physical_name.endswith(f"-{logical_id}")
        or f"-{logical_id}-" in physical_name
    )


def resolve_target(
    *,
    profile: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    stack: str | None = None,
    state_dir: Path | None = None,
) -> Target:
    """The module's rule: flags, then the environment, then the running local cloud, then AWS."""
    stack = stack or os.environ.get("VAULTPAY_STACK") or None
    env_region = os.environ.get("AWS_REGION") or None
    where = state_dir_or_default(state_dir)
    state = local_state(state_dir)
    common: dict[str, Any] = {"stack": stack, "state_dir": where}
    if endpoint_url:
        return _endpoint(endpoint_url, "--endpoint-url", profile, region or env_region, state, common)
    if profile or region:
        chosen_by = "--profile" if profile else "--region"
        return Target("AWS", chosen_by, profile=profile, region=region or env_region, **common)
    env_endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if env_endpoint:
        return _endpoint(env_endpoint, "AWS_ENDPOINT_URL", None, env_region, state, common)
    env_profile = os.environ.get("AWS_PROFILE") or None
    if env_profile or env_region:
        chosen_by = "AWS_PROFILE" if env_profile else "AWS_REGION"
        return Target("AWS", chosen_by, profile=env_profile, region=env_region, **common)
    if state is not None:
        return Target("local cloud", "state file", str(state["endpoints"]["edge"]), region=LOCAL_REGION,
                      state=state, **common)  # fmt: skip
    return Target("AWS", "no local cloud running", **common)


def _endpoint(
    url: str,
    chosen_by: str,
    profile: str | None,
    region: str | None,
    state: dict[str, Any] | None,
    common: dict[str, Any],
) -> Target:
    edge = (state or {}).get("endpoints", {}).get("edge")
    if edge and url.rstrip("/") == str(edge).rstrip("/"):
        return Target("local cloud", chosen_by, str(edge), region=LOCAL_REGION, state=state, **common)
    # An emulator is deployed in some region like AWS: boto3's own fallback, AWS_DEFAULT_REGION, applies too.
    region = region or os.environ.get("AWS_DEFAULT_REGION") or None
    return Target("endpoint", chosen_by, url, profile=profile, region=region, **common)

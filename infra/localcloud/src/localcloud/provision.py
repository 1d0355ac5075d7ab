"""Creates every resource of a translated template in the local cloud and describes what it deployed."""

from __future__ import annotations

import contextlib
import json
import secrets
import string
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from localcloud.spec import (
    ACCOUNT_ID,
    REGION,
    ApiSpec,
    AuthorizerSpec,
    Deployment,
    FunctionSpec,
    GatewayResponseSpec,
    RouteSpec,
    ScheduleSpec,
    StreamMappingSpec,
    SubscriptionFilterSpec,
    TableSpec,
    function_arn,
    function_name_from,
)
from localcloud.template import Resolver, TemplateError, Translated, local_id

ClientFactory = Callable[[str], Any]
# Every published version of a local function is its one deployed code, so each is version 1.
LOCAL_VERSION = "1"

# Resource types the local cloud creates or serves itself.
PROVISIONED = frozenset(
    {
        "AWS::Lambda::Function",
        "AWS::Lambda::Version",
        "AWS::Lambda::Alias",
        "AWS::Lambda::LayerVersion",
        "AWS::Lambda::EventSourceMapping",
        "AWS::IAM::Role",
        "AWS::ApiGateway::RestApi",
        "AWS::ApiGateway::Stage",
        "AWS::ApiGateway::GatewayResponse",
        "AWS::DynamoDB::Table",
        "AWS::Events::Rule",
        "AWS::StepFunctions::StateMachine",
        "AWS::SQS::Queue",
        "AWS::Logs::LogGroup",
        "AWS::Logs::SubscriptionFilter",
        "AWS::KMS::Key",
        "AWS::KMS::Alias",
        "AWS::SecretsManager::Secret",
        "AWS::SSM::Parameter",
        "AWS::S3::Bucket",
        "AWS::SNS::Topic",
    }
)
# Types that only grant or wire things the local cloud does not enforce: accepted, nothing to create.
LOCAL_NOOP = frozenset(
    {
        "AWS::Lambda::Permission",
        "AWS::ApiGateway::Deployment",
        "AWS::ApiGateway::Account",
        "AWS::Lambda::LayerVersionPermission",
        "AWS::IAM::ManagedPolicy",
        "AWS::SNS::TopicPolicy",
    }
)
# Types that exist only on AWS (operations tooling); the local cloud skips them and says so.
CLOUD_ONLY = frozenset(
    {
        "AWS::CloudWatch::Alarm",
        "AWS::CloudWatch::Dashboard",
        "AWS::ApiGateway::UsagePlan",
        "AWS::ApiGateway::UsagePlanKey",
        "AWS::ApiGateway::ApiKey",
        "AWS::ApiGateway::BasePathMapping",
        "AWS::ApiGateway::DomainName",
        "AWS::CodeDeploy::Application",  # gradual deployments: locally every alias runs the one code
        "AWS::CodeDeploy::DeploymentGroup",
        "AWS::EC2::VPCEndpoint",  # networking: loopback needs none
        "AWS::SNS::Subscription",  # e-mail, SMS, HTTPS: delivered outside this machine
        "AWS::WAFv2::WebACL",  # the edge's firewall: the local API answers loopback only
        "AWS::WAFv2::WebACLAssociation",
    }
)
SUPPORTED = PROVISIONED | LOCAL_NOOP | CLOUD_ONLY
CUSTOM_RESOURCE = "AWS::CloudFormation::CustomResource"


def is_supported(resource_type: str) -> bool:
    """Custom resources (Custom::Name) run their Lambda locally as CloudFormation would."""
    return (
        resource_type in SUPPORTED or resource_type == CUSTOM_RESOURCE or resource_type.startswith("Custom::")
    )


class Provisioner:
    """Walks the resources once; a reference to a resource not yet created creates it first."""

    def __init__(
        self,
        translated: Translated,
        parameters: dict[str, str],
        clients: ClientFactory,
        *,
        stack_name: str = "vaultpay-local",
        custom_resource_responses: str = "",
        on_function: Callable[[FunctionSpec], None] | None = None,
        previous: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.t = translated
        self.resources: dict[str, Any] = translated.template["Resources"]
        self.clients = clients
        self.stack = stack_name
        # Where custom-resource functions PUT their answer: the edge keeps it for us to read back.
        self.custom_resource_responses = custom_resource_responses.rstrip("/")
        # Called as each function is created, so a custom resource can invoke it during provisioning.
        self.on_function = on_function
        self.deployment = Deployment()
        self.skipped: list[tuple[str, str]] = []  # (logical id, type) of cloud-only resources
        # The stack's record, as CloudFormation keeps one: what an earlier start of this state created whose
        # identity is not derived from the template (KMS key ids) and the template values it wrote (SSM
        # parameters). `records` is what this run leaves for the next one.
        self.previous: dict[str, dict[str, Any]] = dict(previous or {})
        self.records: dict[str, dict[str, Any]] = {}
        self._attrs: dict[str, dict[str, Any]] = {}
        self._refs: dict[str, Any] = {}
        self._in_progress: set[str] = set()
        self._layer_dirs: dict[str, Path] = {}
        self._stages: dict[str, dict[str, Any]] = {}
        self._gateway_responses: dict[str, list[GatewayResponseSpec]] = {}
        self.resolver = Resolver(
            translated.template, parameters, ref=self._ref, get_att=self._get_att, stack_name=stack_name
        )

    # ---- walking --------------------------------------------------------------------------------
    def run(self) -> Deployment:
        unknown = sorted({r["Type"] for r in self.resources.values() if not is_supported(r["Type"])})
        if unknown:
            raise TemplateError(
                f"resource types neither provisioned locally nor listed as cloud-only: {', '.join(unknown)}"
            )
        for logical_id in self.resources:
            self._provision(logical_id)
        for logical_id, resource in self.resources.items():
            if resource["Type"] == "AWS::ApiGateway::RestApi" and self._active(logical_id):
                self.deployment.apis.append(self._api_spec(logical_id, resource))
        self.deployment.outputs = {
            name: self.resolver.resolve(out.get("Value"))
            for name, out in self.t.template.get("Outputs", {}).items()
            if "Condition" not in out or self.resolver.condition(out["Condition"])
        }
        return self.deployment

    def _active(self, logical_id: str) -> bool:
        cond = self.resources[logical_id].get("Condition")
        return cond is None or self.resolver.condition(cond)

    def _provision(self, logical_id: str) -> None:
        if logical_id in self._attrs or not self._active(logical_id):
            return
        if logical_id in self._in_progress:
            raise TemplateError(f"circular reference through {logical_id}")
        self._in_progress.add(logical_id)
        resource = self.resources[logical_id]
        for dep in _as_list(resource.get("DependsOn")):
            self._provision(dep)
        rtype = resource["Type"]
        if rtype in CLOUD_ONLY:
            # Not resolved either: their properties may name attributes only AWS has (a web ACL's ARN).
            self.skipped.append((logical_id, rtype))
            self._attrs[logical_id] = {}
            self._in_progress.discard(logical_id)
            return
        props = self.resolver.resolve(resource.get("Properties", {}))
        handler: Callable[[str, dict[str, Any]], dict[str, Any]] | None
        if rtype == CUSTOM_RESOURCE or rtype.startswith("Custom::"):
            handler = self._create_custom_resource
        else:
            handler = getattr(self, "_create_" + rtype.replace("AWS::", "").replace("::", "_"), None)
        attrs: dict[str, Any] = {}
        if handler is not None:
            try:
                attrs = handler(logical_id, props) or {}
            except (BotoCoreError, ClientError) as exc:
                raise TemplateError(f"{logical_id} ({rtype}) could not be created locally: {exc}") from exc
        self._attrs[logical_id] = attrs
        self._in_progress.discard(logical_id)
        if "Ref" in attrs:
            self.deployment.physical_ids[logical_id] = str(attrs["Ref"])

    # ---- references: deterministic names answer at once; others create the resource first ----
    def _ref(self, logical_id: str) -> Any:
        if logical_id not in self.resources:
            raise TemplateError(f"Ref to unknown resource or parameter {logical_id}")
        quick = self._deterministic(logical_id)
        if quick is not None and "Ref" in quick:
            return quick["Ref"]
        self._provision(logical_id)
        return self._attrs[logical_id].get("Ref", logical_id)

    def _get_att(self, logical_id: str, attr: str) -> Any:
        if logical_id not in self.resources:
            raise TemplateError(f"GetAtt on unknown resource {logical_id}")
        quick = self._deterministic(logical_id)
        if quick is not None and attr in quick:
            return quick[attr]
        self._provision(logical_id)
        try:
            return self._attrs[logical_id][attr]
        except KeyError:
            raise TemplateError(f"attribute {logical_id}.{attr} is not available locally") from None

    def _deterministic(self, logical_id: str) -> dict[str, Any] | None:
        resource = self.resources[logical_id]
        rtype, props = resource["Type"], resource.get("Properties", {})
        if rtype == "AWS::Lambda::Function":
            name = self._name(props.get("FunctionName"), logical_id, 64)
            return {"Ref": name, "Arn": function_arn(name)}
        if rtype == "AWS::ApiGateway::RestApi":
            return {"Ref": local_id(logical_id), "RootResourceId": local_id(logical_id + "/")}
        if rtype == "AWS::StepFunctions::StateMachine":
            name = self._name(props.get("StateMachineName"), logical_id, 80)
            arn = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{name}"
            return {"Ref": arn, "Arn": arn, "Name": name}
        if rtype == "AWS::IAM::Role":
            name = self._name(props.get("RoleName"), logical_id, 64)
            return {"Ref": name, "Arn": f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"}
        if rtype == "AWS::DynamoDB::Table" and isinstance(props.get("TableName", logical_id), str):
            name = props.get("TableName") or self._name(None, logical_id, 255)
            return {"Ref": name, "Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"}
        return None

    def _name(self, given: Any, logical_id: str, limit: int) -> str:
        if given is not None:
            return str(self.resolver.resolve(given))
        return f"{self.stack}-{logical_id}"[:limit]

    # ---- resource handlers ------------------------------------------------------------------------
    def _create_Lambda_LayerVersion(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        name = props.get("LayerName") or logical_id
        arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:{name}:1"
        self._layer_dirs[arn] = self._code_dir(logical_id, props.get("Content", {}))
        return {"Ref": arn, "LayerVersionArn": arn}

    def _code_dir(self, logical_id: str, code: dict[str, Any]) -> Path:
        key = str(code.get("S3Key", ""))
        if key in self.t.code_dirs:
            return self.t.code_dirs[key]
        raise TemplateError(f"{logical_id}: code is not a local path (S3 code cannot run locally)")

    def _create_Lambda_Function(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        quick = self._deterministic(logical_id) or {}
        name = str(quick["Ref"])
        layer_dirs = []
        for layer in props.get("Layers", []):
            if layer not in self._layer_dirs:
                raise TemplateError(f"{logical_id}: layer {layer} is not a layer of this template")
            layer_dirs.append(self._layer_dirs[layer])
        env = {k: _env_text(v) for k, v in props.get("Environment", {}).get("Variables", {}).items()}
        concurrency = props.get("ReservedConcurrentExecutions")
        log_group = props.get("LoggingConfig", {}).get("LogGroup", "")
        spec = self.deployment.functions[name] = FunctionSpec(
            logical_id=logical_id,
            name=name,
            handler=str(props.get("Handler", "app.handler")),
            code_dir=self._code_dir(logical_id, props.get("Code", {})),
            layer_dirs=tuple(layer_dirs),
            runtime=str(props.get("Runtime", "python3.13")),
            timeout_s=int(props.get("Timeout", 3)),
            memory_mb=int(props.get("MemorySize", 128)),
            environment=env,
            reserved_concurrency=int(concurrency) if concurrency is not None else None,
            log_group=str(log_group),
        )
        if self.on_function is not None:
            self.on_function(spec)
        return quick

    # A version and an alias are names for the one code the runtime deployed: an invoke of `name:live`, of
    # `name:1` or of their ARNs runs the function, and its context shows the qualified ARN, as on AWS.
    def _create_Lambda_Version(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        arn = f"{function_arn(function_name_from(str(props['FunctionName'])))}:{LOCAL_VERSION}"
        return {"Ref": arn, "Version": LOCAL_VERSION, "FunctionArn": arn}

    def _create_Lambda_Alias(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        arn = f"{function_arn(function_name_from(str(props['FunctionName'])))}:{props['Name']}"
        return {"Ref": arn, "AliasArn": arn}

    def _create_IAM_Role(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        quick = self._deterministic(logical_id) or {}
        iam = self.clients("iam")
        name = quick["Ref"]
        with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
            iam.create_role(
                RoleName=name,
                Path=props.get("Path", "/"),
                AssumeRolePolicyDocument=json.dumps(props.get("AssumeRolePolicyDocument", {})),
            )
        for policy in props.get("Policies", []):
            # IAM defaults a missing Version to 2008-10-17; moto insists on one, so state the modern one.
            document = {"Version": "2012-10-17", **policy["PolicyDocument"]}
            iam.put_role_policy(
                RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document)
            )
        return quick

    def _create_Logs_LogGroup(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        logs = self.clients("logs")
        name = props.get("LogGroupName") or f"/{self.stack}/{logical_id}"
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=name)
        if "RetentionInDays" in props:
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
        return {"Ref": name, "Arn": f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{name}:*"}

    def _create_Logs_SubscriptionFilter(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        destination = str(props["DestinationArn"])
        if ":lambda:" not in destination:
            raise TemplateError(f"{logical_id}: only Lambda subscription destinations run locally")
        name = str(props.get("FilterName") or f"{self.stack}-{logical_id}")
        self.deployment.subscriptions.append(
            SubscriptionFilterSpec(
                logical_id=logical_id,
                name=name,
                log_group=str(props["LogGroupName"]),
                pattern=str(props.get("FilterPattern", "")),
                function_name=function_name_from(destination),
            )
        )
        return {"Ref": name}

    def _create_DynamoDB_Table(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        ddb = self.clients("dynamodb")
        name = str((self._deterministic(logical_id) or {})["Ref"])
        args: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        if args["BillingMode"] == "PROVISIONED":
            args["ProvisionedThroughput"] = _throughput(props.get("ProvisionedThroughput"))
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if props.get(key):
                indexes = [dict(i) for i in props[key]]
                if key == "GlobalSecondaryIndexes" and args["BillingMode"] == "PROVISIONED":
                    for index in indexes:
                        index["ProvisionedThroughput"] = _throughput(index.get("ProvisionedThroughput"))
                args[key] = indexes
        if "StreamSpecification" in props:
            args["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": props["StreamSpecification"]["StreamViewType"],
            }
        # A persistent local cloud (-dbPath) keeps its tables across restarts.
        with contextlib.suppress(ddb.exceptions.ResourceInUseException):
            ddb.create_table(**args)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and str(ttl.get("Enabled")).lower() == "true":
            try:
                ddb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
                )
            except ddb.exceptions.ClientError as exc:
                if "already enabled" not in str(exc):
                    raise
        table = ddb.describe_table(TableName=name)["Table"]
        self.deployment.tables[name] = TableSpec(logical_id=logical_id, name=name, properties=props)
        attrs = {"Ref": name, "Arn": table["TableArn"]}
        if table.get("LatestStreamArn"):
            attrs["StreamArn"] = table["LatestStreamArn"]
        return attrs

    def _create_Lambda_EventSourceMapping(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        source = str(props["EventSourceArn"])
        if ":dynamodb:" not in source or "/stream/" not in source:
            raise TemplateError(f"{logical_id}: only DynamoDB stream event sources run locally ({source})")
        table = source.split(":table/", 1)[1].split("/stream/", 1)[0]
        destination = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        patterns = tuple(
            json.loads(f["Pattern"]) if isinstance(f["Pattern"], str) else f["Pattern"]
            for f in props.get("FilterCriteria", {}).get("Filters", [])
        )
        self.deployment.stream_mappings.append(
            StreamMappingSpec(
                logical_id=logical_id,
                function_name=function_name_from(str(props["FunctionName"])),
                table_name=table,
                batch_size=int(props.get("BatchSize", 100)),
                starting_position=str(props.get("StartingPosition", "LATEST")),
                filter_patterns=patterns,
                report_batch_item_failures="ReportBatchItemFailures"
                in props.get("FunctionResponseTypes", []),
                maximum_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
                bisect_on_error=str(props.get("BisectBatchOnFunctionError", False)).lower() == "true",
                on_failure_queue_arn=str(destination) if destination else None,
                maximum_batching_window_s=int(props.get("MaximumBatchingWindowInSeconds", 0)),
                enabled=str(props.get("Enabled", True)).lower() == "true",
            )
        )
        return {"Ref": local_id(logical_id, 36)}

    def _create_Events_Rule(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        name = props.get("Name") or f"{self.stack}-{logical_id}"[:64]
        arn = f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{name}"
        expression = props.get("ScheduleExpression")
        if not expression:
            raise TemplateError(f"{logical_id}: only schedule rules run locally (no event patterns yet)")
        for target in props.get("Targets", []):
            target_arn = str(target["Arn"])
            if ":lambda:" not in target_arn:
                raise TemplateError(f"{logical_id}: schedule targets other than Lambda do not run locally")
            self.deployment.schedules.append(
                ScheduleSpec(
                    logical_id=logical_id,
                    name=name,
                    expression=str(expression),
                    function_name=function_name_from(target_arn),
                    input=target.get("Input"),
                    enabled=props.get("State", "ENABLED") == "ENABLED",
                )
            )
        return {"Ref": name, "Arn": arn}

    def _create_StepFunctions_StateMachine(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        quick = self._deterministic(logical_id) or {}
        definition = props.get("Definition")
        text = json.dumps(definition) if definition is not None else str(props.get("DefinitionString", ""))
        for key, value in props.get("DefinitionSubstitutions", {}).items():
            text = text.replace("${" + key + "}", str(value))
        sfn = self.clients("stepfunctions")
        args: dict[str, Any] = {
            "name": quick["Name"],
            "definition": text,
            "roleArn": str(props.get("RoleArn") or f"arn:aws:iam::{ACCOUNT_ID}:role/local-states"),
            "type": props.get("StateMachineType", "STANDARD"),
        }
        logging_configuration = _sfn_logging(props.get("LoggingConfiguration"))
        if logging_configuration is not None:
            args["loggingConfiguration"] = logging_configuration
        try:
            sfn.create_state_machine(**args)
        except sfn.exceptions.StateMachineAlreadyExists:
            if sfn.describe_state_machine(stateMachineArn=quick["Arn"])["type"] != args["type"]:
                # A type cannot change in place (CloudFormation replaces the machine): the saved executions
                # of the old type go with it, as on AWS.
                sfn.delete_state_machine(stateMachineArn=quick["Arn"])
                sfn.create_state_machine(**args)
            else:
                update = {
                    k: v for k, v in args.items() if k in ("definition", "roleArn", "loggingConfiguration")
                }
                sfn.update_state_machine(stateMachineArn=quick["Arn"], **update)
        return quick

    def _create_SQS_Queue(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        sqs = self.clients("sqs")
        fifo = str(props.get("FifoQueue", False)).lower() == "true"
        name = props.get("QueueName") or f"{self.stack}-{logical_id}"[: 75 if fifo else 80] + (
            ".fifo" if fifo and not props.get("QueueName") else ""
        )
        attributes = {
            k: json.dumps(v) if isinstance(v, dict) else str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in props.items()
            if k not in ("QueueName", "Tags")
        }
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        return {
            "Ref": url,
            "QueueUrl": url,
            "QueueName": name,
            "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}",
        }

    def _create_KMS_Key(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        kms = self.clients("kms")
        known = self.previous.get(logical_id, {}).get("KeyId")
        if known:
            # The key of an earlier start: its material encrypted what the tables hold, so it is kept.
            try:
                meta = kms.describe_key(KeyId=known)["KeyMetadata"]
            except kms.exceptions.NotFoundException:
                raise TemplateError(
                    f"{logical_id}: KMS key {known}, which an earlier start created and whose data keys "
                    "encrypted the stored data, is not in the saved state: that data cannot be read. "
                    "`vaultpay local up --fresh` starts over."
                ) from None
        else:
            meta = kms.create_key(
                Description=str(props.get("Description", logical_id)),
                KeyUsage=props.get("KeyUsage", "ENCRYPT_DECRYPT"),
                KeySpec=props.get("KeySpec", "SYMMETRIC_DEFAULT"),
            )["KeyMetadata"]
        self.records[logical_id] = {"Type": "AWS::KMS::Key", "KeyId": meta["KeyId"]}
        return {"Ref": meta["KeyId"], "KeyId": meta["KeyId"], "Arn": meta["Arn"]}

    def _create_KMS_Alias(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        kms = self.clients("kms")
        try:
            kms.create_alias(AliasName=props["AliasName"], TargetKeyId=props["TargetKeyId"])
        except kms.exceptions.AlreadyExistsException:
            kms.update_alias(AliasName=props["AliasName"], TargetKeyId=props["TargetKeyId"])
        return {"Ref": props["AliasName"]}

    def _create_SecretsManager_Secret(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        sm = self.clients("secretsmanager")
        name = props.get("Name") or f"{self.stack}-{logical_id}"
        value = props.get("SecretString")
        if value is None and "GenerateSecretString" in props:
            value = _generated_secret(props["GenerateSecretString"])
        try:
            arn = sm.create_secret(Name=name, SecretString=value or "")["ARN"]
        except sm.exceptions.ResourceExistsException:
            arn = sm.describe_secret(SecretId=name)["ARN"]
        return {"Ref": arn, "Id": arn}

    def _create_S3_Bucket(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        """A bucket on moto's S3, with the template's versioning and Object Lock (which moto enforces:
        a compliance-locked version cannot be deleted or overwritten before its retention ends)."""
        s3 = self.clients("s3")
        name = str(props.get("BucketName") or f"{self.stack}-{logical_id}".lower())[:63].rstrip("-")
        locked = str(props.get("ObjectLockEnabled", False)).lower() == "true"
        # An earlier start's bucket, with its objects, is kept (as a stack update keeps it).
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
            s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=locked)
        versioning = props.get("VersioningConfiguration")
        if versioning and not locked:  # Object Lock turns versioning on by itself
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning["Status"]})
        lock = props.get("ObjectLockConfiguration")
        if locked and lock:
            rule = lock.get("Rule", {}).get("DefaultRetention")
            configuration: dict[str, Any] = {"ObjectLockEnabled": "Enabled"}
            if rule:
                retention = {"Mode": rule["Mode"]}
                for unit in ("Days", "Years"):
                    if unit in rule:
                        retention[unit] = int(rule[unit])
                configuration["Rule"] = {"DefaultRetention": retention}
            s3.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration=configuration)
        return {
            "Ref": name,
            "Arn": f"arn:aws:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{REGION}.amazonaws.com",
        }

    def _create_SNS_Topic(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        """A topic on moto's SNS (alarms have no local action, but a tool may subscribe a queue to it)."""
        sns = self.clients("sns")
        name = str(props.get("TopicName") or f"{self.stack}-{logical_id}"[:256])
        attributes = {key: str(props[key]) for key in ("DisplayName", "KmsMasterKeyId") if key in props}
        arn = str(sns.create_topic(Name=name, Attributes=attributes)["TopicArn"])  # the same ARN on a restart
        return {"Ref": arn, "TopicArn": arn, "TopicName": name}

    def _create_SSM_Parameter(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        name = props.get("Name") or f"{self.stack}-{logical_id}"
        ssm, value = self.clients("ssm"), str(props["Value"])
        record = {"Type": "AWS::SSM::Parameter", "Name": name, "Value": value}
        if self.previous.get(logical_id) != record or not _parameter_exists(ssm, name):
            # As a stack update: the template's value is written when it changed (or the parameter is gone);
            # a value an operator put since, under an unchanged template, is kept.
            ssm.put_parameter(Name=name, Value=value, Type=props.get("Type", "String"), Overwrite=True)
        self.records[logical_id] = record
        return {"Ref": name, "Type": props.get("Type", "String"), "Value": str(props["Value"])}

    def _create_ApiGateway_RestApi(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        return self._deterministic(logical_id) or {}

    def _create_ApiGateway_Stage(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        self._stages[str(props["RestApiId"])] = props
        return {"Ref": props["StageName"]}

    def _create_ApiGateway_GatewayResponse(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        self._gateway_responses.setdefault(str(props["RestApiId"]), []).append(
            GatewayResponseSpec(
                response_type=str(props["ResponseType"]),
                status_code=int(props["StatusCode"]) if props.get("StatusCode") else None,
                response_parameters=dict(props.get("ResponseParameters", {})),
                response_templates=dict(props.get("ResponseTemplates", {})),
            )
        )
        return {"Ref": local_id(logical_id)}

    def _create_custom_resource(self, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        """Runs the resource's Lambda with a Create request and reads its answer, as CloudFormation does."""
        if not self.custom_resource_responses:
            raise TemplateError(f"{logical_id}: custom resources need the edge to collect their responses")
        token = str(props.get("ServiceToken", ""))
        if ":lambda:" not in token:
            raise TemplateError(f"{logical_id}: only Lambda-backed custom resources run locally")
        for other, resource in self.resources.items():  # the function must exist before it is invoked
            if resource["Type"] == "AWS::Lambda::Function" and self._get_att(other, "Arn") == token:
                self._provision(other)
        request_id = str(uuid.uuid4())
        response_url = f"{self.custom_resource_responses}/{request_id}"
        event = {
            "RequestType": "Create",
            "ServiceToken": token,
            "ResponseURL": response_url,
            "StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{self.stack}/local",
            "RequestId": request_id,
            "LogicalResourceId": logical_id,
            "ResourceType": self.resources[logical_id]["Type"],
            "ResourceProperties": props,
        }
        result = self.clients("lambda").invoke(FunctionName=token, Payload=json.dumps(event).encode())
        if result.get("FunctionError"):
            detail = result["Payload"].read().decode(errors="replace")[:500]
            raise TemplateError(f"{logical_id}: the custom resource function failed: {detail}")
        with urllib.request.urlopen(response_url, timeout=10) as resp:  # noqa: S310 - the local edge
            answer = json.loads(resp.read())
        if answer.get("Status") != "SUCCESS":
            raise TemplateError(
                f"{logical_id}: custom resource failed: {answer.get('Reason', 'no reason given')}"
            )
        data = answer.get("Data") or {}
        return {"Ref": answer.get("PhysicalResourceId") or logical_id, **{str(k): v for k, v in data.items()}}

    # ---- REST API: routes and authorizers come from the translated OpenAPI body ----------------
    def _api_spec(self, logical_id: str, resource: dict[str, Any]) -> ApiSpec:
        props = self.resolver.resolve(resource.get("Properties", {}))
        api_id = local_id(logical_id)
        body = props.get("Body") or {}
        authorizers = {
            name: self._authorizer(name, definition["x-amazon-apigateway-authorizer"])
            for name, definition in (body.get("securityDefinitions") or {}).items()
            if "x-amazon-apigateway-authorizer" in definition
        }
        routes = []
        for path, operations in (body.get("paths") or {}).items():
            for method, operation in operations.items():
                if not isinstance(operation, dict) or method.startswith("x-") or method == "parameters":
                    continue
                integration = operation.get("x-amazon-apigateway-integration", {})
                function = _integration_function(str(integration.get("uri", "")))
                auth = None
                for requirement in operation.get("security") or []:
                    for name in requirement:
                        auth = authorizers.get(name, auth)
                routes.append(
                    RouteSpec(
                        method="ANY" if method == "x-amazon-apigateway-any-method" else method.upper(),
                        resource=path,
                        function_name=function,
                        authorizer=auth,
                    )
                )
        responses = list(self._gateway_responses.get(api_id, []))
        for rtype, spec in (body.get("x-amazon-apigateway-gateway-responses") or {}).items():
            responses.append(
                GatewayResponseSpec(
                    response_type=rtype,
                    status_code=int(spec["statusCode"]) if spec.get("statusCode") else None,
                    response_parameters=dict(spec.get("responseParameters", {})),
                    response_templates=dict(spec.get("responseTemplates", {})),
                )
            )
        stage = self._stages.get(api_id, {})
        rate = burst = None
        for setting in stage.get("MethodSettings", []):
            if setting.get("HttpMethod", "*") == "*" and setting.get("ResourcePath", "/*") == "/*":
                rate = setting.get("ThrottlingRateLimit", rate)
                burst = setting.get("ThrottlingBurstLimit", burst)
        binary = body.get("x-amazon-apigateway-binary-media-types") or props.get("BinaryMediaTypes") or []
        return ApiSpec(
            logical_id=logical_id,
            rest_api_id=api_id,
            stage_name=str(stage.get("StageName", "local")),
            routes=tuple(routes),
            gateway_responses=tuple(responses),
            binary_media_types=tuple(str(b).replace("~1", "/") for b in binary),
            throttle_rate=float(rate) if rate is not None else None,
            throttle_burst=int(burst) if burst is not None else None,
        )

    def _authorizer(self, name: str, spec: dict[str, Any]) -> AuthorizerSpec:
        sources = [s.strip() for s in str(spec.get("identitySource", "")).split(",") if s.strip()]
        function = _integration_function(str(spec.get("authorizerUri", "")))
        if function is None:
            raise TemplateError(f"authorizer {name}: only Lambda authorizers run locally")
        return AuthorizerSpec(
            name=name,
            function_name=function,
            kind=str(spec.get("type", "request")).lower(),
            identity_sources=tuple(sources),
            ttl_s=int(spec.get("authorizerResultTtlInSeconds", 300)),
        )


def _parameter_exists(ssm: Any, name: str) -> bool:
    try:
        ssm.get_parameter(Name=name)
    except ssm.exceptions.ParameterNotFound:
        return False
    return True


def _integration_function(uri: str) -> str | None:
    """The function inside an apigateway ...:lambda:path/2015-03-31/functions/<arn>/invocations URI: its name,
    with the qualifier (`name:live`) when the integration invokes an alias or a version, as it does on AWS."""
    if "/functions/" not in uri or not uri.endswith("/invocations"):
        return None
    arn = uri.split("/functions/", 1)[1][: -len("/invocations")]
    parts = arn.split(":")  # arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]
    qualifier = parts[7] if arn.startswith("arn:") and len(parts) > 7 else ""
    name = function_name_from(arn)
    return f"{name}:{qualifier}" if qualifier else name


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _throughput(given: Any) -> dict[str, int]:
    given = given or {}
    return {
        "ReadCapacityUnits": int(given.get("ReadCapacityUnits", 5)),
        "WriteCapacityUnits": int(given.get("WriteCapacityUnits", 5)),
    }


def _generated_secret(spec: dict[str, Any]) -> str:
    length = int(spec.get("PasswordLength", 32))
    alphabet = string.ascii_letters + string.digits
    if str(spec.get("ExcludePunctuation", False)).lower() != "true":
        alphabet += "!#$%&()*+,-.:;<=>?[]^_{|}~"
    excluded = set(str(spec.get("ExcludeCharacters", "")))
    alphabet = "".join(c for c in alphabet if c not in excluded)
    password = "".join(secrets.choice(alphabet) for _ in range(length))
    template = spec.get("SecretStringTemplate")
    key = spec.get("GenerateStringKey")
    if template and key:
        data = json.loads(template)
        data[key] = password
        return json.dumps(data)
    return password


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _sfn_logging(configuration: Any) -> dict[str, Any] | None:
    """A state machine's LoggingConfiguration (CloudFormation's casing) as the Step Functions API takes it."""
    if not isinstance(configuration, dict):
        return None
    destinations = [
        {"cloudWatchLogsLogGroup": {"logGroupArn": str(d["CloudWatchLogsLogGroup"]["LogGroupArn"])}}
        for d in configuration.get("Destinations", [])
        if isinstance(d, dict) and isinstance(d.get("CloudWatchLogsLogGroup"), dict)
    ]
    return {
        "level": str(configuration.get("Level", "OFF")),
        "includeExecutionData": str(configuration.get("IncludeExecutionData", False)).lower() == "true",
        "destinations": destinations,
    }

"""What a persistent local cloud keeps across restarts: moto's saved state, stack records, the state check."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from localcloud import services
from localcloud.moto_state import INTERRUPTED_ERROR
from localcloud.provision import Provisioner
from localcloud.template import TemplateError, translate

pytestmark = pytest.mark.component

ROLE = "arn:aws:iam::000000000000:role/local-states"


def _client(service: str, endpoint: str) -> Any:
    make: Any = boto3.client
    return make(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


class Moto:
    """moto server run the way the local cloud runs it, with its state in `state_dir/moto`."""

    def __init__(self, state_dir: Path) -> None:
        self.port = services.free_port()
        self.process = services.moto_server(self.port, self.port, state_dir, persist=True)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Moto:
        self.process.start()
        self.process.wait_ready()
        services.enable_state_machine_execution(self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.stop()  # SIGTERM: moto saves its state before it exits

    def client(self, service: str) -> Any:
        return _client(service, self.endpoint)


def test_moto_state_survives_a_restart_with_keys_secrets_parameters_queues_logs_objects_and_executions(
    tmp_path: Path,
) -> None:
    passing = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    waiting = {
        "StartAt": "P",
        "States": {"P": {"Type": "Pass", "Next": "W"}, "W": {"Type": "Wait", "Seconds": 600, "End": True}},
    }
    # Given a moto with things of every kind the local cloud keeps, and one execution still running
    with Moto(tmp_path) as moto:
        kms = moto.client("kms")
        symmetric = kms.create_key()["KeyMetadata"]["KeyId"]
        signing = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/pii", TargetKeyId=symmetric)
        blob = kms.encrypt(KeyId="alias/pii", Plaintext=b"asha", EncryptionContext={"purpose": "pii"})
        signature = kms.sign(
            KeyId=signing, Message=b"header.payload", MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256"
        )["Signature"]
        sm = moto.client("secretsmanager")
        sm.create_secret(Name="blind-index-key", SecretString="v1")
        sm.put_secret_value(SecretId="blind-index-key", SecretString="v2")
        moto.client("ssm").put_parameter(Name="/fraud/config", Value='{"x": 1}', Type="String")
        sqs = moto.client("sqs")
        queue = sqs.create_queue(QueueName="relay-dlq")["QueueUrl"]
        sqs.send_message(QueueUrl=queue, MessageBody="dead letter")
        logs = moto.client("logs")
        logs.create_log_group(logGroupName="/aws/lambda/relay")
        logs.create_log_stream(logGroupName="/aws/lambda/relay", logStreamName="s")
        logs.put_log_events(
            logGroupName="/aws/lambda/relay",
            logStreamName="s",
            logEvents=[{"timestamp": int(time.time() * 1000), "message": "relayed"}],
        )
        s3 = moto.client("s3")
        s3.create_bucket(Bucket="audit-checkpoints")
        s3.put_object(Bucket="audit-checkpoints", Key="head", Body=b"seq=1")
        sfn = moto.client("stepfunctions")
        done_machine = sfn.create_state_machine(name="done", definition=json.dumps(passing), roleArn=ROLE)
        waiting_machine = sfn.create_state_machine(name="wait", definition=json.dumps(waiting), roleArn=ROLE)
        finished = sfn.start_execution(stateMachineArn=done_machine["stateMachineArn"], name="tr_1")
        running = sfn.start_execution(stateMachineArn=waiting_machine["stateMachineArn"], name="tr_2")
        deadline = time.monotonic() + 10
        while sfn.describe_execution(executionArn=finished["executionArn"])["status"] != "SUCCEEDED":
            assert time.monotonic() < deadline
            time.sleep(0.1)

    # When it is started again on the same state dir (twice: a restored state is saved again as well)
    for _ in range(2):
        with Moto(tmp_path) as moto:
            kms, sfn = moto.client("kms"), moto.client("stepfunctions")
            # Then the keys decrypt and verify what they made before
            plain = kms.decrypt(CiphertextBlob=blob["CiphertextBlob"], EncryptionContext={"purpose": "pii"})
            assert plain["Plaintext"] == b"asha"
            assert kms.describe_key(KeyId="alias/pii")["KeyMetadata"]["KeyId"] == symmetric
            verified = kms.verify(
                KeyId=signing,
                Message=b"header.payload",
                MessageType="RAW",
                Signature=signature,
                SigningAlgorithm="ECDSA_SHA_256",
            )
            assert verified["SignatureValid"] is True
            # ... the secret keeps its versions, the parameter, the queued message, the log event, the object
            secrets = moto.client("secretsmanager")
            assert secrets.get_secret_value(SecretId="blind-index-key")["SecretString"] == "v2"
            previous = secrets.get_secret_value(SecretId="blind-index-key", VersionStage="AWSPREVIOUS")
            assert previous["SecretString"] == "v1"
            assert moto.client("ssm").get_parameter(Name="/fraud/config")["Parameter"]["Value"] == '{"x": 1}'
            sqs = moto.client("sqs")
            queue = sqs.get_queue_url(QueueName="relay-dlq")["QueueUrl"]
            assert int(sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"][
                "ApproximateNumberOfMessages"
            ]) == 1  # fmt: skip
            events = moto.client("logs").get_log_events(logGroupName="/aws/lambda/relay", logStreamName="s")
            assert [e["message"] for e in events["events"]] == ["relayed"]
            assert (
                moto.client("s3").get_object(Bucket="audit-checkpoints", Key="head")["Body"].read()
                == b"seq=1"
            )
            # ... the finished execution keeps its result and history
            done = sfn.describe_execution(executionArn=finished["executionArn"])
            assert done["status"] == "SUCCEEDED"
            history = sfn.get_execution_history(executionArn=finished["executionArn"])["events"]
            assert (history[0]["type"], history[-1]["type"]) == ("ExecutionStarted", "ExecutionSucceeded")
            # ... and the one that was running ended FAILED, saying why
            cut = sfn.describe_execution(executionArn=running["executionArn"])
            assert (cut["status"], cut["error"]) == ("FAILED", INTERRUPTED_ERROR)
            assert "local cloud stopped" in cut["cause"]
            assert sfn.get_execution_history(executionArn=running["executionArn"])["events"][-1]["type"] == (
                "ExecutionFailed"
            )
            # ... and new work goes on: a new execution runs, a new key is made
            again = sfn.start_execution(
                stateMachineArn=done_machine["stateMachineArn"], name=f"tr-{time.time_ns()}"
            )
            deadline = time.monotonic() + 10
            while sfn.describe_execution(executionArn=again["executionArn"])["status"] == "RUNNING":
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert sfn.describe_execution(executionArn=again["executionArn"])["status"] == "SUCCEEDED"
            kms.create_key()


def test_moto_without_persist_keeps_nothing(tmp_path: Path) -> None:
    port = services.free_port()
    process = services.moto_server(port, port, tmp_path)
    process.start()
    try:
        process.wait_ready()
        _client("kms", f"http://127.0.0.1:{port}").create_key()
    finally:
        process.stop()
    assert not (tmp_path / "moto").exists()


# ---- the stack record: what provisioning created is found again, not created anew -------------------------
TEMPLATE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Parameters": {"FraudConfig": {"Type": "String", "Default": '{"review": 30}'}},
    "Resources": {
        "PiiKey": {"Type": "AWS::KMS::Key", "Properties": {"Description": "pii"}},
        "PiiKeyAlias": {
            "Type": "AWS::KMS::Alias",
            "Properties": {"AliasName": "alias/local-pii", "TargetKeyId": {"Ref": "PiiKey"}},
        },
        "FraudConfigParameter": {
            "Type": "AWS::SSM::Parameter",
            "Properties": {"Name": "/local/fraud", "Type": "String", "Value": {"Ref": "FraudConfig"}},
        },
    },
}


def _provision(endpoint: str, previous: dict[str, Any], **parameters: str) -> Provisioner:
    translated = translate(TEMPLATE, Path("."), parameters)
    provisioner = Provisioner(translated, parameters, lambda s: _client(s, endpoint), previous=previous)
    provisioner.run()
    return provisioner


def test_a_second_provisioning_keeps_the_key_and_an_operators_parameter_value(moto_endpoint: str) -> None:
    # Given a first start that created the key and wrote the parameter
    first = _provision(moto_endpoint, {})
    key_id = first.deployment.physical_ids["PiiKey"]
    assert first.records["PiiKey"] == {"Type": "AWS::KMS::Key", "KeyId": key_id}
    ssm = _client("ssm", moto_endpoint)
    # And an operator who changed the parameter since
    ssm.put_parameter(Name="/local/fraud", Value='{"review": 40}', Type="String", Overwrite=True)
    # When the same template is provisioned again with that record
    second = _provision(moto_endpoint, first.records)
    # Then the key is the same one (its alias too), and the operator's value stands
    assert second.deployment.physical_ids["PiiKey"] == key_id
    kms = _client("kms", moto_endpoint)
    assert kms.describe_key(KeyId="alias/local-pii")["KeyMetadata"]["KeyId"] == key_id
    assert ssm.get_parameter(Name="/local/fraud")["Parameter"]["Value"] == '{"review": 40}'
    # And a template whose value changed writes it, as a stack update would
    _provision(moto_endpoint, second.records, FraudConfig='{"review": 50}')
    assert ssm.get_parameter(Name="/local/fraud")["Parameter"]["Value"] == '{"review": 50}'


def test_a_recorded_key_missing_from_the_state_stops_provisioning(moto_endpoint: str) -> None:
    record = {"PiiKey": {"Type": "AWS::KMS::Key", "KeyId": "0b3b3f0e-0000-4000-8000-000000000000"}}
    with pytest.raises(TemplateError, match=r"PiiKey: KMS key 0b3b3f0e.* cannot be read.*--fresh"):
        _provision(moto_endpoint, record)


def test_a_change_is_saved_within_the_interval_so_a_killed_moto_keeps_it(tmp_path: Path) -> None:
    import json as _json
    import os
    import signal
    import subprocess
    import sys

    port = services.free_port()
    argv = [sys.executable, "-m", "localcloud.moto_state", "--port", str(port)]
    argv += ["--state-dir", str(tmp_path / "moto"), "--snapshot-interval", "0.5"]

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not services.port_open(port):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        return proc

    proc = start()
    try:
        key_id = _client("kms", f"http://127.0.0.1:{port}").create_key()["KeyMetadata"]["KeyId"]
        # The periodic save runs in a forked child while moto keeps answering
        deadline = time.monotonic() + 30  # a loaded 2-core machine (the whole suite) can be slow to fork
        while not (tmp_path / "moto" / "snapshot.json").exists():
            assert time.monotonic() < deadline, "no periodic save"
            _client("kms", f"http://127.0.0.1:{port}").list_keys()  # moto still answers meanwhile
            time.sleep(0.2)
        assert _json.loads((tmp_path / "moto" / "snapshot.json").read_text())["backends"]["kms"] >= 1
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # a crash: no save at the stop
        proc.wait(10)
    proc = start()
    try:
        keys = _client("kms", f"http://127.0.0.1:{port}").list_keys()["Keys"]
        assert key_id in {k["KeyId"] for k in keys}
    finally:
        proc.terminate()
        proc.wait(30)

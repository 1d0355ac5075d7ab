"""KeyBootstrapFunction (Custom::SigningKeys) against moto's Secrets Manager and a stand-in ResponseURL."""

from __future__ import annotations

import copy
import importlib.util
import json
import threading
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from vaultpay.auth import key_bootstrap
from vaultpay.auth.key_bootstrap import SecretsManagerKeyStore, ensure_signing_keys, handle
from vaultpay.auth.tokens import SigningKeySet, generate_signing_key_document
from vaultpay.shared.errors import ConfigurationError

pytestmark = pytest.mark.component
ROOT = Path(__file__).resolve().parents[3]
PLACEHOLDER = "Jx0qW2eRtY5uI7oP9aS1dF3gH4jK6lZ8"  # what GenerateSecretString leaves in the secret


@dataclass
class Received:
    body: dict[str, Any]
    content_type: str | None


class ResponseCollector:
    """A pre-signed ResponseURL stand-in: records each PUT, optionally failing the first few."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.fail_first = 0
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if collector.fail_first > 0:
                    collector.fail_first -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                collector.received.append(Received(json.loads(body), self.headers.get("Content-Type")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cfn-response/req-1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def only(self) -> dict[str, Any]:
        (received,) = self.received
        return received.body


@dataclass(frozen=True)
class FakeLambdaContext:
    remaining_ms: int = 60_000
    function_name: str = "vaultpay-local-KeyBootstrapFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:000000000000:function:vaultpay-local-KeyBootstrapFunction"
    )
    aws_request_id: str = "2f1d9c6e-0000-4000-8000-000000000001"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from moto import mock_aws

    from vaultpay.shared.aws import aws_client

    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_SECRETSMANAGER", raising=False)
    aws_client.cache_clear()
    with mock_aws():
        yield aws_client("secretsmanager")
    aws_client.cache_clear()


@pytest.fixture
def secret_arn(aws: Any) -> str:
    return str(aws.create_secret(Name="vaultpay/local/auth/signing-keys", SecretString=PLACEHOLDER)["ARN"])


@pytest.fixture
def collector() -> Iterator[ResponseCollector]:
    collector = ResponseCollector()
    yield collector
    collector.close()


@pytest.fixture(scope="module")
def app() -> ModuleType:
    path = ROOT / "functions" / "auth" / "keys_bootstrap" / "app.py"
    spec = importlib.util.spec_from_file_location("vaultpay_function_auth_keys_bootstrap", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _event(request_type: str, secret_arn: str, url: str, **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = copy.deepcopy(
        json.loads((ROOT / "events/auth/keys_bootstrap_create.json").read_text())
    )
    event["RequestType"] = request_type
    event["ResponseURL"] = url
    event["ResourceProperties"]["SecretArn"] = secret_arn
    event.update(extra)
    return event


def _versions(aws: Any, secret_arn: str) -> int:
    return len(aws.list_secret_version_ids(SecretId=secret_arn)["Versions"])


def test_create_replaces_the_placeholder_with_a_key_document_and_answers_success_with_its_kid(
    app: ModuleType, aws: Any, secret_arn: str, collector: ResponseCollector
) -> None:
    # Given the secret as CloudFormation created it (a random placeholder)
    event = _event("Create", secret_arn, collector.url)
    # When CloudFormation sends Create
    result = app.handler(event, FakeLambdaContext())
    # Then the secret holds a usable key document, and CloudFormation hears SUCCESS with its kid
    stored = aws.get_secret_value(SecretId=secret_arn)["SecretString"]
    kid = SigningKeySet.from_secret(stored).active_kid
    assert result == {"Status": "SUCCESS"}
    answer = collector.only
    assert answer["Status"] == "SUCCESS"
    assert answer["Data"] == {"Kid": kid}
    for field in ("StackId", "RequestId", "LogicalResourceId"):
        assert answer[field] == event[field]
    assert answer["PhysicalResourceId"]
    # The pre-signed URL was signed without a content type: none must be sent
    assert collector.received[0].content_type == ""
    # And no private key ever travels to CloudFormation
    assert "PRIVATE KEY" not in json.dumps(answer)


def test_create_again_and_update_keep_the_existing_keys(
    app: ModuleType, aws: Any, secret_arn: str, collector: ResponseCollector
) -> None:
    app.handler(_event("Create", secret_arn, collector.url), FakeLambdaContext())
    first = collector.only
    versions = _versions(aws, secret_arn)
    # When the request is retried, and later an Update arrives with the physical id CloudFormation knows
    app.handler(_event("Create", secret_arn, collector.url), FakeLambdaContext())
    update = _event("Update", secret_arn, collector.url, PhysicalResourceId=first["PhysicalResourceId"])
    app.handler(update, FakeLambdaContext())
    # Then nothing was written again, and every answer names the same kid and physical id
    assert _versions(aws, secret_arn) == versions
    kids = {r.body["Data"]["Kid"] for r in collector.received}
    physical_ids = {r.body["PhysicalResourceId"] for r in collector.received}
    assert len(kids) == 1
    assert len(physical_ids) == 1
    assert all(r.body["Status"] == "SUCCESS" for r in collector.received)


def test_delete_answers_success_and_leaves_the_secret_alone(
    app: ModuleType, aws: Any, secret_arn: str, collector: ResponseCollector
) -> None:
    event = _event("Delete", secret_arn, collector.url, PhysicalResourceId="SigningKeys-abc")
    app.handler(event, FakeLambdaContext())
    assert collector.only["Status"] == "SUCCESS"
    assert collector.only["PhysicalResourceId"] == "SigningKeys-abc"
    assert aws.get_secret_value(SecretId=secret_arn)["SecretString"] == PLACEHOLDER


def test_a_missing_secret_answers_failed_with_a_reason_instead_of_hanging(
    app: ModuleType, aws: Any, collector: ResponseCollector
) -> None:
    missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:vaultpay/none-AbCdEf"
    result = app.handler(_event("Create", missing, collector.url), FakeLambdaContext())
    assert result == {"Status": "FAILED"}
    answer = collector.only
    assert answer["Status"] == "FAILED"
    assert "ResourceNotFoundException" in answer["Reason"]
    assert answer["Data"] == {}


def test_a_request_without_the_secret_property_answers_failed(
    app: ModuleType, aws: Any, collector: ResponseCollector
) -> None:
    event = _event("Create", "", collector.url)
    app.handler(event, FakeLambdaContext())
    assert collector.only["Status"] == "FAILED"
    assert "SecretArn" in collector.only["Reason"]


def test_two_runs_racing_from_the_same_version_write_once_and_agree(aws: Any, secret_arn: str) -> None:
    # Given two runs that both read the placeholder before either writes
    store = SecretsManagerKeyStore(aws)
    stale = store.current(secret_arn)

    class StaleFirstRead:
        """Answers its first read with the version both runs saw, then the truth."""

        def __init__(self) -> None:
            self.stale_reads = 1

        def current(self, secret_id: str) -> tuple[str | None, str | None]:
            if self.stale_reads:
                self.stale_reads -= 1
                return stale
            return store.current(secret_id)

        def put(self, secret_id: str, value: str, *, token: str) -> None:
            store.put(secret_id, value, token=token)

    # When both generate a key document and write it
    kid_a = ensure_signing_keys(StaleFirstRead(), secret_arn, seed="stack|SigningKeys")
    kid_b = ensure_signing_keys(StaleFirstRead(), secret_arn, seed="stack|SigningKeys")
    # Then the shared idempotency token let only the first document in, and both runs report it
    assert kid_a == kid_b
    assert _versions(aws, secret_arn) == 2  # the placeholder and one key document


def test_a_secret_that_already_holds_keys_is_never_rewritten(aws: Any) -> None:
    document = generate_signing_key_document(kid="k-existing")
    arn = aws.create_secret(Name="vaultpay/local/auth/rotated", SecretString=document)["ARN"]
    assert ensure_signing_keys(SecretsManagerKeyStore(aws), arn, seed="s") == "k-existing"
    assert aws.get_secret_value(SecretId=arn)["SecretString"] == document


def test_a_secret_without_any_value_gets_one(aws: Any) -> None:
    arn = aws.create_secret(Name="vaultpay/local/auth/empty")["ARN"]
    kid = ensure_signing_keys(SecretsManagerKeyStore(aws), arn, seed="s")
    assert SigningKeySet.from_secret(aws.get_secret_value(SecretId=arn)["SecretString"]).active_kid == kid


def test_the_watchdog_answers_failed_before_the_function_times_out(
    aws: Any, secret_arn: str, collector: ResponseCollector
) -> None:
    # Given Secrets Manager hangs longer than the function has left (minus the safety margin)
    class HangingStore:
        def current(self, secret_id: str) -> tuple[str | None, str | None]:
            time.sleep(1.5)
            return None, None

        def put(self, secret_id: str, value: str, *, token: str) -> None:
            raise AssertionError("never reached")

    event = _event("Create", secret_arn, collector.url)
    # When the function runs with 5.5 s left
    outcome = handle(event, store=HangingStore(), send=key_bootstrap.put_response, remaining_s=lambda: 5.5)
    # Then CloudFormation got exactly one answer: the watchdog's FAILED, sent at about 0.5 s
    assert len(collector.received) == 1
    assert collector.only["Status"] == "FAILED"
    assert "timed out" in collector.only["Reason"]
    assert outcome.status == "FAILED"


def test_the_response_put_is_retried(
    aws: Any, secret_arn: str, collector: ResponseCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(key_bootstrap.time, "sleep", lambda _s: None)
    collector.fail_first = 2
    handle(
        _event("Delete", secret_arn, collector.url),
        store=SecretsManagerKeyStore(aws),
        send=key_bootstrap.put_response,
    )
    assert collector.only["Status"] == "SUCCESS"


def test_an_undeliverable_response_fails_the_invocation_so_lambda_retries_it(
    aws: Any, secret_arn: str, collector: ResponseCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(key_bootstrap.time, "sleep", lambda _s: None)
    collector.fail_first = 10
    with pytest.raises(urllib.error.HTTPError):
        handle(
            _event("Delete", secret_arn, collector.url),
            store=SecretsManagerKeyStore(aws),
            send=key_bootstrap.put_response,
        )


def test_a_response_url_that_is_not_http_is_refused(aws: Any, secret_arn: str) -> None:
    with pytest.raises(ConfigurationError, match="ResponseURL"):
        key_bootstrap.put_response("file:///etc/passwd", b"{}")

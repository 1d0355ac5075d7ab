"""Custom::SigningKeys: writes the first token-signing key document once, always answering CloudFormation."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from vaultpay.auth.tokens import SigningKeySet, generate_signing_key_document
from vaultpay.shared.errors import ConfigurationError, TransientError, VaultPayError
from vaultpay.shared.observability import get_logger

# Namespace of the PutSecretValue idempotency tokens (uuid5 of the stack, the resource and the version
# being replaced), so every run that starts from the same secret version uses the same token.
_TOKEN_NAMESPACE = uuid.UUID("6f1f0d54-0c35-4f0e-9a8e-3d5f2f7c2b11")
# CloudFormation keeps at most 4096 bytes of a response; a reason is cut well below that.
_MAX_REASON_CHARS = 1000
# Answer FAILED this long before the function would time out, so CloudFormation never waits in vain.
_DEADLINE_MARGIN_S = 5.0
_PUT_ATTEMPTS = 3


class VersionTaken(Exception):
    """PutSecretValue refused the token: a version made with it already exists (another run wrote first)."""


class KeySecretStore(Protocol):
    """The signing-key secret (Secrets Manager in production)."""

    def current(self, secret_id: str) -> tuple[str | None, str | None]:
        """The current value and its version id; (None, None) when the secret has no value yet."""
        ...

    def put(self, secret_id: str, value: str, *, token: str) -> None:
        """Writes a new current version; `token` makes the write idempotent. VersionTaken if it is used."""
        ...


Sender = Callable[[str, bytes], None]


def ensure_signing_keys(store: KeySecretStore, secret_id: str, *, seed: str) -> str:
    """The active kid of the secret's key document, writing a fresh document first if it holds none.

    Idempotent and safe to run concurrently: runs that find the same (invalid) version derive the same
    ClientRequestToken, Secrets Manager accepts only the first value written with it, and every run then
    reports whatever document is current.
    """
    value, version = store.current(secret_id)
    kid = valid_kid(value)
    if kid is not None:
        return kid
    token = str(uuid.uuid5(_TOKEN_NAMESPACE, f"{seed}|{version or 'no-version'}"))
    try:
        store.put(secret_id, generate_signing_key_document(), token=token)
    except VersionTaken:
        get_logger().info("another run already wrote the signing keys")
    value, _ = store.current(secret_id)
    kid = valid_kid(value)
    if kid is None:
        raise ConfigurationError(f"secret {secret_id} still holds no valid signing key document")
    return kid


def valid_kid(value: str | None) -> str | None:
    """The active kid if `value` is a usable key document, else None."""
    if not value:
        return None
    try:
        return SigningKeySet.from_secret(value).active_kid
    except ConfigurationError:
        return None


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # SUCCESS or FAILED
    reason: str
    data: Mapping[str, str]


def handle(
    event: Mapping[str, Any],
    *,
    store: KeySecretStore,
    send: Sender,
    remaining_s: Callable[[], float] | None = None,
) -> Outcome:
    """Runs one CloudFormation request and always PUTs an answer to its ResponseURL.

    Delete does nothing (the secret is a resource of its own). A watchdog answers FAILED shortly before
    the function would time out, so CloudFormation never waits for a response that cannot come.
    """
    answer = _Answer(event, send)
    watchdog = None
    if remaining_s is not None:
        watchdog = threading.Timer(
            max(0.0, remaining_s() - _DEADLINE_MARGIN_S),
            answer.send,
            args=(Outcome("FAILED", "timed out before the signing keys could be written", {}),),
        )
        watchdog.daemon = True
        watchdog.start()
    try:
        outcome = _run(event, store)
    except VaultPayError as exc:
        # VaultPay error messages name resources at most, never a secret value.
        get_logger().error("signing keys not written", exc_info=exc)
        outcome = Outcome("FAILED", f"{type(exc).__name__}: {exc.message}", {})
    except Exception as exc:
        get_logger().exception("signing keys not written")
        outcome = Outcome("FAILED", f"unexpected {type(exc).__name__}; see the function's log", {})
    finally:
        if watchdog is not None:
            watchdog.cancel()
    answer.send(outcome)
    return outcome


def _run(event: Mapping[str, Any], store: KeySecretStore) -> Outcome:
    request_type = event.get("RequestType")
    if request_type == "Delete":
        return Outcome("SUCCESS", "", {})
    if request_type not in ("Create", "Update"):
        return Outcome("FAILED", f"unknown RequestType {request_type!r}", {})
    secret_id = (event.get("ResourceProperties") or {}).get("SecretArn")
    if not isinstance(secret_id, str) or not secret_id:
        return Outcome("FAILED", "the SecretArn property is required", {})
    seed = f"{event.get('StackId', '')}|{event.get('LogicalResourceId', '')}"
    kid = ensure_signing_keys(store, secret_id, seed=seed)
    get_logger().info("signing keys in place", extra={"kid": kid})
    return Outcome("SUCCESS", "", {"Kid": kid})


class _Answer:
    """Sends the response once, whichever of the run and the watchdog gets there first."""

    def __init__(self, event: Mapping[str, Any], send: Sender) -> None:
        self._event = event
        self._send = send
        self._lock = threading.Lock()
        self._sent = False

    def send(self, outcome: Outcome) -> None:
        with self._lock:
            if self._sent:
                return
            self._sent = True
            event = self._event
            body: dict[str, Any] = {
                "Status": outcome.status,
                "Reason": outcome.reason[:_MAX_REASON_CHARS] or outcome.status,
                # The same id on every run: a new one on Update would make CloudFormation delete the old.
                "PhysicalResourceId": event.get("PhysicalResourceId")
                or f"{event.get('LogicalResourceId', 'SigningKeys')}-{_short_hash(event.get('StackId'))}",
                "StackId": event.get("StackId", ""),
                "RequestId": event.get("RequestId", ""),
                "LogicalResourceId": event.get("LogicalResourceId", ""),
                "NoEcho": False,
                "Data": dict(outcome.data),
            }
            self._send(str(event.get("ResponseURL", "")), json.dumps(body).encode("utf-8"))


def _short_hash(value: object) -> str:
    return uuid.uuid5(_TOKEN_NAMESPACE, str(value or "")).hex[:12]


# ---- adapters ---------------------------------------------------------------------------------------


class SecretsManagerKeyStore:
    """KeySecretStore over a Secrets Manager client (GetSecretValue and PutSecretValue only)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def current(self, secret_id: str) -> tuple[str | None, str | None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                # Also what a secret without any value answers; writing one then tells the two apart.
                return None, None
            raise _translated(secret_id, code) from exc
        except BotoCoreError as exc:
            raise TransientError("Secrets Manager is unreachable") from exc
        value = response.get("SecretString")
        return (value if isinstance(value, str) else None), response.get("VersionId")

    def put(self, secret_id: str, value: str, *, token: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.put_secret_value(SecretId=secret_id, SecretString=value, ClientRequestToken=token)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceExistsException":
                raise VersionTaken(secret_id) from exc
            raise _translated(secret_id, code) from exc
        except BotoCoreError as exc:
            raise TransientError("Secrets Manager is unreachable") from exc


def _translated(secret_id: str, code: str) -> VaultPayError:
    if code in ("ThrottlingException", "InternalServiceError", "ServiceUnavailable"):
        return TransientError(f"Secrets Manager failed: {code}")
    return ConfigurationError(f"secret {secret_id} cannot be used: {code}")


def put_response(url: str, body: bytes, *, timeout_s: float = 10.0) -> None:
    """PUTs a custom-resource response to its pre-signed ResponseURL, with a few retries."""
    if urllib.parse.urlsplit(url).scheme not in ("https", "http"):  # http: the local cloud's edge
        raise ConfigurationError("the ResponseURL is not an http(s) URL")
    # An empty Content-Type, as CloudFormation's own helper sends: urllib would otherwise add a form type
    # that the pre-signed URL was not signed for.
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
    )
    for attempt in range(1, _PUT_ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
                response.read()
            return
        except OSError:
            if attempt == _PUT_ATTEMPTS:
                raise
            get_logger().warning(
                "custom resource response not delivered; retrying", extra={"attempt": attempt}
            )
            time.sleep(attempt)


def handle_with_aws(event: Mapping[str, Any], remaining_s: Callable[[], float]) -> Outcome:
    """`handle` with Secrets Manager and the real response PUT: the function's composition."""
    from vaultpay.shared.aws import aws_client

    store = SecretsManagerKeyStore(aws_client("secretsmanager", timeout_s=5.0, max_attempts=3))
    return handle(event, store=store, send=put_response, remaining_s=remaining_s)

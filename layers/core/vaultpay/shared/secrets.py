"""Secrets Manager values, cached per warm Lambda briefly so a rotation is picked up without a deploy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from vaultpay.shared.errors import ConfigurationError, TransientError

# Long enough that a busy function reads each secret about once a minute, short enough that a rotated
# key reaches every warm function within that minute.
DEFAULT_TTL_S = 60.0


class SecretCache:
    """Reads a secret's current string value through `client` and keeps it for `ttl_s` seconds."""

    def __init__(
        self,
        client: Any,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._clock = clock
        self._values: dict[tuple[str, str], tuple[float, str]] = {}
        self._lock = threading.Lock()

    def get(self, secret_id: str, *, stage: str = "AWSCURRENT") -> str:
        key = (secret_id, stage)
        now = self._clock()
        with self._lock:
            cached = self._values.get(key)
            if cached is not None and now - cached[0] < self._ttl_s:
                return cached[1]
        value = self._fetch(secret_id, stage)
        with self._lock:
            self._values[key] = (now, value)
        return value

    def invalidate(self, secret_id: str) -> None:
        with self._lock:
            for key in [k for k in self._values if k[0] == secret_id]:
                del self._values[key]

    def _fetch(self, secret_id: str, stage: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.get_secret_value(SecretId=secret_id, VersionStage=stage)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("ResourceNotFoundException", "AccessDeniedException", "DecryptionFailure"):
                # The secret's name, not its value, may appear here: names are not secret.
                raise ConfigurationError(f"secret {secret_id} cannot be read: {code}") from exc
            raise TransientError(f"Secrets Manager failed: {code}") from exc
        except BotoCoreError as exc:
            raise TransientError("Secrets Manager is unreachable") from exc
        value = response.get("SecretString")
        if not isinstance(value, str):
            raise ConfigurationError(f"secret {secret_id} has no string value")
        return value


class BlindIndexFromSecret:
    """A BlindIndex keyed by the blind-index secret, read through the secret cache on use."""

    def __init__(self, secrets: Any, secret_id: str) -> None:
        self._secrets = secrets
        self._secret_id = secret_id
        self._lock = threading.Lock()
        self._built: tuple[str, Any] | None = None

    def of(self, kind: str, value: str) -> str:
        from vaultpay.shared.fieldcrypt import BlindIndex

        key = self._secrets.get(self._secret_id)
        with self._lock:
            if self._built is None or self._built[0] != key:
                self._built = (key, BlindIndex(key.encode("utf-8")))
            index: BlindIndex = self._built[1]
        return index.of(kind, value)

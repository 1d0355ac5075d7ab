"""PII field encryption (AES-256-GCM under KMS data keys) and HMAC blind indexes for look-ups."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from vaultpay.shared.errors import (
    ConfigurationError,
    FieldError,
    InfrastructureError,
    TransientError,
    ValidationFailed,
)
from vaultpay.shared.pii import normalise_email, normalise_phone

FORMAT_VERSION = "fc1"
NONCE_BYTES = 12  # 96-bit GCM nonce, random per message
TAG_BYTES = 16
DATA_KEY_BYTES = 32  # AES-256

# The KMS encryption context of every data key. Per-row context cannot go here, because one data key
# serves many rows (see the cache bounds below); rows are bound by the GCM additional data instead.
DEFAULT_KEY_CONTEXT: Mapping[str, str] = {"app": "vaultpay", "purpose": "pii"}
# TOTP secrets get data keys of their own: IAM lets only the MFA functions decrypt under this context.
TOTP_KEY_CONTEXT: Mapping[str, str] = {"app": "vaultpay", "purpose": "totp_secret"}

# One KMS call per field write would add a network round trip to every registration and spend the
# account's shared KMS request quota, so a plaintext data key is reused, but boundedly:
# - at most DEFAULT_REUSE_LIMIT encryptions: far below the 2**32 messages NIST SP 800-38D allows per key
#   with random 96-bit nonces, and it caps what one key leaked from a process's memory would expose;
# - for at most DEFAULT_TTL_S seconds, after which disabling the KMS key or revoking the role's access
#   (incident response) also stops warm functions from decrypting, since cached decrypted keys expire too.
DEFAULT_REUSE_LIMIT = 1000
DEFAULT_TTL_S = 300.0
# Decrypted data keys kept per process (least recently used dropped first): a page of rows written by
# different Lambdas names a few different data keys, and each one costs a KMS Decrypt only once.
DEFAULT_MAX_CACHED_KEYS = 256

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")


class DecryptionFailed(InfrastructureError):
    """A stored ciphertext is malformed, was tampered with, or belongs to another row or key."""

    code = "decryption_failed"


@dataclass(frozen=True, slots=True)
class DataKey:
    """A data key as the key service returns it: plaintext for use now, encrypted form for storage."""

    plaintext: bytes = field(repr=False)
    encrypted: bytes
    key_id: str


class KeyProvider(Protocol):
    """Where data keys come from (KMS in production, a fake in unit tests)."""

    def generate_data_key(self, context: Mapping[str, str]) -> DataKey: ...

    def decrypt_data_key(self, encrypted: bytes, key_id: str, context: Mapping[str, str]) -> bytes: ...


class KmsKeyProvider:
    """Data keys from KMS `GenerateDataKey`/`Decrypt` under one customer managed key."""

    def __init__(self, kms_client: Any, key_id: str) -> None:
        if not key_id:
            raise ConfigurationError("the PII KMS key id is not configured")
        self._kms = kms_client
        self._key_id = key_id

    def generate_data_key(self, context: Mapping[str, str]) -> DataKey:
        response = self._call(
            "GenerateDataKey",
            lambda: self._kms.generate_data_key(
                KeyId=self._key_id, KeySpec="AES_256", EncryptionContext=dict(context)
            ),
        )
        # KMS answers with the key's full ARN whatever form `key_id` took (alias, id): the ARN is what
        # gets recorded, so a later alias move does not change how old rows are decrypted.
        return DataKey(
            plaintext=bytes(response["Plaintext"]),
            encrypted=bytes(response["CiphertextBlob"]),
            key_id=str(response["KeyId"]),
        )

    def decrypt_data_key(self, encrypted: bytes, key_id: str, context: Mapping[str, str]) -> bytes:
        # Naming the key (rather than letting KMS read it from the blob) is AWS's advice: KMS then refuses
        # a ciphertext made under any other key. Which keys may be used at all is the function role's
        # kms:Decrypt resource list.
        response = self._call(
            "Decrypt",
            lambda: self._kms.decrypt(
                CiphertextBlob=encrypted, KeyId=key_id, EncryptionContext=dict(context)
            ),
        )
        return bytes(response["Plaintext"])

    @staticmethod
    def _call(operation: str, call: Callable[[], Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("InvalidCiphertextException", "IncorrectKeyException"):
                raise DecryptionFailed(f"KMS {operation} refused the data key: {code}") from exc
            if code in (
                "AccessDeniedException",
                "NotFoundException",
                "DisabledException",
                "KMSInvalidStateException",
                "InvalidKeyUsageException",
            ):
                raise ConfigurationError(f"KMS {operation} cannot use the PII key: {code}") from exc
            raise TransientError(f"KMS {operation} failed: {code}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"KMS {operation} is unreachable") from exc


@dataclass(slots=True)
class _CurrentKey:
    key: DataKey
    created_at: float
    uses: int = 0


class FieldCipher:
    """Encrypts one text field at a time, bound to its `context` (e.g. field name and user id).

    A blob is `fc1.<key id>.<encrypted data key>.<nonce>.<ciphertext and tag>`, each part base64url
    without padding: everything needed to decrypt it except the KMS permission, so keys can rotate
    (new rows name the new key, old rows keep naming theirs).
    """

    def __init__(
        self,
        provider: KeyProvider,
        *,
        key_context: Mapping[str, str] = DEFAULT_KEY_CONTEXT,
        reuse_limit: int = DEFAULT_REUSE_LIMIT,
        ttl_s: float = DEFAULT_TTL_S,
        max_cached_keys: int = DEFAULT_MAX_CACHED_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if reuse_limit < 1 or ttl_s <= 0 or max_cached_keys < 1:
            raise ConfigurationError("FieldCipher bounds must be positive")
        self._provider = provider
        self._key_context = dict(_checked_context(key_context))
        self._reuse_limit = reuse_limit
        self._ttl_s = ttl_s
        self._max_cached_keys = max_cached_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._current: _CurrentKey | None = None
        self._decrypted: OrderedDict[tuple[str, bytes], tuple[float, bytes]] = OrderedDict()

    def encrypt(self, plaintext: str, *, context: Mapping[str, str]) -> str:
        aad_context = _checked_context(context)
        try:
            data = plaintext.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate (JSON allows "\ud800") cannot be stored as text; the value is refused.
            raise ValidationFailed(
                "the value is not valid Unicode text",
                errors=[FieldError(aad_context.get("field", "value"), "is not valid Unicode text")],
            ) from None
        key = self._encryption_key()
        nonce = os.urandom(NONCE_BYTES)
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        sealed = AESGCM(key.plaintext).encrypt(nonce, data, _aad(key.key_id, aad_context))
        return ".".join(
            (FORMAT_VERSION, _b64(key.key_id.encode("utf-8")), _b64(key.encrypted), _b64(nonce), _b64(sealed))
        )

    def decrypt(self, blob: str, *, context: Mapping[str, str]) -> str:
        aad_context = _checked_context(context)
        key_id, encrypted_key, nonce, sealed = _split(blob)
        data_key = self._data_key(key_id, encrypted_key)
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            data = AESGCM(data_key).decrypt(nonce, sealed, _aad(key_id, aad_context))
        except InvalidTag:
            raise DecryptionFailed(
                "the field ciphertext does not authenticate (tampered, or another row's)"
            ) from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptionFailed("the decrypted field is not UTF-8 text") from None

    def _encryption_key(self) -> DataKey:
        now = self._clock()
        with self._lock:
            current = self._current
            if (
                current is not None
                and current.uses < self._reuse_limit
                and now - current.created_at < self._ttl_s
            ):
                current.uses += 1
                return current.key
        # The KMS call runs outside the lock; two threads racing here both get a fresh key, which is fine.
        key = self._provider.generate_data_key(self._key_context)
        if len(key.plaintext) != DATA_KEY_BYTES:
            raise ConfigurationError("the key provider returned a data key that is not AES-256")
        with self._lock:
            self._current = _CurrentKey(key, created_at=now, uses=1)
            # Rows just written are often read back at once (the response echoes them): no KMS call then.
            self._remember(key.key_id, key.encrypted, key.plaintext, now)
        return key

    def _data_key(self, key_id: str, encrypted_key: bytes) -> bytes:
        now = self._clock()
        cache_key = (key_id, encrypted_key)
        with self._lock:
            cached = self._decrypted.get(cache_key)
            if cached is not None and now - cached[0] < self._ttl_s:
                self._decrypted.move_to_end(cache_key)
                return cached[1]
        plaintext = self._provider.decrypt_data_key(encrypted_key, key_id, self._key_context)
        if len(plaintext) != DATA_KEY_BYTES:
            raise DecryptionFailed("the decrypted data key is not AES-256")
        with self._lock:
            self._remember(key_id, encrypted_key, plaintext, now)
        return plaintext

    def _remember(self, key_id: str, encrypted_key: bytes, plaintext: bytes, now: float) -> None:
        self._decrypted[(key_id, encrypted_key)] = (now, plaintext)
        self._decrypted.move_to_end((key_id, encrypted_key))
        while len(self._decrypted) > self._max_cached_keys:
            self._decrypted.popitem(last=False)


class BlindIndex:
    """Keyed, deterministic fingerprints of PII for equality look-ups without storing the plaintext."""

    def __init__(self, key: bytes) -> None:
        # The HMAC key is the only thing that stops a dictionary attack over all phone numbers.
        if len(key) < 32:
            raise ConfigurationError("the blind index key must be at least 32 bytes")
        self._key = bytes(key)

    def of(self, kind: str, value: str) -> str:
        """The index of `value` as a `kind` ("email", "phone", ...): 64 lower-case hex digits.

        Emails and phones are normalised here, so every caller indexes them the same way; other kinds
        must arrive already normalised. The kind is part of the MAC input, so equal values of different
        kinds never share an index.
        """
        if not _KIND.fullmatch(kind):
            raise ValueError("a blind index kind is a short lower-case identifier")
        normaliser = _NORMALISERS.get(kind)
        normalised = normaliser(value) if normaliser is not None else value
        try:
            encoded = normalised.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationFailed(
                "the value is not valid Unicode text",
                errors=[FieldError(kind, "is not valid Unicode text")],
            ) from None
        # Kinds match [a-z0-9_]+, so the NUL separators make the encoding unambiguous.
        message = b"vaultpay-blind-index/v1\x00" + kind.encode("ascii") + b"\x00" + encoded
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


_NORMALISERS: Mapping[str, Callable[[str], str]] = {"email": normalise_email, "phone": normalise_phone}


def _checked_context(context: Mapping[str, str]) -> Mapping[str, str]:
    # An empty context would bind nothing: a ciphertext could then be moved to any row unnoticed.
    if not context or not all(isinstance(k, str) and isinstance(v, str) for k, v in context.items()):
        raise ValueError("an encryption context is a non-empty mapping of strings to strings")
    return context


def _aad(key_id: str, context: Mapping[str, str]) -> bytes:
    # Canonical JSON (sorted keys, no spaces) is one unambiguous encoding of the context; the version and
    # key id ride along so that a blob cannot be re-labelled under another format or key.
    document = {"v": FORMAT_VERSION, "kid": key_id, "ctx": dict(context)}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _split(blob: str) -> tuple[str, bytes, bytes, bytes]:
    parts = blob.split(".") if isinstance(blob, str) else []
    if len(parts) != 5 or parts[0] != FORMAT_VERSION:
        raise DecryptionFailed("the field ciphertext is not in a known format")
    raw = [_unb64(part) for part in parts[1:]]
    key_id_raw, encrypted_key, nonce, sealed = raw
    if key_id_raw is None or encrypted_key is None or nonce is None or sealed is None:
        raise DecryptionFailed("the field ciphertext is not valid base64url")
    if not key_id_raw or not encrypted_key or len(nonce) != NONCE_BYTES or len(sealed) < TAG_BYTES:
        raise DecryptionFailed("the field ciphertext is truncated")
    try:
        key_id = key_id_raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionFailed("the field ciphertext names an unreadable key id") from None
    return key_id, encrypted_key, nonce, sealed


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes | None:
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    # Only the canonical encoding is accepted: otherwise flipping the unused low bits of the last
    # character would give a different blob that still decrypts, and "any change fails" would not hold.
    return raw if _b64(raw) == text else None


class WithLegacyDecryption:
    """`current` for everything, except that a blob `current` cannot open is tried with `legacy`.

    For a field that moved to another key context (the TOTP secrets, sealed under the PII context until
    they got one of their own): rows written before the move stay readable by the functions allowed both.
    """

    def __init__(self, current: FieldCipher, legacy: FieldCipher) -> None:
        self._current = current
        self._legacy = legacy

    def encrypt(self, plaintext: str, *, context: Mapping[str, str]) -> str:
        return self._current.encrypt(plaintext, context=context)

    def decrypt(self, blob: str, *, context: Mapping[str, str]) -> str:
        try:
            return self._current.decrypt(blob, context=context)
        except (DecryptionFailed, ConfigurationError):
            # KMS refuses a data key made under the other context: InvalidCiphertext, or AccessDenied
            # where IAM pins the context. A blob neither can open still raises, from the legacy attempt.
            return self._legacy.decrypt(blob, context=context)

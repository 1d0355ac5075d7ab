"""Signed checkpoints of the audit chain: tamper evidence that survives a writer of the audit table.

The chain alone proves only its own prefix: whoever can write the table can rewrite a record and re-hash
everything after it, or delete the newest records, and the chain still verifies. A checkpoint is the chain's
head `(seq, hash, time)` signed by a KMS asymmetric key that only the checkpoint function may use, and kept in
an S3 bucket under Object Lock in compliance mode (no one, the account's root included, can delete or
overwrite it before its retention ends). `verify` then checks every checkpoint's signature and that the chain
passes through each signed head and reaches at least the newest one.

Objects are `checkpoints/<seq:020d>.json`: listing them in key order is seq order, and a second checkpoint of
the same head is the same key (Object Lock refuses the overwrite: the first one stands).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vaultpay.shared.signatures import verify_ecdsa

if TYPE_CHECKING:
    # Annotations only: the ports describe checkpoints, so importing them at run time would be a circle.
    from vaultpay.audit.ports import CheckpointKeys, CheckpointSigner

    pass

FORMAT = "vaultpay-audit-checkpoint/1"
PREFIX = "checkpoints/"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEY = re.compile(r"checkpoints/(\d{20})\.json")
MAX_OBJECT_BYTES = 4096


def signed_message(seq: int, head_hash: str, at: str) -> bytes:
    """What is signed: the format, the seq, the hash and the time, one per line (no JSON ambiguity)."""
    return f"{FORMAT}\n{seq}\n{head_hash}\n{at}".encode("ascii")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One signed head. `key_id` names the KMS key that signed it; `signature` is DER, base64url."""

    seq: int
    hash: str
    at: str
    key_id: str
    signature: str

    @property
    def object_key(self) -> str:
        return f"{PREFIX}{self.seq:020d}.json"

    def message(self) -> bytes:
        return signed_message(self.seq, self.hash, self.at)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "seq": self.seq,
            "hash": self.hash,
            "at": self.at,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def parse(cls, key: str, body: bytes) -> Checkpoint:
        """ValueError when the object is not a checkpoint, or not the one its key names."""
        if len(body) > MAX_OBJECT_BYTES:
            raise ValueError("the object is too large to be a checkpoint")
        document = json.loads(body)
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError("not a checkpoint document")
        seq, head_hash, at = document.get("seq"), document.get("hash"), document.get("at")
        key_id, signature = document.get("key_id"), document.get("signature")
        good_hash = isinstance(head_hash, str) and _HEX64.fullmatch(head_hash) is not None
        if type(seq) is not int or seq < 1 or not good_hash:
            raise ValueError("a checkpoint needs a positive seq and a lower-case SHA-256 hash")
        if not all(isinstance(v, str) and 0 < len(v) <= 512 for v in (at, key_id, signature)):
            raise ValueError("a checkpoint needs its time, key id and signature")
        match = _KEY.fullmatch(key)
        if match is None or int(match.group(1)) != seq:
            raise ValueError(f"the object {key} does not hold the checkpoint of its seq")
        return cls(seq, str(head_hash), str(at), str(key_id), str(signature))


@dataclass(frozen=True, slots=True)
class CheckedCheckpoint:
    """A stored checkpoint and whether its signature verified under a key the verifier trusts."""

    checkpoint: Checkpoint | None
    object_key: str
    signature_ok: bool
    problem: str | None = None


def check_checkpoints(stored: Iterator[tuple[str, bytes]], keys: CheckpointKeys) -> list[CheckedCheckpoint]:
    """Each stored object parsed and its signature checked, in seq order."""
    checked: list[CheckedCheckpoint] = []
    for key, body in stored:
        try:
            checkpoint = Checkpoint.parse(key, body)
        except (ValueError, UnicodeDecodeError) as exc:
            checked.append(CheckedCheckpoint(None, key, False, f"unreadable: {exc}"))
            continue
        public = keys.public_key(checkpoint.key_id)
        if public is None:
            checked.append(CheckedCheckpoint(checkpoint, key, False, "signed by a key that is not trusted"))
            continue
        try:
            padded = checkpoint.signature + "=" * (-len(checkpoint.signature) % 4)
            signature = base64.urlsafe_b64decode(padded)
        except (binascii.Error, ValueError):
            checked.append(CheckedCheckpoint(checkpoint, key, False, "the signature is not base64url"))
            continue
        ok = verify_ecdsa(public, signature, checkpoint.message())
        problem = None if ok else "the signature does not verify"
        checked.append(CheckedCheckpoint(checkpoint, key, ok, problem))
    return checked


def new_checkpoint(signer: CheckpointSigner, seq: int, head_hash: str, at: str) -> Checkpoint:
    signature = signer.sign(signed_message(seq, head_hash, at))
    encoded = base64.urlsafe_b64encode(signature).decode().rstrip("=")
    return Checkpoint(seq=seq, hash=head_hash, at=at, key_id=signer.key_id(), signature=encoded)

"""Signed checkpoints of the audit chain: tamper evidence that survives a writer of the audit table.

The chain alone proves only its own prefix: whoever can write the table can rewrite a record and re-hash
everything after it, or delete the newest records, and the chain still verifies. A checkpoint is the chain's
head `(seq, hash, time)` signed by a KMS asymmetric key that only the checkpoint function may use, and kept in
an S3 bucket under Object Lock in compliance mode (no one, the account's root included, can delete or
overwrite it before its retention ends). `verify` then checks every checkpoint's signature and that the chain
passes through each signed head and reaches at least the newest one.

Objects are `checkpoints/<seq:020d>.json`: listing them in key order is seq order, and a second checkpoint of
the same head is the same key (Object Lock refuses the overwrite: the first one stands).

A log of several chains (vaultpay.audit.store) is covered by one checkpoint of format 2: every written
chain's head `(chain, seq, hash)`, signed together, under the log's head (vaultpay.audit.model.log_head:
`seq` is the chains' seqs added up, so it grows with every append and keeps the key order). While chain 0
is the only chain with records, the checkpoint is written in format 1, exactly as before the log had
chains, and a format-1 checkpoint reads as the head of chain 0: a bucket written before stays valid.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vaultpay.audit.model import MAX_CHAINS, ChainHead, log_head
from vaultpay.shared.signatures import verify_ecdsa

if TYPE_CHECKING:
    from collections.abc import Mapping

    # Annotations only: the ports describe checkpoints, so importing them at run time would be a circle.
    from vaultpay.audit.ports import CheckpointKeys, CheckpointSigner

FORMAT = "vaultpay-audit-checkpoint/1"
FORMAT_CHAINS = "vaultpay-audit-checkpoint/2"
PREFIX = "checkpoints/"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEY = re.compile(r"checkpoints/(\d{20})\.json")
MAX_OBJECT_BYTES = 4096


def signed_message(seq: int, head_hash: str, at: str) -> bytes:
    """What is signed: the format, the seq, the hash and the time, one per line (no JSON ambiguity)."""
    return f"{FORMAT}\n{seq}\n{head_hash}\n{at}".encode("ascii")


def signed_heads_message(seq: int, head_hash: str, at: str, heads: tuple[tuple[int, int, str], ...]) -> bytes:
    """Format 2: the log's seq, hash and time, then one `<chain>:<seq>:<hash>` line per chain."""
    lines = [FORMAT_CHAINS, str(seq), head_hash, at, *(f"{c}:{s}:{h}" for c, s, h in heads)]
    return "\n".join(lines).encode("ascii")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One signed head. `key_id` names the KMS key that signed it; `signature` is DER, base64url.

    `heads` is empty in format 1 (the head is chain 0's) and lists `(chain, seq, hash)` of every written
    chain in format 2 (then `seq` and `hash` are the log's head, vaultpay.audit.model.log_head)."""

    seq: int
    hash: str
    at: str
    key_id: str
    signature: str
    heads: tuple[tuple[int, int, str], ...] = ()

    @property
    def object_key(self) -> str:
        return f"{PREFIX}{self.seq:020d}.json"

    def chain_heads(self) -> tuple[tuple[int, int, str], ...]:
        """`(chain, seq, hash)` of each chain this checkpoint pins."""
        return self.heads or ((0, self.seq, self.hash),)

    def message(self) -> bytes:
        if self.heads:
            return signed_heads_message(self.seq, self.hash, self.at, self.heads)
        return signed_message(self.seq, self.hash, self.at)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "format": FORMAT_CHAINS if self.heads else FORMAT,
            "seq": self.seq,
            "hash": self.hash,
            "at": self.at,
            "key_id": self.key_id,
            "signature": self.signature,
        }
        if self.heads:
            document["heads"] = [{"chain": c, "seq": s, "hash": h} for c, s, h in self.heads]
        return document

    @classmethod
    def parse(cls, key: str, body: bytes) -> Checkpoint:
        """ValueError when the object is not a checkpoint, or not the one its key names."""
        if len(body) > MAX_OBJECT_BYTES:
            raise ValueError("the object is too large to be a checkpoint")
        document = json.loads(body)
        if not isinstance(document, dict) or document.get("format") not in (FORMAT, FORMAT_CHAINS):
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
        heads = _heads(document.get("heads")) if document["format"] == FORMAT_CHAINS else ()
        if heads:
            log = log_head({chain: ChainHead(s, h) for chain, s, h in heads})
            if (log.seq, log.hash) != (seq, head_hash):
                raise ValueError("the checkpoint's seq and hash are not the log head of its chains")
        return cls(seq, str(head_hash), str(at), str(key_id), str(signature), heads)


def _heads(value: object) -> tuple[tuple[int, int, str], ...]:
    """Format 2's heads: chains in increasing order, each with a positive seq and a SHA-256 hash."""
    if not isinstance(value, list) or not 0 < len(value) <= MAX_CHAINS:
        raise ValueError("a checkpoint of chains needs their heads")
    heads: list[tuple[int, int, str]] = []
    for head in value:
        if not isinstance(head, dict):
            raise ValueError("a chain's head is an object")
        chain, seq, head_hash = head.get("chain"), head.get("seq"), head.get("hash")
        if type(chain) is not int or not 0 <= chain < MAX_CHAINS or (heads and chain <= heads[-1][0]):
            raise ValueError("chains are listed once each, in increasing order")
        good_hash = isinstance(head_hash, str) and _HEX64.fullmatch(head_hash) is not None
        if type(seq) is not int or seq < 1 or not good_hash:
            raise ValueError("a chain's head needs a positive seq and a lower-case SHA-256 hash")
        heads.append((chain, seq, str(head_hash)))
    return tuple(heads)


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


def checkpoint_of_heads(signer: CheckpointSigner, heads: Mapping[int, ChainHead], at: str) -> Checkpoint:
    """One checkpoint over every written chain's head: format 1 while only chain 0 has records."""
    written = tuple((chain, head.seq, head.hash) for chain, head in sorted(heads.items()) if head.seq > 0)
    log = log_head(heads)
    if all(chain == 0 for chain, _, _ in written):
        return new_checkpoint(signer, log.seq, log.hash, at)
    signature = signer.sign(signed_heads_message(log.seq, log.hash, at, written))
    encoded = base64.urlsafe_b64encode(signature).decode().rstrip("=")
    return Checkpoint(log.seq, log.hash, at, signer.key_id(), encoded, written)

"""Checkpoint documents and their signatures, with a local P-256 key standing in for KMS (no I/O)."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from vaultpay.audit.checkpoints import Checkpoint, check_checkpoints, new_checkpoint, signed_message

pytestmark = pytest.mark.unit

HEAD = "a" * 64


class LocalSigner:
    def __init__(self, name: str = "key-1") -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.name = name

    def key_id(self) -> str:
        return self.name

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message, ec.ECDSA(hashes.SHA256()))


class Keys:
    def __init__(self, *signers: LocalSigner) -> None:
        self._keys = {s.name: s.private.public_key() for s in signers}

    def public_key(self, key_id: str) -> ec.EllipticCurvePublicKey | None:
        return self._keys.get(key_id)


def _stored(point: Checkpoint, **changes: object) -> tuple[str, bytes]:
    return point.object_key, json.dumps({**point.to_json(), **changes}).encode()


def test_the_signed_message_names_the_format_seq_hash_and_time_one_per_line() -> None:
    assert signed_message(7, HEAD, "2026-12-07T10:00:00.000Z") == (
        f"vaultpay-audit-checkpoint/1\n7\n{HEAD}\n2026-12-07T10:00:00.000Z".encode()
    )


def test_a_checkpoint_verifies_under_its_key_and_fails_when_any_signed_field_changes() -> None:
    signer = LocalSigner()
    point = new_checkpoint(signer, 7, HEAD, "2026-12-07T10:00:00.000Z")
    assert point.object_key == "checkpoints/00000000000000000007.json"
    (good,) = check_checkpoints(iter([_stored(point)]), Keys(signer))
    assert good.signature_ok and good.checkpoint == point
    for change in ({"hash": "b" * 64}, {"at": "2026-12-07T11:00:00.000Z"}):
        (bad,) = check_checkpoints(iter([_stored(point, **change)]), Keys(signer))
        assert not bad.signature_ok and bad.problem == "the signature does not verify"


def test_a_checkpoint_signed_by_an_untrusted_key_or_stored_under_another_seq_is_refused() -> None:
    trusted, rogue = LocalSigner("key-1"), LocalSigner("rogue")
    forged = new_checkpoint(rogue, 7, HEAD, "2026-12-07T10:00:00.000Z")
    (untrusted,) = check_checkpoints(iter([_stored(forged)]), Keys(trusted))
    assert untrusted.problem == "signed by a key that is not trusted"
    genuine = new_checkpoint(trusted, 7, HEAD, "2026-12-07T10:00:00.000Z")
    moved = ("checkpoints/00000000000000000009.json", _stored(genuine)[1])
    (misplaced,) = check_checkpoints(iter([moved]), Keys(trusted))
    assert not misplaced.signature_ok and (misplaced.problem or "").startswith("unreadable")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"format": "other"}',
        json.dumps({"format": "vaultpay-audit-checkpoint/1"}).encode(),
    ],
)
def test_anything_but_a_checkpoint_document_is_unreadable(body: bytes) -> None:
    (checked,) = check_checkpoints(iter([("checkpoints/00000000000000000001.json", body)]), Keys())
    assert not checked.signature_ok and checked.checkpoint is None

"""Tamper evidence that survives a writer of the audit table: signed checkpoints under S3 Object Lock.

Before: whoever could write the audit table could delete its newest records, or rewrite a record and
re-hash everything after it with the project's own hashing, and `verify` still said ok. After: a checkpoint
(the head signed with a KMS key only the checkpoint function may use, kept in a compliance-locked bucket)
pins the chain, and both attacks are reported with the checkpoint they break. The attacker here writes the
table directly, with the store's own item format, as a principal with DynamoDB access would.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from support.tables import create_table

from vaultpay.audit.adapters import KmsCheckpointKeys, KmsCheckpointSigner, S3CheckpointStore
from vaultpay.audit.checkpoints import check_checkpoints
from vaultpay.audit.model import GENESIS_HASH, AuditEntry, build_chain
from vaultpay.audit.service import AuditService
from vaultpay.audit.store import DynamoDBAuditStore, record_item, record_sk

pytestmark = pytest.mark.component

REGION = "us-east-1"


@dataclasses.dataclass
class Bank:
    ddb: Any
    s3: Any
    kms: Any
    table: str
    bucket: str
    key_id: str

    def service(self) -> AuditService:
        return AuditService(DynamoDBAuditStore(self.ddb, self.table))

    def checkpoints(self) -> S3CheckpointStore:
        return S3CheckpointStore(self.s3, self.bucket, retention_days=1)

    def checkpoint(self) -> Any:
        service = self.service()
        verified = service.verify(checkpoints=self.checked())
        return service.checkpoint(
            KmsCheckpointSigner(self.kms, self.key_id), self.checkpoints(), verified, now=1.8e9
        )

    def checked(self) -> Any:
        return check_checkpoints(self.checkpoints().checkpoints(), KmsCheckpointKeys(self.kms, [self.key_id]))

    def verify(self) -> Any:
        return self.service().verify(checkpoints=self.checked())


def _entry(n: int) -> AuditEntry:
    return AuditEntry(
        audit_id=f"evt-{uuid.uuid4()}",
        occurred_at=f"2026-12-07T10:00:{n % 60:02d}.000Z",
        type="vaultpay.account.deposited",
        actor="usr_admin",
        correlation_id=f"corr-{n}",
        subject="acc_" + "a" * 32,
        data={"amount": 1000 + n, "currency": "INR"},
    )


@pytest.fixture
def bank() -> Iterator[Bank]:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        kms = boto3.client("kms", region_name=REGION)
        table = "t-AuditTable"
        create_table(ddb, "AuditTable", table)
        bucket = "vaultpay-test-audit-checkpoints"
        s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        s3.put_object_lock_configuration(
            Bucket=bucket,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}},
            },
        )
        key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
        bank = Bank(ddb, s3, kms, table, bucket, key_id)
        bank.service().append_entries([_entry(n) for n in range(10)])
        yield bank


def _records(bank: Bank) -> list[Any]:
    return list(DynamoDBAuditStore(bank.ddb, bank.table).records())


def test_an_untouched_chain_verifies_through_its_checkpoints(bank: Bank) -> None:
    first = bank.checkpoint()
    assert first is not None and first.seq == 10
    bank.service().append_entries([_entry(n) for n in range(10, 15)])
    second = bank.checkpoint()
    assert second is not None and second.seq == 15
    assert bank.checkpoint() is None  # the same head again: its checkpoint stands, nothing new
    result = bank.verify()
    assert result.ok, result.first_bad_record
    assert (result.records_checked, result.checkpoints_checked) == (15, 2)


def test_deleting_the_newest_records_after_a_checkpoint_is_caught(bank: Bank) -> None:
    # Given a checkpoint of the head (seq 10)
    point = bank.checkpoint()
    assert point is not None
    # When an attacker with table access deletes the newest three records
    for seq in (8, 9, 10):
        bank.ddb.delete_item(TableName=bank.table, Key={"pk": {"S": "CHAIN"}, "sk": {"S": record_sk(seq)}})
    assert bank.service().verify().ok  # the chain alone cannot tell
    # Then verify through the checkpoints reports the truncation, naming the checkpoint it breaks
    result = bank.verify()
    assert not result.ok
    bad = result.first_bad_record
    assert bad is not None and (bad.reason, bad.seq) == ("truncated", 10)
    assert f"checkpoint of seq 10 signed at {point.at}" in bad.detail


def test_a_record_rewritten_and_rechained_with_the_projects_hashing_is_caught(bank: Bank) -> None:
    # Given a checkpoint of the head
    assert bank.checkpoint() is not None
    records = _records(bank)
    # When an attacker edits seq 4 and re-hashes every record after it, as vaultpay.audit.model would
    edited = dataclasses.replace(records[3].entry(), data={"amount": 99_999_999, "currency": "INR"})
    rewritten = build_chain(
        [edited] + [r.entry() for r in records[4:]], start_seq=4, prev_hash=records[2].hash
    )
    for record in rewritten:
        bank.ddb.put_item(TableName=bank.table, Item=record_item(record))
    assert bank.service().verify().ok  # self-consistent: the chain alone cannot tell
    # Then verify through the checkpoints reports it at the checkpointed head
    result = bank.verify()
    assert not result.ok
    bad = result.first_bad_record
    assert bad is not None and (bad.reason, bad.seq) == ("anchor_mismatch", 10)
    assert "checkpoint of seq 10" in bad.detail


def test_a_checkpoint_cannot_be_deleted_overwritten_or_forged(bank: Bank) -> None:
    point = bank.checkpoint()
    assert point is not None
    key = point.object_key
    (version,) = bank.s3.list_object_versions(Bucket=bank.bucket, Prefix=key)["Versions"]
    # Attack: delete the locked version (compliance mode: not even with the governance bypass)
    for bypass in (False, True):
        with pytest.raises(bank.s3.exceptions.ClientError, match="AccessDenied"):
            bank.s3.delete_object(
                Bucket=bank.bucket, Key=key, VersionId=version["VersionId"], BypassGovernanceRetention=bypass
            )
    # Attack: put a forged checkpoint of a rewritten head over it (a new version; the locked one stays)
    forged = {**point.to_json(), "hash": "f" * 64}
    bank.s3.put_object(Bucket=bank.bucket, Key=key, Body=json.dumps(forged).encode())
    result = bank.verify()
    assert not result.ok
    bad = result.first_bad_record
    assert bad is not None and bad.reason == "checkpoint_invalid" and "does not verify" in bad.detail
    # Attack: sign the forgery with a key of the attacker's own (not a trusted checkpoint key)
    bank.s3.delete_object(Bucket=bank.bucket, Key=key)  # a delete marker: hides nothing from verify
    rogue = bank.kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    signer = KmsCheckpointSigner(bank.kms, rogue)
    message = f"vaultpay-audit-checkpoint/1\n20\n{'e' * 64}\n{point.at}".encode()
    signature = base64.urlsafe_b64encode(signer.sign(message)).decode().rstrip("=")
    rogue_point = {
        **point.to_json(),
        "seq": 20,
        "hash": "e" * 64,
        "key_id": signer.key_id(),
        "signature": signature,
    }
    bank.s3.put_object(
        Bucket=bank.bucket, Key=f"checkpoints/{20:020d}.json", Body=json.dumps(rogue_point).encode()
    )
    reasons = {c.problem for c in bank.checked() if not c.signature_ok}
    assert "signed by a key that is not trusted" in reasons


def test_a_chain_that_does_not_verify_is_never_signed(bank: Bank) -> None:
    records = _records(bank)
    bank.ddb.put_item(
        TableName=bank.table, Item=record_item(dataclasses.replace(records[5], prev_hash=GENESIS_HASH))
    )
    assert bank.checkpoint() is None
    assert bank.s3.list_object_versions(Bucket=bank.bucket).get("Versions", []) == []

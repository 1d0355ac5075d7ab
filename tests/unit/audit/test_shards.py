"""The audit log as N chains: the chain an event goes to, each chain verified on its own, one checkpoint over
every chain's head, and queries across chains (in-memory store, a local P-256 key standing in for KMS)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from vaultpay.audit.checkpoints import (
    FORMAT,
    FORMAT_CHAINS,
    CheckedCheckpoint,
    Checkpoint,
    check_checkpoints,
    checkpoint_of_heads,
    new_checkpoint,
)
from vaultpay.audit.memory import InMemoryAuditStore
from vaultpay.audit.model import (
    APPENDED,
    DUPLICATE,
    GENESIS_HASH,
    MAX_CHAINS,
    AuditEntry,
    AuditRecord,
    ChainAnchor,
    ChainHead,
    chain_of,
    log_head,
)
from vaultpay.audit.service import AuditQueryRequest, AuditService
from vaultpay.bootstrap.settings import AuditSettings

pytestmark = pytest.mark.unit

AT = "2026-12-07T10:00:00.000Z"


class LocalSigner:
    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())

    def key_id(self) -> str:
        return "key-1"

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message, ec.ECDSA(hashes.SHA256()))


class Keys:
    def __init__(self, signer: LocalSigner) -> None:
        self._key = signer.private.public_key()

    def public_key(self, key_id: str) -> ec.EllipticCurvePublicKey | None:
        return self._key if key_id == "key-1" else None


class Bucket:
    """The checkpoint bucket: a second put of the same key is refused, as Object Lock does."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, checkpoint: Checkpoint) -> bool:
        if checkpoint.object_key in self.objects:
            return False
        self.objects[checkpoint.object_key] = json.dumps(checkpoint.to_json()).encode()
        return True

    def checked(self, signer: LocalSigner) -> list[CheckedCheckpoint]:
        return check_checkpoints(iter(sorted(self.objects.items())), Keys(signer))


def entry(n: int) -> AuditEntry:
    return AuditEntry(
        audit_id=f"evt-{n:05d}",
        occurred_at=f"2026-12-07T10:00:{n % 60:02d}.000Z",
        type="vaultpay.account.deposited",
        actor=f"usr_{n % 3}",
        correlation_id=f"corr-{n % 5}",
        subject=f"acc_{n}",
        data={"amount": n},
    )


def sharded(chains: int = 4, events: int = 40) -> tuple[InMemoryAuditStore, AuditService]:
    store = InMemoryAuditStore(chains)
    service = AuditService(store)
    service.append_entries([entry(n) for n in range(events)])
    return store, service


# ---- which chain -------------------------------------------------------------------------------------


def test_one_chain_puts_every_event_in_chain_0() -> None:
    assert {chain_of(f"evt-{n}", 1) for n in range(100)} == {0}


def test_the_chain_of_an_event_is_a_stable_hash_of_its_id() -> None:
    # Pinned: a redelivery must be looked for where the first delivery went, in any process and release.
    assert [chain_of(f"evt-{n:05d}", 4) for n in range(8)] == [0, 2, 1, 2, 0, 0, 2, 3]
    assert chain_of("evt-00001", 4) == int.from_bytes(hashlib.sha256(b"evt-00001").digest()[:8], "big") % 4


def test_events_spread_evenly_over_the_chains() -> None:
    counts = Counter(chain_of(f"evt-{n}", 8) for n in range(8000))
    assert set(counts) == set(range(8))
    assert all(800 <= count <= 1200 for count in counts.values()), counts


def test_the_settings_bound_on_chains_is_the_domains() -> None:
    assert AuditSettings.load({"AUDIT_CHAINS": str(MAX_CHAINS)}).audit_chains == MAX_CHAINS
    assert AuditSettings.load({}).audit_chains == 1


# ---- append and verify -------------------------------------------------------------------------------


def test_each_chain_is_numbered_and_linked_on_its_own() -> None:
    # Given 40 events over 4 chains
    store, _ = sharded()

    # Then every chain is 1, 2, 3... from the genesis, and each record says which chain it is in
    assert sum(len(log) for log in store.logs.values()) == 40
    for chain, log in store.logs.items():
        records = [r for r in log if isinstance(r, AuditRecord)]
        assert records, f"chain {chain} is empty"
        assert [r.seq for r in records] == list(range(1, len(records) + 1))
        assert records[0].prev_hash == GENESIS_HASH
        assert all(r.chain == chain for r in records)
        assert all(("chain" in r.to_dict()) == (chain != 0) for r in records)


def test_a_duplicate_event_is_refused_whatever_chain_it_aims_at() -> None:
    store, service = sharded()
    again = service.append_entries([entry(n) for n in range(40)])
    assert {o.status for o in again} == {DUPLICATE}
    assert sum(len(log) for log in store.logs.values()) == 40
    assert service.append_entries([entry(40)])[0].status == APPENDED


def test_the_log_verifies_chain_by_chain_and_reports_each() -> None:
    _, service = sharded()

    result = service.verify()

    assert result.ok and result.records_checked == 40
    body = result.to_dict()
    assert [c["chain"] for c in body["chains"]] == [0, 1, 2, 3]
    assert sum(c["records_checked"] for c in body["chains"]) == 40
    # The log's head counts every record and is one hash over the chains' heads
    assert result.head_seq == 40
    assert ChainHead(result.head_seq, result.head_hash) == log_head(result.heads())
    assert result.head_hash not in {head.hash for head in result.heads().values()}


def test_a_record_changed_in_one_chain_is_reported_in_that_chain_only() -> None:
    store, service = sharded()
    victim = store.logs[2][1]
    assert isinstance(victim, AuditRecord)
    store.logs[2][1] = dataclasses.replace(victim, data={"amount": 10**6})

    result = service.verify()

    assert not result.ok
    bad = result.first_bad_record
    assert bad is not None and (bad.chain, bad.seq, bad.reason) == (2, 2, "hash_mismatch")
    assert result.to_dict()["first_bad_record"]["chain"] == 2
    assert [c.ok for c in result.chains] == [True, True, False, True]


def test_a_record_moved_to_another_chain_is_caught() -> None:
    store, service = sharded()
    moved = store.logs[1].pop()
    assert isinstance(moved, AuditRecord)
    head = store.head(3)
    # Even relinked at the end of chain 3, its hash still says chain 1
    store.logs[3].append(dataclasses.replace(moved, seq=head.seq + 1, prev_hash=head.hash))

    result = service.verify()

    assert not result.ok
    bad = result.first_bad_record
    assert bad is not None and bad.chain == 3 and bad.audit_id == moved.audit_id


def test_a_log_of_one_chain_reports_as_before_plus_its_one_chain() -> None:
    _, service = sharded(chains=1, events=5)
    body = service.verify().to_dict()
    assert {k: body[k] for k in ("ok", "records_checked", "head_seq")} == {
        "ok": True,
        "records_checked": 5,
        "head_seq": 5,
    }
    assert body["chains"] == [
        {"chain": 0, "ok": True, "records_checked": 5, "head_seq": 5, "head_hash": body["head_hash"]}
    ]


def test_an_anchor_names_its_chain() -> None:
    head = "a" * 64
    assert ChainAnchor.parse(f"7:{head}") == ChainAnchor(7, head)
    assert ChainAnchor.parse(f"3/7:{head}") == ChainAnchor(7, head, chain=3)
    for bad in (f"x/7:{head}", f"{MAX_CHAINS}/7:{head}", f"3/0:{head}"):
        with pytest.raises(ValueError, match="an anchor is"):
            ChainAnchor.parse(bad)


def test_an_anchor_given_by_hand_checks_its_chain() -> None:
    store, service = sharded()
    last = store.logs[1][-1]
    assert isinstance(last, AuditRecord)
    assert service.verify(ChainAnchor(last.seq, last.hash, chain=1)).ok
    wrong = ChainAnchor(last.seq, "b" * 64, chain=1)
    bad = service.verify(wrong).first_bad_record
    assert bad is not None and (bad.chain, bad.reason) == (1, "anchor_mismatch")


# ---- checkpoints -------------------------------------------------------------------------------------


def test_one_checkpoint_signs_every_chains_head_under_the_logs_seq() -> None:
    # Given a log of 4 chains and a checkpoint of it
    _, service = sharded()
    signer, bucket = LocalSigner(), Bucket()
    point = service.checkpoint(signer, bucket, service.verify(), now=1.8e9)
    assert point is not None

    # Then it is format 2, stored under the log's record count, and pins each chain's head
    document = json.loads(bucket.objects[point.object_key])
    assert document["format"] == FORMAT_CHAINS and point.seq == 40
    assert [h["chain"] for h in document["heads"]] == [0, 1, 2, 3]
    assert {c: (s, h) for c, s, h in point.chain_heads()} == {
        c: (head.seq, head.hash) for c, head in service.verify().heads().items()
    }
    (checked,) = bucket.checked(signer)
    assert checked.signature_ok and checked.checkpoint == point
    # And the same heads again make no second checkpoint
    assert service.checkpoint(signer, bucket, service.verify(checkpoints=[checked]), now=1.8e9 + 60) is None
    assert service.verify(checkpoints=[checked]).checkpoints_checked == 1


def test_a_chain_truncated_behind_the_checkpoint_is_caught() -> None:
    store, service = sharded()
    signer, bucket = LocalSigner(), Bucket()
    service.checkpoint(signer, bucket, service.verify(), now=1.8e9)
    dropped = store.logs[3].pop()

    result = service.verify(checkpoints=bucket.checked(signer))

    assert not result.ok
    bad = result.first_bad_record
    assert bad is not None and (bad.chain, bad.reason, bad.seq) == (3, "truncated", dropped.seq)


def test_a_chain_deleted_whole_is_caught_by_the_checkpoint_even_when_n_is_lowered() -> None:
    store, service = sharded()
    signer, bucket = LocalSigner(), Bucket()
    service.checkpoint(signer, bucket, service.verify(), now=1.8e9)
    # An attacker empties chain 3 and the operator (or the attacker) lowers N to 3
    lowered = InMemoryAuditStore(3)
    lowered.logs = {k: list(store.logs[k]) for k in range(3)}

    result = AuditService(lowered).verify(checkpoints=bucket.checked(signer))

    assert not result.ok
    bad = result.first_bad_record
    assert bad is not None and (bad.chain, bad.reason) == (3, "truncated")


def test_a_checkpoint_of_chain_0_alone_is_format_1_as_before() -> None:
    signer = LocalSigner()
    head = ChainHead(7, "c" * 64)
    point = checkpoint_of_heads(signer, {0: head, 1: ChainHead(0, GENESIS_HASH)}, AT)
    assert point.to_json()["format"] == FORMAT and "heads" not in point.to_json()
    assert point.object_key == new_checkpoint(signer, 7, "c" * 64, AT).object_key
    assert point.chain_heads() == ((0, 7, "c" * 64),)


def test_a_format_2_checkpoint_whose_seq_or_hash_is_not_its_heads_is_unreadable() -> None:
    signer = LocalSigner()
    point = checkpoint_of_heads(signer, {0: ChainHead(2, "a" * 64), 1: ChainHead(3, "b" * 64)}, AT)
    assert point.seq == 5
    document = point.to_json()
    for change in ({"hash": "d" * 64}, {"heads": [document["heads"][1], document["heads"][0]]}):
        body = json.dumps({**document, **change}).encode()
        (checked,) = check_checkpoints(iter([(point.object_key, body)]), Keys(signer))
        assert checked.checkpoint is None and not checked.signature_ok, change
    tampered = {**document, "heads": [document["heads"][0], {**document["heads"][1], "seq": 4}], "seq": 6}
    stored = ("checkpoints/00000000000000000006.json", json.dumps(tampered).encode())
    (forged,) = check_checkpoints(iter([stored]), Keys(signer))
    assert not forged.signature_ok


# ---- queries -----------------------------------------------------------------------------------------


def test_pages_across_chains_list_every_record_once_newest_first() -> None:
    store, service = sharded(events=45)
    expected = sorted(
        (r for log in store.logs.values() for r in log if isinstance(r, AuditRecord)),
        key=lambda r: (r.occurred_at, r.seq, r.chain),
        reverse=True,
    )
    seen: list[AuditRecord] = []
    cursor = None
    while True:
        page = service.query(AuditQueryRequest(limit=7, cursor=cursor))
        seen.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [(r.chain, r.seq) for r in seen] == [(r.chain, r.seq) for r in expected]


def test_a_cursor_names_the_chain_of_the_record_it_ended_at() -> None:
    # Given two records at the same millisecond with the same seq, in chains 0 and 1
    store = InMemoryAuditStore(2)
    first = next(n for n in range(100) if chain_of(f"evt-{n:05d}", 2) == 0)
    second = next(n for n in range(100) if chain_of(f"evt-{n:05d}", 2) == 1)
    same_time = [dataclasses.replace(entry(n), occurred_at=AT) for n in (first, second)]
    service = AuditService(store)
    service.append_entries(same_time)

    # When they are listed one a page
    page = service.query(AuditQueryRequest(limit=1))
    rest = service.query(AuditQueryRequest(limit=1, cursor=page.next_cursor))

    # Then chain 1's comes first (it sorts after chain 0's at the same time and seq) and the cursor goes on
    # to chain 0's, which a cursor of (time, seq) alone could not tell from it
    assert [(r.chain, r.seq) for r in page.items + rest.items] == [(1, 1), (0, 1)]
    assert rest.next_cursor is None


def test_a_checkpoint_signed_before_the_log_had_chains_still_pins_chain_0() -> None:
    # Given a one-chain log with a format-1 checkpoint of its head
    old_store, old_service = sharded(chains=1, events=6)
    signer, bucket = LocalSigner(), Bucket()
    old = old_service.checkpoint(signer, bucket, old_service.verify(), now=1.8e9)
    assert old is not None and old.to_json()["format"] == FORMAT

    # When the same table goes on as four chains and is checkpointed again
    store = InMemoryAuditStore(4)
    store.logs[0], store.markers = list(old_store.chain), set(old_store.markers)
    service = AuditService(store)
    service.append_entries([entry(n) for n in range(6, 30)])
    new = service.checkpoint(
        signer, bucket, service.verify(checkpoints=bucket.checked(signer)), now=1.8e9 + 60
    )

    # Then both checkpoints verify, the new one sorts after the old, and chain 0 still passes the old head
    assert new is not None and new.to_json()["format"] == FORMAT_CHAINS and new.seq == 30
    assert new.object_key > old.object_key
    result = service.verify(checkpoints=bucket.checked(signer))
    assert result.ok and result.checkpoints_checked == 2
    # And a chain 0 rewritten behind the old checkpoint is caught by it
    store.logs[0] = store.logs[0][:3]
    bad = service.verify(checkpoints=bucket.checked(signer)).first_bad_record
    assert bad is not None and (bad.chain, bad.reason) == (0, "truncated")

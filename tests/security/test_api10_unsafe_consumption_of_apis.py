"""OWASP API10:2023 Unsafe Consumption of APIs: what VaultPay takes from the event bus (NATS JetStream).

The audit consumer (vaultpay.audit.consumer, vaultpay.audit.model.entry_from_json) and the fraud consumer
(vaultpay.fraud.consumer, vaultpay.fraud.records.profile_event) read every message as untrusted input: a
message that is not strict JSON, not a CloudEvent of ours, or whose data is not canonical is nak'd (and ends
in the dead-letter stream), never recorded, and never stops the genuine messages of its batch.

What they do not do is authenticate the publisher: JetStream is trusted, so whoever can publish to it can
write well-formed events into the audit log and the risk profiles. The two xfail tests below demonstrate
that gap; SECURITY.md explains it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from support.bank import SAVINGS, signed_in_customer

from vaultpay.audit.consumer import consume as consume_audit
from vaultpay.audit.memory import InMemoryAuditStore
from vaultpay.audit.model import AuditRecord
from vaultpay.audit.service import AuditService
from vaultpay.fraud.consumer import consume as consume_fraud
from vaultpay.shared.events import DomainEvent


class Message:
    """A JetStream message as the consumers see it, recording what they answered."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.metadata = None
        self.answer: str | None = None

    async def ack(self) -> None:
        self.answer = "ack"

    async def nak(self, delay: float | None = None) -> None:
        self.answer = "nak"


class OneBatch:
    """A pull consumer holding one batch."""

    def __init__(self, messages: list[Message]) -> None:
        self._batches = [messages]

    async def fetch(self, batch: int, wait_s: float) -> list[Any]:
        return list(self._batches.pop(0)) if self._batches else []

    async def flush(self) -> None:
        return None


def _genuine(n: int, type_: str = "vaultpay.account.deposited", **data: Any) -> dict[str, Any]:
    """An event as the relay publishes it."""
    return DomainEvent(
        type=type_,
        source="/vaultpay/accounts",
        subject=f"acc_{n}",
        data=data or {"account_id": f"acc_{n}", "amount": 100 + n},
        correlation_id=f"corr-{n}",
        actor="usr_admin",
        id=f"evt-{uuid.uuid4().hex}",
        time="2026-11-28T10:00:00.000Z",
    ).cloudevent()


def _text(envelope: dict[str, Any]) -> str:
    return json.dumps(envelope, ensure_ascii=False)


def _hostile() -> dict[str, bytes]:
    base = _genuine(0)
    duplicate = _text(base).replace('"amount": 100', '"amount": 100, "amount": 100000000000')
    return {
        "not JSON": b"\xff\xfe{",
        "a key twice (a parser differential)": duplicate.encode(),
        "NaN": _text(base).replace('"amount": 100', '"amount": NaN').encode(),
        "a float amount": _text({**base, "data": {"amount": 100.5}}).encode(),
        "an integer beyond 2^53": _text({**base, "data": {"amount": 2**63}}).encode(),
        "a type outside vaultpay.*": _text({**base, "type": "evil.account.deposited"}).encode(),
        "an id with a control character": _text({**base, "id": "evt-\n-forged"}).encode(),
        "an id of 10,000 characters": _text({**base, "id": "e" * 10_000}).encode(),
        "an actor with spaces": _text({**base, "actor": "usr admin"}).encode(),
        "data over 64 KiB": _text({**base, "data": {"note": "x" * 70_000}}).encode(),
        "a lone surrogate": _text(base).replace('"acc_0"', '"acc_\\ud800"').encode(),
        "no specversion": _text({k: v for k, v in base.items() if k != "specversion"}).encode(),
        "data that is a list": _text({**base, "data": [1, 2]}).encode(),
        "a time without a zone": _text({**base, "time": "2026-11-28T10:00:00"}).encode(),
        "an array, not an event": b"[]",
    }


HOSTILE = _hostile()


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_the_audit_consumer_records_no_hostile_message_and_keeps_the_genuine_ones(name: str) -> None:
    # Given a batch with a hostile message between two genuine ones
    store = InMemoryAuditStore()
    first, second = _genuine(1), _genuine(2)
    messages = [Message(_text(first).encode()), Message(HOSTILE[name]), Message(_text(second).encode())]
    # When the audit consumer runs
    report = await consume_audit(OneBatch(messages), AuditService(store), remaining_ms=lambda: 60_000)
    # Then the hostile one is refused for redelivery (and the dead-letter stream), the others recorded
    assert [m.answer for m in messages] == ["ack", "nak", "ack"], name
    assert (report.appended, report.rejected) == (2, 1)
    records = [r for r in store.records() if isinstance(r, AuditRecord)]
    assert [r.audit_id for r in records] == [first["id"], second["id"]]
    assert AuditService(store).verify().ok


class Profiles:
    """A ProfileService that records what it was asked to apply."""

    def __init__(self) -> None:
        self.applied: list[Any] = []

    def apply(self, event: Any) -> bool:
        self.applied.append(event)
        return True


def _completed(**data: Any) -> dict[str, Any]:
    """A transaction.completed event, its data changed after it was built (as a forger would)."""
    fields = {"user_id": "usr_1", "destination_account_id": "acc_2", "amount": 500}
    envelope = _genuine(1, "vaultpay.transaction.completed", **fields)
    envelope["data"] = {**fields, **data}
    return envelope


@pytest.mark.unit
@pytest.mark.parametrize(
    "envelope",
    [
        _completed(amount=5.5),
        _completed(amount=True),
        _completed(amount=-1),
        _completed(amount=10**13),
        _completed(user_id=""),
        _completed(user_id="usr 1"),
        {**_genuine(1, "vaultpay.auth.login.succeeded", user_id="usr_1", device_id="d"), "time": "yesterday"},
        {**_completed(), "data": "not an object"},
        {**_completed(), "id": None},
    ],
    ids=["float", "bool", "negative", "too large", "empty user", "user with space", "no time", "data", "id"],
)
async def test_the_fraud_consumer_applies_no_malformed_profile_event(envelope: dict[str, Any]) -> None:
    profiles = Profiles()
    message = Message(_text(envelope).encode())
    control = Message(_text(_completed()).encode())
    report = await consume_fraud(OneBatch([message, control]), profiles, remaining_ms=lambda: 60_000)
    assert (message.answer, control.answer) == ("nak", "ack")
    assert (report.rejected, report.applied) == (1, 1)
    assert len(profiles.applied) == 1


@pytest.mark.unit
async def test_the_fraud_consumer_refuses_a_key_twice_as_the_audit_consumer_does() -> None:
    profiles = Profiles()
    payload = _text(_completed(amount=500)).replace('"amount": 500', '"amount": 500, "amount": 900000000000')
    message = Message(payload.encode())
    await consume_fraud(OneBatch([message]), profiles, remaining_ms=lambda: 60_000)
    assert profiles.applied == []
    assert message.answer == "nak"


async def _publish(url: list[str], envelope: dict[str, Any], login: dict[str, Any]) -> list[str]:
    """Publishes as a plain NATS client would (not through JetStream's API); answers the server's errors."""
    import nats

    errors: list[str] = []

    async def collect(exc: Exception) -> None:
        errors.append(str(exc))

    client = await nats.connect(
        url, allow_reconnect=False, max_reconnect_attempts=1, connect_timeout=3, error_cb=collect, **login
    )
    try:
        await client.publish(
            envelope["type"], _text(envelope).encode(), headers={"Nats-Msg-Id": envelope["id"]}
        )
        await client.flush()
        await asyncio.sleep(0.3)  # the server's -ERR for a denied publish arrives asynchronously
    finally:
        await client.close()
    return errors


def _audited(admin: Any, correlation_id: str) -> list[dict[str, Any]]:
    reply = admin.get(f"/v1/admin/audit?correlation_id={correlation_id}")
    assert reply.status == 200, reply.body
    return list(reply.body["items"])


@pytest.mark.e2e
def test_an_event_published_by_someone_other_than_the_relay_is_not_recorded(
    local_cloud: Any, api: Callable[..., Any], admin: Any
) -> None:
    # Given an attacker who reaches the bus and forges a fraud approval, in the system's name
    forged = DomainEvent(
        type="vaultpay.fraud.result",
        source="/vaultpay/fraud",
        subject="tr_" + uuid.uuid4().hex,
        data={"decision": "APPROVE", "score": 0, "reasons": []},
        correlation_id="forged-" + uuid.uuid4().hex,
        actor=None,
    ).cloudevent()
    # Attack 1: no user at all (over TLS, trusting the cloud's CA) -> refused at connect
    login = local_cloud.nats_login("audit")
    anonymous = {"tls": login["tls"]}
    with pytest.raises(Exception, match="Authorization Violation"):
        asyncio.run(_publish(local_cloud.nats, forged, anonymous))
    # Attack 2: plain text -> refused (the server speaks TLS only; the cloud's CA is not the system's)
    plain = [url.replace("tls://", "nats://") for url in local_cloud.nats]
    with pytest.raises(Exception, match=r"CERTIFICATE_VERIFY_FAILED|SSL|TLS"):
        asyncio.run(_publish(plain, forged, {}))
    # Attack 3: a consumer's own credentials (stolen from its function) -> it may not publish events
    violations = asyncio.run(_publish(local_cloud.nats, forged, login))
    assert any("permissions violation" in v for v in violations), violations
    # When a genuine event is published after it, through the outbox and the relay, and is recorded
    genuine = "genuine-" + uuid.uuid4().hex
    customer = signed_in_customer(api, device_id="bus-witness")
    opened = customer.post(
        "/v1/accounts", SAVINGS, headers={"Idempotency-Key": genuine, "X-Correlation-Id": genuine}
    )
    assert opened.status == 201, opened.body
    deadline = time.monotonic() + 60
    while not _audited(admin, genuine):
        assert time.monotonic() < deadline, "the genuine event never reached the audit log"
        time.sleep(0.5)
    # Then the forged event, consumed before it, is not in the audit log
    assert _audited(admin, forged["correlationid"]) == []


@pytest.mark.e2e
def test_a_stolen_nats_password_cannot_read_another_functions_replies(local_cloud: Any) -> None:
    import nats

    async def subscribe_as(role: str, subject: str) -> list[str]:
        errors: list[str] = []

        async def collect(exc: Exception) -> None:
            errors.append(str(exc))

        client = await nats.connect(
            local_cloud.nats,
            allow_reconnect=False,
            connect_timeout=3,
            error_cb=collect,
            **local_cloud.nats_login(role),
        )
        try:
            await client.subscribe(subject)
            await client.flush()
            await asyncio.sleep(0.3)  # the server's -ERR for a denied subscription arrives asynchronously
        finally:
            await client.close()
        return errors

    # The health check's password, stolen: what the audit consumer pulls arrives on the audit user's inbox
    for subject in ("_INBOX_audit.>", "_INBOX.>", "vaultpay.>"):
        errors = asyncio.run(subscribe_as("health", subject))
        assert any("permissions violation" in e.lower() for e in errors), (subject, errors)
    # While each user reads its own inbox (how every PubAck and pulled message reaches it)
    assert asyncio.run(subscribe_as("audit", "_INBOX_audit.>")) == []

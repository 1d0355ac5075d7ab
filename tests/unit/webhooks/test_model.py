"""The webhooks domain's rules without I/O: URLs and addresses (a stubbed resolver, never a real look-up),
signatures, secrets, the retry schedule, disabling, event selection and the customer's view of an event."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from vaultpay.shared.errors import ValidationFailed
from vaultpay.webhooks.errors import WebhookUrlNotAllowed
from vaultpay.webhooks.model import (
    CUSTOMER_EVENT_TYPES,
    RetryPolicy,
    SigningSecrets,
    UrlPolicy,
    check_patterns,
    customer_view,
    matches,
    new_secret,
    parse_url,
    recipients,
    resolve_checked,
    signature,
    signature_header,
    verify_signature,
)

pytestmark = pytest.mark.unit

DEV = UrlPolicy(allow_http_loopback=False)
LOCAL = UrlPolicy(allow_http_loopback=True)


def _resolver(answers: dict[str, list[str]]) -> Any:
    def resolve(host: str, port: int) -> list[str]:
        return answers.get(host, [])

    return resolve


# ---- URLs ----


def test_an_https_url_to_a_public_host_is_allowed() -> None:
    url = parse_url("https://hooks.example.com/vaultpay?x=1", DEV)
    assert (url.scheme, url.host, url.port) == ("https", "hooks.example.com", 443)


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "ftp://hooks.example.com/x",
        "https://user:pw@hooks.example.com/x",
        "https://hooks.example.com/x#frag",
        "https:///nohost",
        "https://localhost/x",
        "https://metadata.google.internal/x",
        "https://hooks.example.com/ x",
        "https://hooks.example.com:99999/x",
        "https://" + "a" * 2048 + ".com/",
    ],
)
def test_a_url_that_is_not_plain_https_to_a_named_public_host_is_refused(url: str) -> None:
    with pytest.raises(WebhookUrlNotAllowed) as caught:
        parse_url(url, DEV)
    assert caught.value.code == "webhook_url_not_allowed" and caught.value.status == 422


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "[::1]",
        "[::]",
        "[fe80::1]",
        "[fc00::1]",
        "[fd12:3456::1]",
        "[ff02::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:169.254.169.254]",
        "[::ffff:10.0.0.1]",
        "[2002:a9fe:a9fe::1]",
        "[64:ff9b::a9fe:a9fe]",
    ],
)
def test_an_ip_literal_that_is_not_public_is_refused_at_registration(host: str) -> None:
    with pytest.raises(WebhookUrlNotAllowed):
        parse_url(f"https://{host}/hook", DEV)


def test_a_public_ip_literal_is_allowed() -> None:
    assert parse_url("https://93.184.216.34/hook", DEV).host == "93.184.216.34"
    assert parse_url("https://[2606:2800:220:1::1]/hook", DEV).port == 443


def test_the_local_stage_alone_allows_http_to_127_0_0_1_with_a_port() -> None:
    url = parse_url("http://127.0.0.1:8765/hook", LOCAL)
    assert (url.scheme, url.port) == ("http", 8765)
    assert resolve_checked(url, LOCAL, _resolver({})) == ["127.0.0.1"]
    for refused in ("http://127.0.0.1:8765/hook", "https://127.0.0.1:8765/hook"):
        with pytest.raises(WebhookUrlNotAllowed):
            parse_url(refused, DEV)
    for other in (
        "http://127.0.0.1/hook",
        "http://localhost:8765/",
        "http://10.0.0.1:80/",
        "http://[::1]:80/",
    ):
        with pytest.raises(WebhookUrlNotAllowed):
            parse_url(other, LOCAL)


def test_a_name_is_checked_once_resolved_and_one_private_answer_refuses_it() -> None:
    url = parse_url("https://hooks.example.com/x", DEV)
    resolve = _resolver(
        {"hooks.example.com": ["93.184.216.34"], "rebind.example.com": ["93.184.216.34", "169.254.169.254"]}
    )
    assert resolve_checked(url, DEV, resolve) == ["93.184.216.34"]
    with pytest.raises(WebhookUrlNotAllowed):
        resolve_checked(parse_url("https://rebind.example.com/x", DEV), DEV, resolve)


def test_a_name_that_does_not_resolve_or_resolves_to_loopback_is_refused() -> None:
    resolve = _resolver({"evil.example.com": ["::ffff:127.0.0.1"]})
    for host in ("nowhere.example.com", "evil.example.com"):
        with pytest.raises(WebhookUrlNotAllowed):
            resolve_checked(parse_url(f"https://{host}/x", LOCAL), LOCAL, resolve)


# ---- patterns ----


def test_patterns_match_exactly_by_prefix_or_all() -> None:
    assert matches("vaultpay.transaction.*", "vaultpay.transaction.completed")
    assert matches("vaultpay.account.*", "vaultpay.account.funds.held")
    assert not matches("vaultpay.account.*", "vaultpay.accounting.x")
    assert matches("*", "vaultpay.account.created")
    assert matches("vaultpay.transaction.completed", "vaultpay.transaction.completed")
    assert not matches("vaultpay.transaction.completed", "vaultpay.transaction.completed.x")


def test_patterns_must_be_well_formed_unique_and_match_a_customer_event() -> None:
    assert check_patterns(["vaultpay.transaction.*", "vaultpay.account.created"])
    for bad in ([], ["vaultpay.fraud.*"], ["vaultpay.*.completed"], ["x" * 5], ["*", "*"], ["*"] * 21):
        with pytest.raises(ValidationFailed):
            check_patterns(bad)


# ---- signing ----


def test_a_secret_is_whsec_and_at_least_32_random_bytes() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(first) - len("whsec_") >= 43  # 32 bytes in URL-safe base64


def test_a_signature_verifies_under_its_secret_only_and_within_the_tolerance() -> None:
    body = b'{"id":"e1"}'
    header = signature_header(["whsec_a"], 1_700_000_000, body)
    assert header == f"t=1700000000,v1={signature('whsec_a', 1_700_000_000, body)}"
    assert verify_signature(header, "whsec_a", body, now=1_700_000_100)
    assert not verify_signature(header, "whsec_b", body, now=1_700_000_100)
    assert not verify_signature(header, "whsec_a", body + b" ", now=1_700_000_100)
    assert not verify_signature(header, "whsec_a", body, now=1_700_000_000 + 301)


def test_during_a_rotation_both_secrets_sign_until_the_overlap_ends() -> None:
    secrets = SigningSecrets(current="whsec_new", previous="whsec_old", previous_until=1000.0)
    assert secrets.active(999.0) == ("whsec_new", "whsec_old")
    assert secrets.active(1000.0) == ("whsec_new",)
    header = signature_header(secrets.active(10.0), 10, b"{}")
    assert header.count("v1=") == 2
    assert verify_signature(header, "whsec_old", b"{}", now=10)
    assert verify_signature(header, "whsec_new", b"{}", now=10)
    assert "whsec" not in repr(secrets)


# ---- retries ----


def test_retries_back_off_exponentially_with_jitter_and_stop_after_a_day() -> None:
    policy = RetryPolicy()
    rng = random.Random(7)
    first = now = 0.0
    attempts, delays = 1, []
    while (
        at := policy.next_attempt_at(attempts=attempts, first_at=first, now=now, jitter=rng.random())
    ) is not None:
        delays.append(at - now)
        now, attempts = at, attempts + 1
    assert 30 <= delays[0] <= 60
    assert all(later >= earlier * 0.5 for earlier, later in itertools.pairwise(delays))
    assert max(delays) <= 6 * 3600
    assert now >= 24 * 3600  # retried over at least 24 h, then FAILED
    assert 6 <= attempts <= 20


def test_the_local_time_scale_brings_the_first_retry_within_a_second() -> None:
    policy = RetryPolicy(time_scale=60)
    assert policy.delay(1, 0.999) <= 1.0
    assert policy.next_attempt_at(attempts=5, first_at=0, now=24 * 60, jitter=0.5) is None


def test_an_endpoint_failing_every_delivery_for_three_days_is_disabled() -> None:
    policy = RetryPolicy()
    assert not policy.disables(None, 10**9)
    assert not policy.disables(0.0, 3 * 86400 - 1)
    assert policy.disables(0.0, 3 * 86400)


# ---- selection and the customer view ----

OWNERS = {"acc_a": "usr_alice", "acc_b": "usr_bob"}


def _event(kind: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/vaultpay/test",
        "type": kind,
        "time": "2026-11-28T10:15:30.123Z",
        "subject": "s",
        "datacontenttype": "application/json",
        "correlationid": "c-1",
        "actor": "usr_admin",
        "data": data,
        **extra,
    }


def test_a_completed_transfer_reaches_its_sender_and_its_recipient() -> None:
    event = _event(
        "vaultpay.transaction.completed",
        {
            "transfer_id": "tr_1",
            "user_id": "usr_alice",
            "source_account_id": "acc_a",
            "destination_account_id": "acc_b",
            "amount": 100,
            "currency": "INR",
        },
    )
    assert recipients(event, OWNERS) == {"usr_alice", "usr_bob"}
    bob = customer_view(event, "usr_bob", OWNERS)
    assert bob["data"] == {
        "transfer_id": "tr_1",
        "destination_account_id": "acc_b",
        "amount": 100,
        "currency": "INR",
    }
    assert "actor" not in bob and bob["id"] == "e-1"
    alice = customer_view(event, "usr_alice", OWNERS)
    assert alice["data"]["user_id"] == "usr_alice" and "destination_account_id" not in alice["data"]


def test_a_declined_transfer_reaches_its_sender_only() -> None:
    event = _event(
        "vaultpay.transaction.declined", {"transfer_id": "tr_1", "user_id": "usr_alice", "amount": 1}
    )
    assert recipients(event, OWNERS) == {"usr_alice"}


def test_an_accounts_events_reach_its_owner() -> None:
    deposited = _event(
        "vaultpay.account.deposited", {"account_id": "acc_b", "amount": 5, "deposit_id": "dep_1"}
    )
    assert recipients(deposited, OWNERS) == {"usr_bob"}
    assert recipients(deposited, {}) == set()


@pytest.mark.parametrize(
    "kind",
    [
        "vaultpay.fraud.result",
        "vaultpay.fraud.check.requested",
        "vaultpay.transaction.debit.requested",
        "vaultpay.auth.login.succeeded",
        "vaultpay.account.deposit_approved",
        "vaultpay.gateway.request.logged",
    ],
)
def test_internal_event_types_reach_no_customer(kind: str) -> None:
    event = _event(kind, {"user_id": "usr_alice", "account_id": "acc_a", "score": 90, "transfer_id": "tr_1"})
    assert recipients(event, OWNERS) == set()


def test_the_customer_view_drops_every_key_its_type_does_not_list() -> None:
    event = _event(
        "vaultpay.transaction.initiated",
        {"transfer_id": "tr_1", "user_id": "usr_alice", "score": 80, "rules": [{"rule": "X", "score": 50}]},
    )
    assert customer_view(event, "usr_alice", OWNERS)["data"] == {
        "transfer_id": "tr_1",
        "user_id": "usr_alice",
    }


def test_every_customer_type_is_a_real_vaultpay_type() -> None:
    assert all(kind.startswith("vaultpay.") for kind in CUSTOMER_EVENT_TYPES)


def test_the_webhook_consumer_reads_exactly_the_types_a_customer_receives() -> None:
    import json
    from pathlib import Path

    config = json.loads((Path(__file__).resolve().parents[3] / "infra/nats/jetstream.json").read_text())
    [consumer] = [c for c in config["consumers"] if c["durable_name"] == "webhook-workers"]
    assert sorted(consumer["filter_subjects"]) == sorted(CUSTOMER_EVENT_TYPES)

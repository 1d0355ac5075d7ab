"""Fixed-window rate limiting: window keys, counting, refusal with Retry-After, and the fake store."""

from __future__ import annotations

import threading

import pytest

from vaultpay.shared.errors import RateLimited
from vaultpay.shared.ratelimit import FakeCounterStore, RateLimiter, Window, window_key

pytestmark = pytest.mark.unit

LOGIN = Window(limit=3, period_s=900)
T0 = 1_800_000_000  # a multiple of 900: the start of a window


def test_a_window_key_is_aligned_on_the_period_and_expires_at_the_window_end() -> None:
    key, start, expires_at = window_key("login.account", "idx123", T0 + 899.9, 900)
    assert (start, expires_at) == (T0, T0 + 900)
    assert key == f"RL#login.account#{T0}#idx123"


def test_the_same_window_shares_a_key_and_the_next_window_does_not() -> None:
    first = window_key("login.account", "idx123", T0, 900)[0]
    assert window_key("login.account", "idx123", T0 + 899, 900)[0] == first
    assert window_key("login.account", "idx123", T0 + 900, 900)[0] != first


def test_scopes_and_identities_never_share_a_key() -> None:
    keys = {
        window_key("login.account", "a", T0, 900)[0],
        window_key("login.ip", "a", T0, 900)[0],
        window_key("login.account", "b", T0, 900)[0],
    }
    assert len(keys) == 3


@pytest.mark.parametrize("scope", ["", "Login", "login#ip", "a" * 65, "1login"])
def test_a_scope_must_be_a_short_lower_case_name(scope: str) -> None:
    with pytest.raises(ValueError, match="scope"):
        window_key(scope, "x", T0, 900)


def test_an_empty_identity_or_a_bad_window_is_refused() -> None:
    with pytest.raises(ValueError, match="identity"):
        window_key("login", "", T0, 900)
    with pytest.raises(ValueError, match="positive"):
        Window(limit=0, period_s=60)
    with pytest.raises(ValueError, match="positive"):
        Window(limit=1, period_s=0)


def test_events_up_to_the_limit_pass_and_the_next_is_refused_until_the_window_ends() -> None:
    # Given a limit of 3 per 15 minutes
    limiter = RateLimiter(FakeCounterStore())
    # When 3 attempts arrive, Then they pass and their counts are returned
    assert [limiter.hit("login.account", "idx", LOGIN, now=T0 + s) for s in (0, 10, 20)] == [1, 2, 3]
    # When a 4th arrives 100 s into the window
    with pytest.raises(RateLimited) as caught:
        limiter.hit("login.account", "idx", LOGIN, now=T0 + 100)
    # Then it is refused with Retry-After = the seconds left in the window, and no identity in the message
    assert caught.value.retry_after == 800
    assert caught.value.status == 429
    assert caught.value.code == "rate_limited"
    assert "idx" not in caught.value.message
    # And the next window starts afresh
    assert limiter.hit("login.account", "idx", LOGIN, now=T0 + 900) == 1


def test_retry_after_is_rounded_up_and_never_zero() -> None:
    limiter = RateLimiter(FakeCounterStore())
    window = Window(limit=1, period_s=60)
    limiter.hit("mfa", "c1", window, now=T0)
    with pytest.raises(RateLimited) as caught:
        limiter.hit("mfa", "c1", window, now=T0 + 59.8)
    assert caught.value.retry_after == 1


def test_one_identity_being_limited_does_not_limit_another() -> None:
    limiter = RateLimiter(FakeCounterStore())
    for _ in range(3):
        limiter.hit("login.account", "victim", LOGIN, now=T0)
    with pytest.raises(RateLimited):
        limiter.hit("login.account", "victim", LOGIN, now=T0)
    assert limiter.hit("login.account", "someone-else", LOGIN, now=T0) == 1
    assert limiter.hit("login.ip", "victim", LOGIN, now=T0) == 1


def test_check_refuses_once_the_limit_is_reached_without_counting() -> None:
    # Given a failure-counted limit: check before the attempt, hit only on failure
    store = FakeCounterStore()
    limiter = RateLimiter(store)
    assert limiter.check("login.account", "idx", LOGIN, now=T0) == 0
    assert limiter.check("login.account", "idx", LOGIN, now=T0) == 0
    for _ in range(3):
        limiter.hit("login.account", "idx", LOGIN, now=T0)
    # When a 4th attempt is checked, Then it is refused before any work, and nothing more was counted
    with pytest.raises(RateLimited):
        limiter.check("login.account", "idx", LOGIN, now=T0 + 1)
    assert list(store.counts.values()) == [3]


def test_the_store_is_told_when_the_counter_may_expire() -> None:
    store = FakeCounterStore()
    RateLimiter(store).hit("refresh", "fam1", Window(limit=30, period_s=3600), now=T0 + 5)
    assert list(store.expiries.values()) == [T0 + 3600 - T0 % 3600]


def test_the_fake_store_counts_atomically_across_threads() -> None:
    store = FakeCounterStore()

    def bump() -> None:
        for _ in range(200):
            store.increment("k", 1)

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get("k") == 1600
    assert store.get("other") == 0

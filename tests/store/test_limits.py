"""proxy/store/limits.py and its scripts: GCRA buckets and back-off, on both Redises."""

from __future__ import annotations

import redis

from proxy.config.limits import Rate
from proxy.store.keys import Keys
from proxy.store.limits import Limiter


def _limiter(client: redis.Redis) -> Limiter:
    return Limiter(client, Keys("lim-test:"))


def test_a_bucket_allows_its_burst_then_asks_to_wait(redis_client: redis.Redis) -> None:
    limiter = _limiter(redis_client)
    bucket = limiter.ip_bucket("token", "192.0.2.1")
    rate = Rate(3, 60)
    assert [limiter.check([(bucket, rate)]) for _ in range(3)] == [0, 0, 0]
    wait = limiter.check([(bucket, rate)])
    assert 1 <= wait <= 20  # one request's worth: 60 s / 3


def test_peeking_does_not_spend(redis_client: redis.Redis) -> None:
    limiter = _limiter(redis_client)
    bucket = limiter.client_bucket("mcp_x")
    rate = Rate(1, 60)
    assert all(limiter.check(peek=[(bucket, rate)]) == 0 for _ in range(5))
    assert limiter.check([(bucket, rate)]) == 0
    assert limiter.check(peek=[(bucket, rate)]) > 0


def test_a_refused_charge_does_not_spend_either(redis_client: redis.Redis) -> None:
    """Hammering a full bucket does not push its refill further away."""
    limiter = _limiter(redis_client)
    bucket = limiter.ip_bucket("register", "192.0.2.2")
    rate = Rate(1, 60)
    limiter.check([(bucket, rate)])
    first = limiter.check([(bucket, rate)])
    later = [limiter.check([(bucket, rate)]) for _ in range(10)]
    assert max(later) <= first


def test_long_subjects_are_hashed_into_short_keys(redis_client: redis.Redis) -> None:
    limiter = _limiter(redis_client)
    url = "https://client.example/" + "x" * 500  # a CIMD client id
    assert len(limiter.client_bucket(url)) < 100


def test_failures_back_off_doubling_up_to_the_maximum(
    redis_client: redis.Redis,
) -> None:
    limiter = _limiter(redis_client)
    waits = [
        limiter.record_auth_failure("192.0.2.3", "mcp_y", allowed=2, longest_seconds=8)
        for _ in range(8)
    ]
    assert waits == [0, 0, 1, 2, 4, 8, 8, 8]
    assert limiter.check(blocked=[limiter.auth_block("192.0.2.3", "mcp_y")]) >= 1
    assert limiter.check(blocked=[limiter.auth_block("192.0.2.4", "mcp_y")]) == 0


def test_a_refund_gives_back_one_charge(redis_client: redis.Redis) -> None:
    limiter = _limiter(redis_client)
    bucket = limiter.client_bucket("mcp_z")
    rate = Rate(1, 60)
    assert limiter.check([(bucket, rate)]) == 0
    limiter.refund([(bucket, rate)])
    assert limiter.check([(bucket, rate)]) == 0
    assert limiter.check([(bucket, rate)]) > 0


def test_a_refund_never_goes_below_empty(redis_client: redis.Redis) -> None:
    limiter = _limiter(redis_client)
    bucket = limiter.client_bucket("mcp_w")
    rate = Rate(1, 60)
    for _ in range(5):
        limiter.refund([(bucket, rate)])
    assert limiter.check([(bucket, rate)]) == 0
    assert limiter.check([(bucket, rate)]) > 0


def test_a_lost_script_is_loaded_again(redis_client: redis.Redis) -> None:
    """After a Redis restart (SCRIPT FLUSH), the first check reloads it."""
    limiter = _limiter(redis_client)
    redis_client.script_flush()
    assert limiter.check([(limiter.ip_bucket("token", "192.0.2.9"), Rate(2, 60))]) == 0


def test_the_client_cap_counts_only_unexpired_registrations(
    redis_client: redis.Redis,
) -> None:
    import time

    limiter = _limiter(redis_client)
    now = int(time.time())
    # "old"'s unused TTL is over: it no longer counts against the cap.
    assert limiter.reserve_client("old", now - 10, max_clients=2)
    assert limiter.reserve_client("new", now + 3600, max_clients=2)
    assert limiter.reserve_client("newer", now + 3600, max_clients=2)
    assert not limiter.reserve_client("newest", now + 3600, max_clients=2)

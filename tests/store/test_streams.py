"""proxy/store/streams.py: per-grant stream leases that end by themselves."""

from __future__ import annotations

import time
import typing as t

from proxy.store import Store


def _store(redis_client: t.Any) -> Store:
    return Store(redis_client, f"test-streams-{time.monotonic_ns()}:")


def test_slots_are_capped_and_released(redis_client: t.Any) -> None:
    leases = _store(redis_client).streams
    assert leases.acquire("g1", "a", slots=2, ms=60_000)
    assert leases.acquire("g1", "b", slots=2, ms=60_000)
    assert not leases.acquire("g1", "c", slots=2, ms=60_000)
    assert leases.acquire("g2", "c", slots=2, ms=60_000)  # another grant
    leases.release([("g1", "a")])
    assert leases.acquire("g1", "c", slots=2, ms=60_000)


def test_a_lease_nobody_renews_ends(redis_client: t.Any) -> None:
    """A killed worker releases nothing: its leases end by themselves."""
    leases = _store(redis_client).streams
    assert leases.acquire("g1", "dead-worker", slots=1, ms=300)
    assert not leases.acquire("g1", "b", slots=1, ms=60_000)
    time.sleep(0.5)
    assert leases.acquire("g1", "b", slots=1, ms=60_000)


def test_a_renewed_lease_lasts(redis_client: t.Any) -> None:
    leases = _store(redis_client).streams
    assert leases.acquire("g1", "a", slots=1, ms=400)
    for _ in range(4):
        time.sleep(0.2)
        leases.renew([("g1", "a")], ms=400)
    assert not leases.acquire("g1", "b", slots=1, ms=400)
    leases.release([("g1", "a")])
    leases.renew([("g1", "a")], ms=400)  # never re-adds a released lease
    assert leases.acquire("g1", "b", slots=1, ms=400)


def test_an_acquire_ends_the_leases_it_names_first(redis_client: t.Any) -> None:
    """The gateway hands a grant's ended streams to its next acquire: at the
    cap, that acquire still wins, and each named lease is gone."""
    store = _store(redis_client)
    leases = store.streams
    assert leases.acquire("g1", "a", slots=2, ms=60_000)
    assert leases.acquire("g1", "b", slots=2, ms=60_000)
    pipe = redis_client.pipeline(transaction=False)
    leases.queue_acquire(pipe, "g1", "c", slots=2, ms=60_000, ending=["a", "b"])
    assert pipe.execute() == [1]
    assert leases.held("g1") == 1  # only c

"""REDIS_WAIT_REPLICAS: a redemption or rotation is answered only once enough
replicas have it, so a Sentinel failover cannot drop a token a client holds."""

from __future__ import annotations

import uuid

import pytest
import redis

from proxy.store import NotReplicatedError
from proxy.store import RedeemResult
from proxy.store import Store
from proxy.store import scripts
from proxy.store.faults import unavailable_cause
from tests.redis_round_trips import RoundTrips

from ..test_store import CODE_TTL
from ..test_store import NOW
from ..test_store import _grant


def _redeem(store: Store) -> RedeemResult:
    store.create_grant(_grant(), ttl=CODE_TTL)
    return store.redeem_code(
        "g" * 22,
        code_hash="c" * 64,
        now=NOW,
        tolerance=0,
        refresh_hash="r" * 64,
        ttl=60,
    )


def test_a_primary_with_its_replica_acknowledges_in_the_same_round_trip(
    sentinel_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(sentinel_client, f"t-{uuid.uuid4().hex[:8]}:", replica_acks=1)
    store.create_grant(_grant(), ttl=CODE_TTL)  # connected
    store.redis.script_load(scripts.REDEEM_CODE)  # as after the first redemption
    trips, result = RoundTrips(monkeypatch).of(
        lambda: store.redeem_code(
            "g" * 22,
            code_hash="c" * 64,
            now=NOW,
            tolerance=0,
            refresh_hash="r" * 64,
            ttl=60,
        )
    )
    assert result is RedeemResult.OK
    assert trips == 1


def test_without_a_replica_the_redemption_is_an_outage_not_a_success(
    real_redis: redis.Redis,
) -> None:
    """WAIT finds no replica: the client is told 503 (a timeout), never 200."""
    store = Store(real_redis, f"t-{uuid.uuid4().hex[:8]}:", replica_acks=1)
    with pytest.raises(NotReplicatedError) as caught:
        _redeem(store)
    assert unavailable_cause(caught.value) == "timeout"


def test_without_replica_acks_nothing_waits(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default sends exactly what it always did: one EVALSHA, no WAIT."""
    store = Store(real_redis, f"t-{uuid.uuid4().hex[:8]}:")
    store.create_grant(_grant(), ttl=CODE_TTL)
    sent: list[tuple[object, ...]] = []
    original = real_redis.execute_command

    def spy(*args: object, **kwargs: object) -> object:
        sent.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(real_redis, "execute_command", spy)
    store.redeem_code(
        "g" * 22,
        code_hash="c" * 64,
        now=NOW,
        tolerance=0,
        refresh_hash="r" * 64,
        ttl=60,
    )
    assert [a[0] for a in sent] == ["EVALSHA"]

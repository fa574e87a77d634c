"""proxy/store/sessions.py: MCP session owners, on fakeredis and real Redis."""

from __future__ import annotations

import redis

from proxy.store.keys import Keys
from proxy.store.sessions import SessionOwners
from proxy.store.sessions import session_hash


def _owners(client: redis.Redis) -> SessionOwners:
    return SessionOwners(client, Keys("t:"))


def test_bind_records_the_owner_with_its_ttl(redis_client: redis.Redis) -> None:
    owners = _owners(redis_client)
    assert owners.bind("sess-1", "alice", ttl_seconds=60)
    assert owners.owner("sess-1") == "alice"
    key = f"t:mcpsession:{{{session_hash('sess-1')}}}"
    assert 0 < redis_client.ttl(key) <= 60


def test_a_bound_session_is_not_rebound_to_another(redis_client: redis.Redis) -> None:
    owners = _owners(redis_client)
    assert owners.bind("sess-1", "alice", ttl_seconds=60)
    assert not owners.bind("sess-1", "mallory", ttl_seconds=60)
    assert owners.bind("sess-1", "alice", ttl_seconds=60)  # the same owner again
    assert owners.owner("sess-1") == "alice"


def test_only_the_owner_unbinds(redis_client: redis.Redis) -> None:
    owners = _owners(redis_client)
    owners.bind("sess-1", "alice", ttl_seconds=60)
    owners.unbind("sess-1", "mallory")
    assert owners.owner("sess-1") == "alice"
    owners.unbind("sess-1", "alice")
    assert owners.owner("sess-1") is None


def test_the_pipelined_read_slides_the_ttl(redis_client: redis.Redis) -> None:
    owners = _owners(redis_client)
    owners.bind("sess-1", "alice", ttl_seconds=10)
    pipe = redis_client.pipeline(transaction=False)
    owners.queue_owner(pipe, "sess-1", ttl_seconds=500)
    owners.queue_owner(pipe, "unknown", ttl_seconds=500)
    found, missing = pipe.execute()
    assert found in ("alice", b"alice")
    assert missing is None
    assert redis_client.ttl(f"t:mcpsession:{{{session_hash('sess-1')}}}") > 10

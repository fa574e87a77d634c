"""proxy/store/grant_index.py: grants by user and by client, on both backends."""

from __future__ import annotations

import dataclasses
import typing as t
import uuid

import pytest
import redis

from proxy.store import RedeemResult
from proxy.store import RotateResult
from proxy.store import Store
from proxy.store.grant_index import subject_hash
from proxy.store.records import Grant
from proxy.store.records import GrantSummary

from ..redis_round_trips import RoundTrips

NOW = 1_800_000_000
DAY = 86400
CODE_TTL = 120


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return Store(redis_client, f"t-{uuid.uuid4().hex[:8]}:")


def _grant(grant_id: str, **override: t.Any) -> Grant:
    fields: dict[str, t.Any] = {
        "grant_id": grant_id,
        "client_id": "mcp_abc",
        "sub": "alice",
        "claims": {"email": "alice@example.com", "name": "Alice"},
        "scope": "mcp",
        "resource": "https://mcp.example.com/mcp",
        "redirect_uri": "http://127.0.0.1/cb",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_hash": "c" * 64,
        "code_exp": NOW + CODE_TTL,
        "created_at": NOW,
        "expires_at": NOW + 90 * DAY,
        "upstream": "sealed-upstream",
    }
    fields.update(override)
    return Grant(**fields)


def _redeem(store: Store, grant_id: str, now: int = NOW + 5) -> RedeemResult:
    return store.redeem_code(
        grant_id,
        code_hash="c" * 64,
        now=now,
        tolerance=0,
        refresh_hash="r1" * 32,
        ttl=3600,
    )


def test_a_new_grant_is_listed_under_its_user_and_its_client(store: Store) -> None:
    store.create_grant(_grant("g1"), ttl=CODE_TTL)
    expected = GrantSummary(
        grant_id="g1",
        client_id="mcp_abc",
        sub="alice",
        email="alice@example.com",
        scope="mcp",
        resource="https://mcp.example.com/mcp",
        created_at=NOW,
        last_used_at=None,
    )
    assert store.grants_of_user("alice") == [expected]
    assert store.grants_of_client("mcp_abc") == [expected]


def test_grants_of_one_user_are_not_anothers(store: Store) -> None:
    store.create_grant(_grant("g1"), ttl=CODE_TTL)
    store.create_grant(_grant("g2", sub="bob", client_id="other"), ttl=CODE_TTL)
    assert [g.grant_id for g in store.grants_of_user("bob")] == ["g2"]
    assert [g.grant_id for g in store.grants_of_client("other")] == ["g2"]
    assert store.grants_of_user("carol") == []
    assert store.grants_of_client("nobody") == []


def test_listings_are_newest_first(store: Store) -> None:
    for i in range(3):
        store.create_grant(_grant(f"g{i}", created_at=NOW + i), ttl=CODE_TTL)
    assert [g.grant_id for g in store.grants_of_user("alice")] == ["g2", "g1", "g0"]


def test_a_summary_holds_no_token_hash_or_sealed_token() -> None:
    names = {f.name for f in dataclasses.fields(GrantSummary)}
    assert names == {
        "grant_id",
        "client_id",
        "sub",
        "email",
        "scope",
        "resource",
        "created_at",
        "last_used_at",
    }
    summary = _grant("g1", rt_hash="r" * 64).summary()
    assert "c" * 64 not in repr(summary)
    assert "sealed-upstream" not in repr(summary)


def test_a_grant_without_an_email_claim_has_email_none(store: Store) -> None:
    store.create_grant(_grant("g1", claims={"name": "Alice"}), ttl=CODE_TTL)
    assert store.grants_of_user("alice")[0].email is None


def test_index_key_names_hold_no_raw_id_or_email(store: Store) -> None:
    sub = "alice@example.com"
    client_id = "https://client.example.com/meta.json"
    store.create_grant(_grant("g1", sub=sub, client_id=client_id), ttl=CODE_TTL)
    # SCAN, not KEYS: on a cluster it visits every node.
    keys = list(store.redis.scan_iter(store.keys.prefix + "grants:*"))
    assert sorted(keys) == sorted(
        [
            store.keys.user_grants(subject_hash(sub)),
            store.keys.client_grants(subject_hash(client_id)),
        ]
    )
    assert not any(sub in k or "client.example.com" in k for k in keys)


def test_an_index_expires_with_its_latest_grant(store: Store) -> None:
    """An index never outlives its grants, and never dies before one of them."""
    store.create_grant(_grant("g1", expires_at=NOW + 30 * DAY), ttl=CODE_TTL)
    key = store.keys.user_grants(subject_hash("alice"))
    assert store.redis.expiretime(key) == NOW + 30 * DAY
    store.create_grant(_grant("g2", expires_at=NOW + 60 * DAY), ttl=CODE_TTL)
    assert store.redis.expiretime(key) == NOW + 60 * DAY
    # A grant made under a shorter lifetime setting keeps the longer one's TTL.
    store.create_grant(_grant("g3", expires_at=NOW + 10 * DAY), ttl=CODE_TTL)
    assert store.redis.expiretime(key) == NOW + 60 * DAY


def test_members_past_their_absolute_expiry_are_trimmed_on_add(store: Store) -> None:
    store.create_grant(_grant("old", expires_at=NOW + DAY), ttl=CODE_TTL)
    later = NOW + 2 * DAY
    store.create_grant(
        _grant("new", created_at=later, expires_at=later + DAY), ttl=CODE_TTL
    )
    key = store.keys.client_grants(subject_hash("mcp_abc"))
    assert store.redis.zrange(key, 0, -1) == ["new"]


def test_a_revoked_grant_is_pruned_when_the_index_is_read(store: Store) -> None:
    store.create_grant(_grant("g1"), ttl=CODE_TTL)
    store.create_grant(_grant("g2"), ttl=CODE_TTL)
    assert store.revoke_grant("g1")
    user_key = store.keys.user_grants(subject_hash("alice"))
    assert store.redis.zcard(user_key) == 2  # revocation leaves it for the reader
    assert [g.grant_id for g in store.grants_of_user("alice")] == ["g2"]
    assert store.redis.zrange(user_key, 0, -1) == ["g2"]
    # The other index is pruned by its own reader.
    assert [g.grant_id for g in store.grants_of_client("mcp_abc")] == ["g2"]


def test_an_expired_grant_is_pruned_when_read(store: Store) -> None:
    store.create_grant(_grant("g1"), ttl=CODE_TTL)
    store.redis.delete(store.keys.grant("g1"))  # what its TTL ending does
    assert store.grants_of_client("mcp_abc") == []
    assert not store.redis.exists(store.keys.client_grants(subject_hash("mcp_abc")))


def test_forget_removes_a_grant_from_both_indexes(store: Store) -> None:
    grant = _grant("g1")
    store.create_grant(grant, ttl=CODE_TTL)
    store.grant_index.forget(grant)
    assert store.redis.keys(store.keys.prefix + "grants:*") == []


def test_last_used_at_is_set_by_redemption_and_every_rotation(store: Store) -> None:
    store.create_grant(_grant("g1"), ttl=CODE_TTL)
    assert store.grants_of_user("alice")[0].last_used_at is None
    assert _redeem(store, "g1", now=NOW + 5) is RedeemResult.OK
    assert store.grants_of_user("alice")[0].last_used_at == NOW + 5
    for gen, at in ((1, NOW + 100), (2, NOW + 200)):
        result = store.rotate_refresh(
            "g1",
            expected_gen=gen,
            new_hash=f"{gen}" * 64,
            now=at,
            pending="sealed",
            ttl=3600,
            upstream=None,
        )
        assert result is RotateResult.OK
        assert store.grants_of_user("alice")[0].last_used_at == at


def test_a_refused_redemption_leaves_last_used_at_alone(store: Store) -> None:
    store.create_grant(_grant("g1"), ttl=CODE_TTL)
    result = store.redeem_code(
        "g1", code_hash="x" * 64, now=NOW + 5, tolerance=0, refresh_hash="", ttl=60
    )
    assert result is RedeemResult.NOT_FOUND
    grant = store.load_grant("g1")
    assert grant is not None
    assert grant.last_used_at is None


def test_indexing_survives_a_script_cache_flush(store: Store) -> None:
    """After a Redis restart or SCRIPT FLUSH, the callback reloads INDEX_GRANT."""
    store.redis.script_flush()
    store.create_grant(_grant("g1"), ttl=CODE_TTL)
    assert [g.grant_id for g in store.grants_of_user("alice")] == ["g1"]
    assert store.redis.ttl(store.keys.grant("g1")) == CODE_TTL


def test_every_grant_is_found_by_scan(store: Store) -> None:
    for i in range(3):
        store.create_grant(_grant(f"g{i}"), ttl=CODE_TTL)
    other = Store(store.redis, f"other-{uuid.uuid4().hex[:8]}:")
    other.create_grant(_grant("elsewhere"), ttl=CODE_TTL)
    found = sorted(g.grant_id for g in store.grant_index.every_grant())
    assert found == ["g0", "g1", "g2"]


def test_creating_a_grant_with_its_indexes_is_one_round_trip(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(real_redis, f"rt-{uuid.uuid4().hex[:8]}:")
    store.create_grant(_grant("warm"), ttl=CODE_TTL)  # scripts loaded
    trips = RoundTrips(monkeypatch)
    sends, _ = trips.of(lambda: store.create_grant(_grant("g1"), ttl=CODE_TTL))
    assert sends == 1

"""proxy/store: every Store method, on fakeredis and on a real redis-server."""

from __future__ import annotations

import json
import threading
import typing as t
import uuid

import pytest
import redis

from proxy.keys.keyring import Keyring
from proxy.store import BindingMismatchError
from proxy.store import ClientInUse
from proxy.store import RedeemResult
from proxy.store import RotateResult
from proxy.store import Store
from proxy.store.documents import document_id
from proxy.store.keys import TXN_TTL_SECONDS
from proxy.store.records import ClientRecord
from proxy.store.records import Grant
from proxy.store.records import Transaction

NOW = 1_800_000_000
CODE_TTL = 120
REFRESH_TTL = 3600
RACERS = 16


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return Store(redis_client, f"t-{uuid.uuid4().hex[:8]}:")


def _client(client_id: str = "mcp_abc", **override: t.Any) -> ClientRecord:
    fields: dict[str, t.Any] = {
        "client_id": client_id,
        "redirect_uris": ("http://127.0.0.1/cb",),
        "token_endpoint_auth_method": "none",
        "grant_types": ("authorization_code", "refresh_token"),
        "client_id_issued_at": NOW,
        "metadata": {"client_name": "Test", "response_types": ["code"]},
    }
    fields.update(override)
    return ClientRecord(**fields)


BROWSER = "b" * 64


def _txn(**override: t.Any) -> Transaction:
    fields: dict[str, t.Any] = {
        "client_id": "mcp_abc",
        "redirect_uri": "http://127.0.0.1/cb",
        "state": "client-state",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "scope": "mcp",
        "resource": "https://mcp.example.com/mcp",
        "upstream_verifier": "v" * 64,
        "nonce": "n" * 22,
        "browser_hash": BROWSER,
        "created_at": NOW,
    }
    fields.update(override)
    return Transaction(**fields)


def _grant(grant_id: str = "g" * 22, **override: t.Any) -> Grant:
    fields: dict[str, t.Any] = {
        "grant_id": grant_id,
        "client_id": "mcp_abc",
        "sub": "alice",
        "claims": {"email": "alice@example.com"},
        "scope": "mcp",
        "resource": "https://mcp.example.com/mcp",
        "redirect_uri": "http://127.0.0.1/cb",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_hash": "c" * 64,
        "code_exp": NOW + CODE_TTL,
        "created_at": NOW,
        "expires_at": NOW + 90 * 86400,
        "upstream": "sealed-upstream",
    }
    fields.update(override)
    return Grant(**fields)


def _redeem(store: Store, grant_id: str = "g" * 22, **override: t.Any) -> RedeemResult:
    args: dict[str, t.Any] = {
        "code_hash": "c" * 64,
        "now": NOW + 1,
        "tolerance": 0,
        "refresh_hash": "r1" * 32,
        "ttl": REFRESH_TTL,
    }
    args.update(override)
    return store.redeem_code(grant_id, **args)


def _rotate(store: Store, grant_id: str = "g" * 22, **override: t.Any) -> RotateResult:
    args: dict[str, t.Any] = {
        "expected_gen": 1,
        "new_hash": "r2" * 32,
        "now": NOW + 10,
        "pending": "sealed-pair",
        "ttl": REFRESH_TTL,
        "upstream": None,
    }
    args.update(override)
    return store.rotate_refresh(grant_id, **args)


def _redeemed_grant(store: Store, grant_id: str = "g" * 22, **override: t.Any) -> Grant:
    store.create_grant(_grant(grant_id, **override), ttl=CODE_TTL)
    assert _redeem(store, grant_id) is RedeemResult.OK
    grant = store.load_grant(grant_id)
    assert grant is not None
    return grant


# -- health ----------------------------------------------------------------------------


def test_ping(store: Store) -> None:
    assert store.ping() is True


# -- clients ---------------------------------------------------------------------------


def test_create_then_load_client(store: Store) -> None:
    record = _client(client_secret_hash="s" * 64)
    assert store.create_client(record, ttl=3600) is True
    assert store.load_client("mcp_abc") == record


def test_client_key_has_the_configured_ttl(store: Store) -> None:
    store.create_client(_client(), ttl=3600)
    assert 0 < store.redis.ttl(store.keys.client("mcp_abc")) <= 3600


def test_client_ttl_zero_means_no_expiry(store: Store) -> None:
    """Schema: CLIENT_TTL_SECONDS=0 keeps clients for ever."""
    store.create_client(_client(), ttl=0)
    assert store.redis.ttl(store.keys.client("mcp_abc")) == -1
    assert store.load_client("mcp_abc") is not None
    assert store.redis.ttl(store.keys.client("mcp_abc")) == -1


def test_create_client_never_overwrites(store: Store) -> None:
    store.create_client(_client(client_secret_hash="1" * 64), ttl=3600)
    assert store.create_client(_client(client_secret_hash="2" * 64), ttl=3600) is False
    loaded = store.load_client("mcp_abc")
    assert loaded is not None
    assert loaded.client_secret_hash == "1" * 64


def test_load_client_leaves_the_ttl_alone(store: Store) -> None:
    """Authorize and consent read a client; only its use at the token endpoint
    slides the TTL (an unused registration expires soon)."""
    store.create_client(_client(), ttl=100)
    store.load_client("mcp_abc")
    assert store.redis.ttl(store.keys.client("mcp_abc")) <= 100


def test_reading_at_the_token_endpoint_does_not_slide_the_ttl(store: Store) -> None:
    """A token request with a made-up code keeps no registration alive."""
    store.create_client(_client(), ttl=100)
    store.load_client_and_grant("mcp_abc", "g1")
    _begin(store, "x" * 64, NOW)
    assert store.redis.ttl(store.keys.client("mcp_abc")) <= 100


def test_redeeming_a_code_slides_the_ttl(store: Store) -> None:
    store.create_client(_client(), ttl=100)
    store.create_grant(_grant(), ttl=CODE_TTL)
    assert _redeem(store, client=ClientInUse("mcp_abc", 5000)) is RedeemResult.OK
    assert store.redis.ttl(store.keys.client("mcp_abc")) > 100


def test_rotating_a_refresh_token_slides_the_ttl(store: Store) -> None:
    _redeemed_grant(store)
    store.create_client(_client(), ttl=100)
    assert _rotate(store, client=ClientInUse("mcp_abc", 5000)) is RotateResult.OK
    assert store.redis.ttl(store.keys.client("mcp_abc")) > 100


def test_use_with_ttl_zero_keeps_the_client_for_ever(store: Store) -> None:
    """CLIENT_TTL_SECONDS=0: the short unused TTL is lifted at first use."""
    store.create_client(_client(), ttl=100)
    store.create_grant(_grant(), ttl=CODE_TTL)
    assert _redeem(store, client=ClientInUse("mcp_abc", 0)) is RedeemResult.OK
    assert store.redis.ttl(store.keys.client("mcp_abc")) == -1


def test_unknown_client_is_none(store: Store) -> None:
    assert store.load_client("nope") is None
    assert store.redis.exists(store.keys.client("nope")) == 0


def test_records_written_with_redirect_uri_given_are_still_read() -> None:
    """Earlier versions stored a `redirect_uri_given` that decided nothing."""
    txn = json.loads(_txn().to_json())
    txn["redirect_uri_given"] = True
    assert Transaction.from_json(json.dumps(txn)) == _txn()
    grant = json.loads(_grant().to_json())
    grant["redirect_uri_given"] = True
    assert Grant.from_json("g" * 22, json.dumps(grant)) == _grant()


def test_client_record_is_versioned_json_without_the_secret(store: Store) -> None:
    store.create_client(_client(client_secret_hash="f" * 64), ttl=3600)
    raw = json.loads(t.cast(str, store.redis.get(store.keys.client("mcp_abc"))))
    assert raw["v"] == 1
    assert raw["client_secret_hash"] == "f" * 64
    assert "client_secret" not in raw


def test_load_client_and_grant(store: Store) -> None:
    store.create_client(_client(), ttl=100)
    store.create_grant(_grant(), ttl=CODE_TTL)
    client, grant, keys = store.load_client_and_grant("mcp_abc", "g" * 22)
    assert client == _client()
    assert keys is None
    assert grant == _grant()


def test_load_client_and_grant_when_missing(store: Store) -> None:
    assert store.load_client_and_grant("nope", "x" * 22) == (None, None, None)
    store.create_client(_client(), ttl=0)
    client, grant, _ = store.load_client_and_grant("mcp_abc", "x" * 22)
    assert client is not None
    assert grant is None


# -- transactions ----------------------------------------------------------------------


def test_create_then_take_txn(store: Store) -> None:
    assert store.create_txn("state1", _txn()) is True
    assert store.take_txn("state1", BROWSER) == _txn()


def test_txn_key_has_a_ten_minute_ttl(store: Store) -> None:
    store.create_txn("state1", _txn())
    assert TXN_TTL_SECONDS == 600
    assert 0 < store.redis.ttl(store.keys.txn("state1")) <= 600


def test_take_txn_by_another_browser_consumes_nothing(store: Store) -> None:
    """UP-2: a foreign browser is refused, and the right one can still finish."""
    store.create_txn("state1", _txn())
    with pytest.raises(BindingMismatchError):
        store.take_txn("state1", "c" * 64)
    assert store.take_txn("state1", BROWSER) == _txn()


def test_take_txn_works_once(store: Store) -> None:
    """UP-3: the upstream state is single-use."""
    store.create_txn("state1", _txn())
    assert store.take_txn("state1", BROWSER) is not None
    assert store.take_txn("state1", BROWSER) is None
    assert store.take_txn("state1", BROWSER) is None


def test_taken_txn_cannot_be_created_again(store: Store) -> None:
    """CONSENT-3: the tombstone keeps the form's state from being reused."""
    store.create_txn("state1", _txn())
    store.take_txn("state1", BROWSER)
    assert store.create_txn("state1", _txn()) is False
    assert store.take_txn("state1", BROWSER) is None
    assert 0 < store.redis.ttl(store.keys.txn("state1")) <= 600


def test_create_txn_never_overwrites(store: Store) -> None:
    store.create_txn("state1", _txn(state="first"))
    assert store.create_txn("state1", _txn(state="second")) is False
    taken = store.take_txn("state1", BROWSER)
    assert taken is not None
    assert taken.state == "first"


def test_unknown_txn_is_none(store: Store) -> None:
    assert store.take_txn("nope", BROWSER) is None
    assert store.redis.exists(store.keys.txn("nope")) == 0


# -- grants ----------------------------------------------------------------------------


def test_create_then_load_grant(store: Store) -> None:
    store.create_grant(_grant(), ttl=CODE_TTL)
    assert store.load_grant("g" * 22) == _grant()
    assert store.grant_exists("g" * 22)


def test_grant_key_has_the_code_ttl(store: Store) -> None:
    store.create_grant(_grant(), ttl=CODE_TTL)
    assert 0 < store.redis.ttl(store.keys.grant("g" * 22)) <= CODE_TTL


def test_grant_key_carries_the_cluster_hash_tag(store: Store) -> None:
    assert store.keys.grant("abc").endswith("grant:{abc}")


def test_unknown_grant(store: Store) -> None:
    assert store.load_grant("nope") is None
    assert store.grant_exists("nope") is False
    assert store.revoke_grant("nope") is False


def test_revoke_grant(store: Store) -> None:
    store.create_grant(_grant(), ttl=CODE_TTL)
    assert store.revoke_grant("g" * 22) is True
    assert store.load_grant("g" * 22) is None
    assert store.grant_exists("g" * 22) is False


# -- redeem_code -----------------------------------------------------------------------


def test_redeem_code_ok_starts_the_refresh_generation(store: Store) -> None:
    store.create_grant(_grant(), ttl=CODE_TTL)
    assert _redeem(store) is RedeemResult.OK
    grant = store.load_grant("g" * 22)
    assert grant is not None
    assert grant.code_used_at == NOW + 1
    assert grant.gen == 1
    assert grant.rt_hash == "r1" * 32
    assert grant.rotated_at == NOW + 1


def test_redeemed_grant_takes_the_refresh_ttl(store: Store) -> None:
    store.create_grant(_grant(), ttl=CODE_TTL)
    _redeem(store)
    assert CODE_TTL < store.redis.ttl(store.keys.grant("g" * 22)) <= REFRESH_TTL


def test_redeem_unknown_grant_is_not_found(store: Store) -> None:
    """CODE-1: an unknown code → not found."""
    assert _redeem(store, "x" * 22) is RedeemResult.NOT_FOUND
    assert store.redis.exists(store.keys.grant("x" * 22)) == 0


def test_redeem_with_the_wrong_code_hash_is_not_found(store: Store) -> None:
    """CODE-1 / CODE-7: a wrong code changes nothing."""
    store.create_grant(_grant(), ttl=CODE_TTL)
    assert _redeem(store, code_hash="d" * 64) is RedeemResult.NOT_FOUND
    assert store.load_grant("g" * 22) == _grant()


def test_redeem_expired_code(store: Store) -> None:
    """CODE-8: a code past its expiry is refused and not spent."""
    store.create_grant(_grant(), ttl=CODE_TTL)
    assert _redeem(store, now=NOW + CODE_TTL + 1) is RedeemResult.EXPIRED
    grant = store.load_grant("g" * 22)
    assert grant is not None
    assert grant.code_used_at is None
    assert grant.gen == 0


def test_code_is_good_until_its_expiry_second(store: Store) -> None:
    store.create_grant(_grant(), ttl=CODE_TTL)
    assert _redeem(store, now=NOW + CODE_TTL) is RedeemResult.OK


def test_replay_within_the_tolerance_keeps_the_grant(store: Store) -> None:
    store.create_grant(_grant(), ttl=CODE_TTL)
    assert _redeem(store, tolerance=3) is RedeemResult.OK
    assert _redeem(store, tolerance=3, now=NOW + 3) is RedeemResult.REPLAY_TOLERATED
    grant = store.load_grant("g" * 22)
    assert grant is not None
    assert grant.rt_hash == "r1" * 32


def test_replay_after_the_tolerance_deletes_the_grant(store: Store) -> None:
    """CODE-6: a code works once; a replay revokes what it issued."""
    store.create_grant(_grant(), ttl=CODE_TTL)
    assert _redeem(store, tolerance=3) is RedeemResult.OK
    assert _redeem(store, tolerance=3, now=NOW + 4) is RedeemResult.REPLAYED
    assert store.load_grant("g" * 22) is None
    assert _redeem(store, tolerance=3, now=NOW + 5) is RedeemResult.NOT_FOUND


def test_zero_tolerance_revokes_even_in_the_same_second(store: Store) -> None:
    """CODE-6: with no tolerance, a same-second replay revokes the grant."""
    store.create_grant(_grant(), ttl=CODE_TTL)
    assert _redeem(store, tolerance=0) is RedeemResult.OK
    assert _redeem(store, tolerance=0) is RedeemResult.REPLAYED
    assert store.grant_exists("g" * 22) is False


# -- refresh: begin (lease) and rotate -------------------------------------------------


def _begin(
    store: Store,
    presented: str,
    now: int,
    client_id: str = "mcp_abc",
    holder: str = "holder-1",
) -> tuple[t.Any, ...]:
    client, grant, leased, _keys = store.load_client_and_begin_refresh(
        client_id,
        "g" * 22,
        presented_hash=presented,
        now=now,
        lease=15,
        lease_holder=holder,
    )
    return client, grant, leased


def test_begin_refresh_returns_client_grant_and_lease(store: Store) -> None:
    store.create_client(_client(), ttl=100)
    _redeemed_grant(store)
    client, grant, leased = _begin(store, "r1" * 32, NOW + 5)
    assert client == _client()
    assert grant is not None
    assert grant.gen == 1
    assert grant.rt_hash == "r1" * 32
    assert leased is True
    # Only the rotation slides the client's TTL, not the read.
    assert store.redis.ttl(store.keys.client("mcp_abc")) <= 100


def test_refresh_lease_is_held_by_one_request_at_a_time(store: Store) -> None:
    _redeemed_grant(store)
    assert _begin(store, "r1" * 32, NOW + 5)[2] is True
    assert _begin(store, "r1" * 32, NOW + 5)[2] is False
    assert _begin(store, "r1" * 32, NOW + 19)[2] is False
    assert _begin(store, "r1" * 32, NOW + 21)[2] is True


def test_a_stale_token_never_takes_the_lease(store: Store) -> None:
    _redeemed_grant(store)
    client, grant, leased = _begin(store, "zz" * 32, NOW + 5)
    assert client is None
    assert grant is not None
    assert leased is False


def test_another_client_never_takes_the_lease(store: Store) -> None:
    """A foreign client presenting a stolen current token holds nothing up."""
    _redeemed_grant(store)
    assert _begin(store, "r1" * 32, NOW + 5, client_id="mcp_other")[2] is False
    assert _begin(store, "r1" * 32, NOW + 5)[2] is True


def test_released_lease_can_be_taken_again_at_once(store: Store) -> None:
    _redeemed_grant(store)
    assert _begin(store, "r1" * 32, NOW + 5)[2] is True
    assert store.release_refresh_lease("g" * 22, "holder-1") is True
    assert _begin(store, "r1" * 32, NOW + 5, holder="holder-2")[2] is True


def test_a_released_lease_leaves_the_record_as_it_was(store: Store) -> None:
    """A refused refresh takes the lease and gives it back: net, no change.

    Found by tests/fuzz: a refresh with the current token and the grant's own
    client_id but no client secret (401 invalid_client) left
    `"lease_until": 0` in a record that had no lease field before.
    """
    _redeemed_grant(store)
    key = store.keys.grant("g" * 22)
    before = json.loads(store.redis.get(key))
    assert _begin(store, "r1" * 32, NOW + 5)[2] is True
    assert store.release_refresh_lease("g" * 22, "holder-1") is True
    assert json.loads(store.redis.get(key)) == before


def test_a_lapsed_holder_cannot_release_its_successors_lease(store: Store) -> None:
    """A slow request whose lease ran out must not free the next holder's."""
    _redeemed_grant(store)
    assert _begin(store, "r1" * 32, NOW + 5, holder="slow")[2] is True
    assert _begin(store, "r1" * 32, NOW + 30, holder="next")[2] is True
    assert store.release_refresh_lease("g" * 22, "slow") is False
    assert _begin(store, "r1" * 32, NOW + 31, holder="third")[2] is False


def test_releasing_a_lease_never_recreates_a_revoked_grant(store: Store) -> None:
    _redeemed_grant(store)
    store.revoke_grant("g" * 22)
    assert store.release_refresh_lease("g" * 22, "holder-1") is False
    assert store.grant_exists("g" * 22) is False


def test_rotation_remembers_older_generations(store: Store) -> None:
    """RT-2: prefixes of every generation before the previous one are kept."""
    _redeemed_grant(store)
    hashes = [f"{n:02d}" * 32 for n in range(2, 22)]
    for gen, new_hash in enumerate(hashes, start=1):
        assert _rotate(store, expected_gen=gen, new_hash=new_hash) is RotateResult.OK
    grant = store.load_grant("g" * 22)
    assert grant is not None
    assert grant.rt_hash == hashes[-1]
    assert grant.rt_prev_hash == hashes[-2]
    # The last 8 older generations, as 12-hex-digit prefixes, oldest dropped.
    assert grant.rt_old == tuple(h[:12] for h in hashes[-10:-2])


def test_begin_refresh_on_a_missing_grant(store: Store) -> None:
    store.create_client(_client(), ttl=0)
    client, grant, leased = _begin(store, "r1" * 32, NOW)
    assert client is not None
    assert grant is None
    assert leased is False
    assert store.redis.exists(store.keys.grant("g" * 22)) == 0


def test_rotate_refresh_ok(store: Store) -> None:
    """RT-1: rotation installs the new hash and keeps the previous one."""
    _redeemed_grant(store)
    assert _rotate(store, upstream="new-sealed-upstream") is RotateResult.OK
    grant = store.load_grant("g" * 22)
    assert grant is not None
    assert grant.gen == 2
    assert grant.rt_hash == "r2" * 32
    assert grant.rt_prev_hash == "r1" * 32
    assert grant.rotated_at == NOW + 10
    assert grant.pending == "sealed-pair"
    assert grant.upstream == "new-sealed-upstream"
    assert 0 < store.redis.ttl(store.keys.grant("g" * 22)) <= REFRESH_TTL


def test_rotate_keeps_upstream_when_none_given(store: Store) -> None:
    _redeemed_grant(store)
    _rotate(store, upstream=None)
    grant = store.load_grant("g" * 22)
    assert grant is not None
    assert grant.upstream == "sealed-upstream"


def test_rotate_keeps_the_claims_when_none_given(store: Store) -> None:
    """J66: a refresh that re-read no identity leaves the login's claims."""
    _redeemed_grant(store)
    assert _rotate(store, claims=None) is RotateResult.OK
    grant = store.load_grant("g" * 22)
    assert grant is not None
    assert grant.claims == {"email": "alice@example.com"}


def test_rotate_stores_the_refreshed_claims_with_the_new_token(store: Store) -> None:
    """J66: the new claims land in the same script as the new refresh token;
    an emptied list stays a list (the record holds them as a JSON string)."""
    _redeemed_grant(store, claims={"email": "a@example.com", "groups": ["admins"]})
    new = {"email": "a@example.com", "groups": [], "n": 2**60 + 1}
    assert _rotate(store, claims=new) is RotateResult.OK
    grant = store.load_grant("g" * 22)
    assert grant is not None
    assert grant.claims == new
    assert grant.rt_hash == "r2" * 32
    assert grant.gen == 2


def test_a_conflicting_rotation_writes_no_claims(store: Store) -> None:
    """J66: the claims change only with a rotation that wins its generation."""
    _redeemed_grant(store)
    assert _rotate(store) is RotateResult.OK
    stale = _rotate(store, expected_gen=1, new_hash="r3" * 32, claims={"groups": ["x"]})
    assert stale is RotateResult.CONFLICT
    grant = store.load_grant("g" * 22)
    assert grant is not None
    assert grant.claims == {"email": "alice@example.com"}


def test_rotating_a_revoked_grant_writes_no_claims(store: Store) -> None:
    _redeemed_grant(store)
    store.revoke_grant("g" * 22)
    assert _rotate(store, claims={"groups": []}) is RotateResult.NOT_FOUND
    assert store.redis.exists(store.keys.grant("g" * 22)) == 0


def test_rotate_releases_the_lease(store: Store) -> None:
    _redeemed_grant(store)
    assert _begin(store, "r1" * 32, NOW + 5)[2] is True
    _rotate(store)
    assert _begin(store, "r2" * 32, NOW + 6)[2] is True


def test_rotate_with_a_stale_generation_conflicts(store: Store) -> None:
    _redeemed_grant(store)
    assert _rotate(store) is RotateResult.OK
    assert _rotate(store, expected_gen=1, new_hash="r3" * 32) is RotateResult.CONFLICT
    grant = store.load_grant("g" * 22)
    assert grant is not None
    assert grant.rt_hash == "r2" * 32
    assert grant.gen == 2


def test_rotate_a_missing_grant_is_not_found(store: Store) -> None:
    assert _rotate(store) is RotateResult.NOT_FOUND
    assert store.redis.exists(store.keys.grant("g" * 22)) == 0


def test_rotate_an_unredeemed_grant_is_not_found(store: Store) -> None:
    store.create_grant(_grant(), ttl=CODE_TTL)
    assert _rotate(store) is RotateResult.NOT_FOUND


# -- signing keys ----------------------------------------------------------------------


def test_the_token_endpoint_reads_the_signing_keys_with_the_grant(
    store: Store,
) -> None:
    """The record signing needs rides in the first round trip of both grants."""
    store.create_signing_keys('{"v":1,"keys":[1]}')
    store.create_client(_client(), ttl=100)
    store.create_grant(_grant(), ttl=CODE_TTL)
    *_, keys = store.load_client_and_grant("mcp_abc", "g" * 22)
    assert keys == '{"v":1,"keys":[1]}'
    *_, keys = store.load_client_and_begin_refresh(
        "mcp_abc",
        "g" * 22,
        presented_hash="x" * 64,
        now=NOW,
        lease=15,
        lease_holder="h",
    )
    assert keys == '{"v":1,"keys":[1]}'


def test_signing_keys_are_created_once_without_ttl(store: Store) -> None:
    """Schema: `keys` has no TTL; SET NX, so the first writer wins."""
    assert store.load_signing_keys() is None
    assert store.create_signing_keys('{"v":1,"keys":[1]}') is True
    assert store.create_signing_keys('{"v":1,"keys":[2]}') is False
    assert store.load_signing_keys() == '{"v":1,"keys":[1]}'
    assert store.redis.ttl(store.keys.signing_keys()) == -1


# -- every key the store writes lives under its prefix ---------------------------------


def test_every_key_is_under_the_prefix(store: Store) -> None:
    store.create_client(_client(), ttl=3600)
    store.create_txn("s", _txn())
    store.create_grant(_grant(), ttl=CODE_TTL)
    store.create_signing_keys("{}")
    keys = list(store.redis.scan_iter("*"))  # every cluster node's, too
    assert len(keys) == 6  # with the grant's by-user and by-client indexes
    assert all(k.startswith(store.keys.prefix) for k in keys)


# -- races: real redis-server only (fakeredis serialises everything) -------------------


def _race(n: int, action: t.Callable[[int], t.Any]) -> list[t.Any]:
    barrier = threading.Barrier(n)
    results: list[t.Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = action(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    return results


@pytest.fixture
def real_store(real_redis: redis.Redis) -> Store:
    return Store(real_redis, f"race-{uuid.uuid4().hex[:8]}:")


@pytest.mark.parametrize("tolerance", [0, 30])
def test_racing_redemptions_spend_a_code_once(
    real_store: Store, tolerance: int
) -> None:
    """CODE-6: N workers redeem one code at once → exactly one OK."""
    real_store.create_grant(_grant(), ttl=CODE_TTL)
    results = _race(
        RACERS,
        lambda i: _redeem(real_store, tolerance=tolerance, refresh_hash=f"{i:064x}"),
    )
    assert results.count(RedeemResult.OK) == 1
    winner = results.index(RedeemResult.OK)
    if tolerance:
        assert results.count(RedeemResult.REPLAY_TOLERATED) == RACERS - 1
        grant = real_store.load_grant("g" * 22)
        assert grant is not None
        assert grant.rt_hash == f"{winner:064x}"
    else:
        assert set(results) - {RedeemResult.OK} <= {
            RedeemResult.REPLAYED,
            RedeemResult.NOT_FOUND,
        }


def test_racing_rotations_of_one_generation_succeed_once(real_store: Store) -> None:
    """RT-1: N workers rotate generation 1 at once → exactly one OK."""
    _redeemed_grant(real_store)
    results = _race(RACERS, lambda i: _rotate(real_store, new_hash=f"{i:064x}"))
    assert results.count(RotateResult.OK) == 1
    assert results.count(RotateResult.CONFLICT) == RACERS - 1
    grant = real_store.load_grant("g" * 22)
    assert grant is not None
    assert grant.gen == 2
    assert grant.rt_hash == f"{results.index(RotateResult.OK):064x}"
    assert grant.rt_prev_hash == "r1" * 32


def test_racing_takes_of_one_txn_succeed_once(real_store: Store) -> None:
    """UP-3: N callbacks with one state → exactly one gets the transaction."""
    real_store.create_txn("state1", _txn())
    results = _race(RACERS, lambda i: real_store.take_txn("state1", BROWSER))
    taken = [r for r in results if r is not None]
    assert taken == [_txn()]


def test_racing_refresh_leases_go_to_one_request(real_store: Store) -> None:
    """N refreshes with the current token → exactly one may refresh upstream."""
    _redeemed_grant(real_store)
    results = _race(RACERS, lambda i: _begin(real_store, "r1" * 32, NOW + 5)[2])
    assert results.count(True) == 1


def test_claims_survive_the_scripts_byte_for_byte(redis_client: t.Any) -> None:
    """Lua's cjson must not touch claims: [] stays a list, big integers exact."""
    store = Store(redis_client, "t:")
    claims = {"groups": [], "oid": 123456789012345678, "name": "Zoë"}
    store.create_grant(_grant(claims=claims), ttl=CODE_TTL)
    assert _redeem(store) is RedeemResult.OK
    assert _rotate(store) is RotateResult.OK
    grant = store.load_grant("g" * 22)
    assert grant is not None
    assert grant.claims == claims


# -- upstream tokens under a previous PROXY_SECRET_KEY (the gateway read) -----------

OLD_SECRET = bytes(range(32))
NEW_SECRET = bytes(range(100, 132))


def _grant_sealed_under(store: Store, secret: bytes, access_token: str) -> str:
    grant_id = "g" * 22
    sealed = Keyring(secret).seal(
        json.dumps({"access_token": access_token}).encode(),
        context=store.keys.grant(grant_id),
    )
    store.create_grant(_grant(upstream=sealed), CODE_TTL)
    return grant_id


def test_an_upstream_token_under_a_previous_secret_is_read_and_resealed(
    store: Store,
) -> None:
    grant_id = _grant_sealed_under(store, OLD_SECRET, "up-at")
    moved = Keyring(NEW_SECRET, [OLD_SECRET])
    assert store.load_upstream_access_token(grant_id, moved) == "up-at"
    grant = t.cast(Grant, store.load_grant(grant_id))
    context = store.keys.grant(grant_id)
    assert Keyring(NEW_SECRET).open(grant.upstream, context=context)
    # Only that field changed, and the grant keeps its TTL.
    assert grant == _grant(upstream=grant.upstream)
    assert 0 < store.redis.ttl(context) <= CODE_TTL


def test_a_reseal_never_overwrites_tokens_a_refresh_replaced(store: Store) -> None:
    grant_id = _grant_sealed_under(store, OLD_SECRET, "up-at")
    stale = t.cast(Grant, store.load_grant(grant_id)).upstream
    store.redis.delete(store.keys.grant(grant_id))
    _grant_sealed_under(store, NEW_SECRET, "refreshed")
    assert not store.reseal_upstream(grant_id, stale, "resealed-stale")
    assert store.load_upstream_access_token(grant_id, Keyring(NEW_SECRET)) == (
        "refreshed"
    )


def test_an_upstream_token_no_key_opens_reads_as_none(store: Store) -> None:
    """J31: gone, never an error (the gateway then forwards no upstream token)."""
    grant_id = _grant_sealed_under(store, OLD_SECRET, "up-at")
    assert store.load_upstream_access_token(grant_id, Keyring(NEW_SECRET)) is None


# -- a client's key set read ahead in the first round trip (J71) ----------------------


def test_the_first_read_reads_a_clients_key_set_ahead(store: Store) -> None:
    store.create_client(_client(), ttl=100)
    store.create_grant(_grant(), ttl=CODE_TTL)
    doc = document_id("jwks", "https://client.example/jwks.json")
    store.documents.write(doc, '{"keys": []}', ttl=60)
    client, grant, _ = store.load_client_and_grant(
        "mcp_abc", "g" * 22, jwks_document=doc
    )
    assert client == _client()
    assert grant is not None
    # Gone from Redis now, yet this request's read is what the trip brought.
    store.redis.delete(*store.documents.keys_of(doc))
    assert store.documents.read(doc) == ('{"keys": []}', None)
    assert store.documents.read(doc) == (None, None)


def test_a_refresh_reads_a_url_clients_key_set_ahead_too(store: Store) -> None:
    _redeemed_grant(store, client_id="https://app.example/c.json")
    page = document_id("client_metadata", "https://app.example/c.json")
    keys = document_id("jwks", "https://app.example/jwks.json")
    store.documents.write(page, '{"client_id": "https://app.example/c.json"}', 60)
    store.documents.write(keys, '{"keys": []}', ttl=60)
    client, grant, leased, _ = store.load_client_and_begin_refresh(
        "https://app.example/c.json",
        "g" * 22,
        presented_hash="r1" * 32,
        now=NOW + 5,
        lease=15,
        lease_holder="holder-1",
        document=page,
        jwks_document=keys,
    )
    assert client is None  # a URL client's record is its document
    assert grant is not None
    assert leased is True
    store.redis.delete(*store.documents.keys_of(page), *store.documents.keys_of(keys))
    assert (
        store.documents.read(page)[0] == '{"client_id": "https://app.example/c.json"}'
    )
    assert store.documents.read(keys) == ('{"keys": []}', None)


def test_what_a_request_primed_and_left_unused_is_forgotten(store: Store) -> None:
    """The next request on this thread reads Redis, not the last one's trip."""
    doc = document_id("client_metadata", "https://app.example/c.json")
    store.read_document_client("https://app.example/c.json", doc)
    store.forget_primed()
    store.documents.write(doc, '{"v": 1}', 60)
    store.disabled_clients.disable("https://app.example/c.json", now=NOW, ttl=None)
    assert store.documents.read(doc) == ('{"v": 1}', None)
    assert store.disabled_clients.is_disabled("https://app.example/c.json")

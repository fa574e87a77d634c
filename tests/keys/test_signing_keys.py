"""proxy/keys/signing_keys.py: keys shared by every worker, private parts sealed."""

from __future__ import annotations

import json
import logging
import threading
import time
import typing as t
import uuid

import fakeredis
import pytest
import redis
from joserfc import jwt
from joserfc.jwk import ECKey
from joserfc.jwk import KeySet

from proxy.keys.keyring import Keyring
from proxy.keys.pinned import parse_signing_keys
from proxy.keys.signing_keys import JWKS_REREAD_SECONDS
from proxy.keys.signing_keys import RECHECK_SECONDS
from proxy.keys.signing_keys import UNKNOWN_KID_REREAD_SECONDS
from proxy.keys.signing_keys import SigningKeys
from proxy.keys.signing_keys import SigningKeysUnusableError
from proxy.oauth.access_tokens import ALGORITHM
from proxy.oauth.access_tokens import mint_access_token
from proxy.oauth.errors import InvalidTokenError
from proxy.store import Store

SECRET_KEY = bytes(range(32))
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return Store(redis_client, f"t-{uuid.uuid4().hex[:8]}:")


def _worker(store: Store, pem: str | None = None) -> SigningKeys:
    pinned = parse_signing_keys(pem) if pem else ()
    return SigningKeys(store, Keyring(SECRET_KEY), pinned)


def _sign(keys: SigningKeys) -> str:
    return jwt.encode(
        {"alg": ALGORITHM, "kid": keys.active().kid}, {"sub": "a"}, keys.active()
    )


def test_two_workers_share_one_generated_key(store: Store) -> None:
    first, second = _worker(store), _worker(store)
    assert first.active().kid == second.active().kid
    assert first.jwks() == second.jwks()
    # A token signed by one worker verifies with the other's key set.
    token = _sign(first)
    assert jwt.decode(token, second.keyset(), algorithms=[ALGORITHM]).claims == {
        "sub": "a"
    }


def test_key_is_generated_once(store: Store) -> None:
    first = _worker(store)
    first.active()
    document = store.load_signing_keys()
    _worker(store).active()
    assert store.load_signing_keys() == document
    assert len(json.loads(t.cast(str, document))["keys"]) == 1


def test_nothing_is_stored_until_a_key_is_needed(store: Store) -> None:
    _worker(store)
    assert store.load_signing_keys() is None


def test_verifying_before_any_signing_stores_nothing(store: Store) -> None:
    """Found by tests/fuzz: on a fresh store, `Authorization: Bearer <a JWS
    with any header>` at /mcp or /oauth2/forward-auth was refused (401) but
    generated and stored the signing keys on the way."""
    verifier = _worker(store)
    assert list(verifier.keyset()) == []
    assert store.load_signing_keys() is None
    # Nothing was cached either: the first signer's key is picked up at once.
    token = _sign(_worker(store))
    assert jwt.decode(token, verifier.keyset(), algorithms=[ALGORITHM]).claims == {
        "sub": "a"
    }


def test_private_key_is_stored_sealed(store: Store) -> None:
    """UP-9 spirit: the store holds only ciphertext of the private key."""
    keys = _worker(store)
    keys.active()
    raw = t.cast(str, store.redis.get(store.keys.signing_keys()))
    assert "PRIVATE KEY" not in raw
    assert "BEGIN" not in raw
    document = json.loads(raw)
    assert document["v"] == 2
    entry = document["keys"][0]
    assert set(entry) == {
        "kid",
        "alg",
        "created_at",
        "publish_at",
        "sign_from",
        "retire_at",
        "private",
    }
    # A key made on demand is published and signs at once, and never retires.
    assert entry["publish_at"] == entry["sign_from"] == entry["created_at"]
    assert entry["retire_at"] is None
    assert entry["kid"] == keys.active().kid
    private_d = keys.active().as_dict(private=True)["d"]
    assert private_d not in raw
    # It opens only with the proxy's key.
    pem = Keyring(SECRET_KEY).open(entry["private"], context="signing-keys")
    assert b"PRIVATE KEY" in pem


def test_a_worker_with_another_secret_cannot_read_the_keys(store: Store) -> None:
    """J32: a record no key opens is a 503 naming the cause, never replaced."""
    _worker(store).active()
    document = store.load_signing_keys()
    stranger = SigningKeys(store, Keyring(bytes(32)))
    with pytest.raises(SigningKeysUnusableError) as refused:
        stranger.active()
    assert refused.value.status_code == 503
    assert refused.value.reason == "unsealable"
    assert stranger.problem() == "unsealable"
    with pytest.raises(SigningKeysUnusableError):
        stranger.jwks()
    assert store.load_signing_keys() == document


def test_racing_workers_agree_on_one_key(real_redis: redis.Redis) -> None:
    """N workers start at once on an empty store → one key for all."""
    store = Store(real_redis, f"race-{uuid.uuid4().hex[:8]}:")
    workers = [_worker(store) for _ in range(8)]
    barrier = threading.Barrier(len(workers))
    kids: list[str] = []

    def start(keys: SigningKeys) -> None:
        barrier.wait(timeout=10)
        kids.append(keys.active().kid)

    threads = [threading.Thread(target=start, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(kids) == len(workers)
    assert len(set(kids)) == 1


def test_configured_pem_is_used_as_is(store: Store) -> None:
    configured = ECKey.generate_key("P-256", private=True)
    keys = _worker(store, configured.as_pem(private=True).decode())
    assert (
        keys.active().as_dict(private=True)["d"]
        == configured.as_dict(private=True)["d"]
    )
    assert keys.active().kid == configured.thumbprint()
    _sign(keys)
    # Nothing is generated or stored when a key is configured.
    assert store.load_signing_keys() is None


def test_jwks_has_only_public_parts(store: Store) -> None:
    keys = _worker(store)
    document = keys.jwks()
    assert len(document["keys"]) == 1
    jwk = document["keys"][0]
    assert not PRIVATE_MEMBERS & set(jwk)
    assert jwk["kty"] == "EC"
    assert jwk["crv"] == "P-256"
    assert jwk["use"] == "sig"
    assert jwk["alg"] == "ES256"
    assert jwk["kid"] == keys.active().kid
    # The published key verifies what the private key signs.
    public = ECKey.import_key(jwk)
    assert jwt.decode(_sign(keys), public, algorithms=[ALGORITHM]).claims == {
        "sub": "a"
    }


def test_jwks_of_a_configured_key_has_only_public_parts(store: Store) -> None:
    configured = ECKey.generate_key("P-256", private=True)
    keys = _worker(store, configured.as_pem(private=True).decode())
    (jwk,) = keys.jwks()["keys"]
    assert not PRIVATE_MEMBERS & set(jwk)
    assert jwk["x"] == configured.as_dict()["x"]


def test_kid_is_the_rfc7638_thumbprint(store: Store) -> None:
    keys = _worker(store)
    assert keys.active().kid == keys.active().thumbprint()


# -- Redis restarted empty: every worker converges on the one stored key -------------

ISSUER = "https://as.example.com"
AUDIENCE = "https://as.example.com/mcp"


class Clock:
    """A hand-moved monotonic clock: intervals are tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingStore(Store):
    """A Store that counts reads of the signing-keys record."""

    reads = 0

    def load_signing_keys(self) -> str | None:
        self.reads += 1
        return super().load_signing_keys()


def _access_token(keys: SigningKeys, kid: str | None = None) -> str:
    key = keys.active()
    return mint_access_token(
        key if kid is None else _renamed(key, kid),
        issuer=ISSUER,
        sub="alice",
        audience=AUDIENCE,
        client_id="c",
        scope="mcp",
        grant_id="g",
        now=int(time.time()),
        ttl=600,
    )


def _renamed(key: ECKey, kid: str) -> ECKey:
    return ECKey.import_key(key.as_pem(private=True), parameters={"kid": kid})


def _verify(keys: SigningKeys, token: str) -> str:
    claims = keys.verify(token, issuer=ISSUER, audience=AUDIENCE, now=int(time.time()))
    return claims.sub


def _clocked(store: Store, clock: Clock) -> SigningKeys:
    return SigningKeys(store, Keyring(SECRET_KEY), clock=clock)


def test_after_flushall_two_workers_converge_on_one_key(
    real_redis: redis.Redis,
) -> None:
    store = Store(real_redis, f"flush-{uuid.uuid4().hex[:8]}:")
    clock = Clock()
    first, second = _clocked(store, clock), _clocked(store, clock)
    old_kid = first.active().kid
    assert second.active().kid == old_kid
    first.jwks(), second.jwks()  # both have the old key cached
    real_redis.flushall()
    # The worker that signs next finds the record gone and re-creates it.
    token = _access_token(second)
    new_kid = second.active().kid
    assert new_kid != old_kid
    assert json.loads(t.cast(str, store.load_signing_keys()))["keys"][0]["kid"] == (
        new_kid
    )
    # The other still has the old key cached: the unknown kid makes it re-read.
    assert _verify(first, token) == "alice"
    # And it signs with the stored key, never with its cached one.
    assert first.active().kid == new_kid
    assert _verify(second, _access_token(first)) == "alice"
    clock.now += 1.5
    assert first.jwks() == second.jwks()
    assert [k["kid"] for k in first.jwks()["keys"]] == [new_kid]


def test_a_first_start_is_not_reported_as_a_lost_record(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Two requests of one worker sign first on an empty store: the one whose
    read was out while the other created and adopted the record has had no
    keys, so nothing was lost and no warning says so."""
    keys = _worker(store)
    original = store.load_signing_keys
    first_read_out, other_done = threading.Event(), threading.Event()

    def load_signing_keys() -> str | None:
        if first_read_out.is_set():
            return original()
        raw = original()  # nothing yet
        first_read_out.set()
        other_done.wait(timeout=10)
        return raw

    monkeypatch.setattr(store, "load_signing_keys", load_signing_keys)
    kids: list[str] = []
    slow = threading.Thread(target=lambda: kids.append(keys.active().kid))
    with caplog.at_level(logging.INFO, logger="proxy.keys.signing_keys"):
        slow.start()
        assert first_read_out.wait(timeout=10)
        kids.append(keys.active().kid)
        other_done.set()
        slow.join(timeout=10)
    assert len(kids) == 2
    assert len(set(kids)) == 1
    assert "generated a new signing key" in caplog.text
    assert "was missing from Redis" not in caplog.text


def test_a_record_lost_after_signing_is_reported(
    real_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(real_redis, f"lost-{uuid.uuid4().hex[:8]}:")
    keys = _worker(store)
    keys.active()
    real_redis.flushall()
    with caplog.at_level(logging.WARNING, logger="proxy.keys.signing_keys"):
        keys.active()
    assert "signing keys record was missing from Redis: created a new key" in (
        caplog.text
    )


def test_racing_workers_with_an_old_key_cached_converge_after_flushall(
    real_redis: redis.Redis,
) -> None:
    store = Store(real_redis, f"reflush-{uuid.uuid4().hex[:8]}:")
    workers = [_worker(store) for _ in range(8)]
    old_kids = {w.active().kid for w in workers}
    assert len(old_kids) == 1
    real_redis.flushall()
    barrier = threading.Barrier(len(workers))
    kids: list[str] = []

    def sign(keys: SigningKeys) -> None:
        barrier.wait(timeout=10)
        kids.append(keys.active().kid)

    threads = [threading.Thread(target=sign, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(kids) == len(workers)
    assert len(set(kids)) == 1
    assert set(kids) != old_kids
    stored = json.loads(t.cast(str, store.load_signing_keys()))["keys"]
    assert [entry["kid"] for entry in stored] == kids[:1]


def test_an_unknown_kid_rereads_at_most_once_per_interval(
    redis_client: redis.Redis,
) -> None:
    store = CountingStore(redis_client, f"flood-{uuid.uuid4().hex[:8]}:")
    clock = Clock()
    keys = _clocked(store, clock)
    tokens = [_access_token(keys, kid=uuid.uuid4().hex) for _ in range(200)]
    store.reads = 0
    for token in tokens:
        with pytest.raises(InvalidTokenError):
            _verify(keys, token)
    print(f"\n200 tokens with random kids: {store.reads} read(s) of the keys record")
    assert store.reads == 1
    clock.now += UNKNOWN_KID_REREAD_SECONDS - 0.01
    with pytest.raises(InvalidTokenError):
        _verify(keys, tokens[0])
    assert store.reads == 1
    clock.now += 0.02
    with pytest.raises(InvalidTokenError):
        _verify(keys, tokens[1])
    assert store.reads == 2


def test_a_bad_signature_under_a_known_kid_rereads_nothing(
    redis_client: redis.Redis,
) -> None:
    store = CountingStore(redis_client, f"badsig-{uuid.uuid4().hex[:8]}:")
    keys = _clocked(store, Clock())
    kid = str(keys.active().kid)
    forged = ECKey.generate_key("P-256", private=True)
    store.reads = 0
    token = mint_access_token(
        _renamed(forged, kid),
        issuer=ISSUER,
        sub="mallory",
        audience=AUDIENCE,
        client_id="c",
        scope="mcp",
        grant_id="g",
        now=int(time.time()),
        ttl=600,
    )
    with pytest.raises(InvalidTokenError):
        _verify(keys, token)
    assert store.reads == 0


def test_a_verifying_worker_drops_a_vanished_key_on_its_schedule(
    redis_client: redis.Redis,
) -> None:
    store = Store(redis_client, f"sched-{uuid.uuid4().hex[:8]}:")
    clock = Clock()
    verifier, signer = _clocked(store, clock), _clocked(store, clock)
    old_token = _access_token(signer)
    assert _verify(verifier, old_token) == "alice"
    generation = verifier.generation()
    store.redis.delete(store.keys.signing_keys())
    _access_token(signer)  # re-creates the record with a new key
    clock.now += RECHECK_SECONDS - 1
    assert _verify(verifier, old_token) == "alice"  # cached, within the schedule
    clock.now += 1
    assert verifier.generation() != generation
    with pytest.raises(InvalidTokenError):
        _verify(verifier, old_token)


def test_jwks_rereads_at_most_once_per_second(redis_client: redis.Redis) -> None:
    store = CountingStore(redis_client, f"jwks-{uuid.uuid4().hex[:8]}:")
    clock = Clock()
    keys = _clocked(store, clock)
    first = keys.jwks()
    store.reads = 0
    for _ in range(100):
        assert keys.jwks() == first
    assert store.reads == 0
    clock.now += JWKS_REREAD_SECONDS
    keys.jwks()
    assert store.reads == 1


def test_with_redis_down_jwks_and_verification_keep_the_cache_but_signing_fails(
    fake_server: fakeredis.FakeServer, fake_redis: redis.Redis
) -> None:
    store = Store(fake_redis, "down:")
    clock = Clock()
    keys = _clocked(store, clock)
    token = _access_token(keys)
    document = keys.jwks()
    fake_server.connected = False
    clock.now += RECHECK_SECONDS
    assert keys.jwks() == document
    assert _verify(keys, token) == "alice"
    with pytest.raises(redis.exceptions.ConnectionError):
        keys.active()
    # An unknown kid during the outage is a store error (503), not a 401.
    clock.now += UNKNOWN_KID_REREAD_SECONDS
    with pytest.raises(redis.exceptions.ConnectionError):
        _verify(keys, _access_token_with(keys.keyset(), "other-kid"))


def _access_token_with(keyset: KeySet, kid: str) -> str:
    key = t.cast(ECKey, keyset.keys[0])
    return mint_access_token(
        _renamed(key, kid),
        issuer=ISSUER,
        sub="alice",
        audience=AUDIENCE,
        client_id="c",
        scope="mcp",
        grant_id="g",
        now=int(time.time()),
        ttl=600,
    )


# -- pinned keys: nothing generated, stored or re-read --------------------------------


def _pinned(store: Store, text: str) -> SigningKeys:
    return SigningKeys(store, Keyring(SECRET_KEY), parse_signing_keys(text))


def test_pinned_jwks_first_signs_all_verify_nothing_touches_redis(
    fake_server: fakeredis.FakeServer, fake_redis: redis.Redis
) -> None:
    signer = ECKey.generate_key("P-256", private=True)
    retired = ECKey.generate_key("P-256", private=True)
    jwks = json.dumps(
        {
            "keys": [
                {**signer.as_dict(private=True), "kid": "2026-12"},
                {**retired.as_dict(private=False), "kid": "2026-06"},
            ]
        }
    )
    store = Store(fake_redis, "pinned:")
    keys = _pinned(store, jwks)
    fake_server.connected = False  # pinned keys never need Redis
    assert keys.active().kid == "2026-12"
    assert [k["kid"] for k in keys.jwks()["keys"]] == ["2026-12", "2026-06"]
    assert not PRIVATE_MEMBERS & {m for k in keys.jwks()["keys"] for m in k}
    assert _verify(keys, _access_token(keys)) == "alice"
    # A token from before the rotation, signed with the retired key, verifies.
    old = mint_access_token(
        _renamed(retired, "2026-06"),
        issuer=ISSUER,
        sub="bob",
        audience=AUDIENCE,
        client_id="c",
        scope="mcp",
        grant_id="g",
        now=int(time.time()),
        ttl=600,
    )
    assert _verify(keys, old) == "bob"
    # An unknown kid is refused without a re-read (Redis is down: it would raise).
    with pytest.raises(InvalidTokenError):
        _verify(keys, _access_token(keys, kid="unknown"))
    fake_server.connected = True
    assert store.load_signing_keys() is None


def test_pinned_single_jwk_and_several_pem_blocks(fake_redis: redis.Redis) -> None:
    store = Store(fake_redis, "pem:")
    first = ECKey.generate_key("P-256", private=True)
    second = ECKey.generate_key("P-256", private=True)
    jwk_keys = _pinned(store, json.dumps(first.as_dict(private=True)))
    assert jwk_keys.active().kid == first.thumbprint()
    pems = (first.as_pem(private=True) + second.as_pem(private=False)).decode()
    pem_keys = _pinned(store, pems)
    assert [k["kid"] for k in pem_keys.jwks()["keys"]] == [
        first.thumbprint(),
        second.thumbprint(),
    ]
    assert _verify(pem_keys, _access_token(jwk_keys)) == "alice"
    assert store.load_signing_keys() is None


def test_active_from_the_record_read_with_the_grant(real_redis: redis.Redis) -> None:
    """The token endpoint's pipelined read: what it read is what signs."""
    store = CountingStore(real_redis, f"from-{uuid.uuid4().hex[:8]}:")
    stale, other = _worker(store), _worker(store)
    old_kid = stale.active().kid
    real_redis.flushall()
    new_kid = other.active().kid
    assert new_kid != old_kid
    store.reads = 0
    assert stale.active_from(store.redis.get(store.keys.signing_keys())).kid == new_kid
    assert store.reads == 0  # no read of its own
    # A record read as missing is re-created with SET NX and adopted.
    real_redis.flushall()
    created = stale.active_from(None).kid
    assert created not in (old_kid, new_kid)
    assert other.active().kid == created


# -- current(): the gateway's identity JWTs (J62) ----------------------------------
def test_current_signs_with_the_active_key_without_a_read_per_call(
    redis_client: redis.Redis,
) -> None:
    store = CountingStore(redis_client, f"t-{uuid.uuid4().hex[:8]}:")
    clock = Clock()
    keys = SigningKeys(store, Keyring(SECRET_KEY), clock=clock)
    active = keys.active().kid
    reads = store.reads
    assert {keys.current().kid for _ in range(20)} == {active}
    assert store.reads == reads
    # Once the JWKS interval has passed, it reads the record again.
    clock.now += JWKS_REREAD_SECONDS
    keys.current()
    assert store.reads - reads >= 1


def test_current_never_creates_the_record(store: Store) -> None:
    """No key stored means no access token of ours verified either: 503."""
    with pytest.raises(SigningKeysUnusableError):
        _worker(store).current()
    assert store.load_signing_keys() is None


def test_current_is_the_first_pinned_key(store: Store) -> None:
    first = ECKey.generate_key("P-256", parameters={"kid": "pin-1"}, private=True)
    second = ECKey.generate_key("P-256", parameters={"kid": "pin-2"}, private=True)
    keys = SigningKeys(store, Keyring(SECRET_KEY), (first, second))
    assert keys.current().kid == "pin-1"
    assert store.load_signing_keys() is None

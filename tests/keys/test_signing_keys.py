"""proxy/keys/signing_keys.py: keys shared by every worker, private parts sealed."""

from __future__ import annotations

import json
import threading
import typing as t
import uuid

import pytest
import redis
from joserfc import jwt
from joserfc.jwk import ECKey

from proxy.keys.keyring import Keyring
from proxy.keys.signing_keys import SigningKeys
from proxy.oauth.access_tokens import ALGORITHM
from proxy.store import Store

SECRET_KEY = bytes(range(32))
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return Store(redis_client, f"t-{uuid.uuid4().hex[:8]}:")


def _worker(store: Store, pem: str | None = None) -> SigningKeys:
    return SigningKeys(store, Keyring(SECRET_KEY), pem)


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
    assert document["v"] == 1
    entry = document["keys"][0]
    assert set(entry) == {"kid", "alg", "created_at", "private"}
    assert entry["kid"] == keys.active().kid
    private_d = keys.active().as_dict(private=True)["d"]
    assert private_d not in raw
    # It opens only with the proxy's key.
    pem = Keyring(SECRET_KEY).open(entry["private"], context="signing-keys")
    assert b"PRIVATE KEY" in pem


def test_a_worker_with_another_secret_cannot_read_the_keys(store: Store) -> None:
    _worker(store).active()
    stranger = SigningKeys(store, Keyring(bytes(32)), None)
    with pytest.raises(ValueError, match="authenticate"):
        stranger.active()


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

"""proxy/keys/rotation.py with signing_keys.py: a rotation seen by running workers.

Two clocks are injected: the wall clock the schedule is read against, and the
monotonic one the workers' re-read intervals use. Nothing sleeps.
"""

from __future__ import annotations

import json
import threading
import typing as t
import uuid

import pytest
import redis

from proxy.keys.key_document import SEAL_CONTEXT
from proxy.keys.key_document import parse_document
from proxy.keys.keyring import Keyring
from proxy.keys.rotation import KeyAdmin
from proxy.keys.rotation import KeysRefusedError
from proxy.keys.signing_keys import RECHECK_SECONDS
from proxy.keys.signing_keys import UNKNOWN_KID_REREAD_SECONDS
from proxy.keys.signing_keys import SigningKeys
from proxy.oauth.access_tokens import CLOCK_SKEW_SECONDS
from proxy.oauth.access_tokens import mint_access_token
from proxy.oauth.errors import InvalidTokenError
from proxy.observability.events import Event
from proxy.observability.events import Events
from proxy.store import Store

OLD_SECRET = bytes(range(32))
NEW_SECRET = bytes(range(100, 132))
ISSUER = "https://as.example.com"
AUDIENCE = "https://as.example.com/mcp"
OVERLAP = 300
LIFETIME = 3600


class Clock:
    """A hand-moved clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingStore(Store):
    reads = 0

    def load_signing_keys(self) -> str | None:
        self.reads += 1
        return super().load_signing_keys()


@pytest.fixture
def store(redis_client: redis.Redis) -> CountingStore:
    return CountingStore(redis_client, f"rot-{uuid.uuid4().hex[:8]}:")


@pytest.fixture
def wall() -> Clock:
    return Clock(1_800_000_000.0)


@pytest.fixture
def mono() -> Clock:
    return Clock(1000.0)


def _worker(
    store: Store,
    wall: Clock,
    mono: Clock,
    keyring: Keyring | None = None,
    events: Events | None = None,
) -> SigningKeys:
    return SigningKeys(
        store,
        keyring or Keyring(OLD_SECRET),
        clock=mono,
        wall_clock=wall,
        events=events,
    )


def _token(keys: SigningKeys, wall: Clock) -> str:
    return mint_access_token(
        keys.active(),
        issuer=ISSUER,
        sub="alice",
        audience=AUDIENCE,
        client_id="c",
        scope="mcp",
        grant_id="g",
        now=int(wall()),
        ttl=LIFETIME,
    )


def _verify(keys: SigningKeys, token: str, wall: Clock) -> str:
    claims = keys.verify(token, issuer=ISSUER, audience=AUDIENCE, now=int(wall()))
    return claims.sub


def _jwks_kids(keys: SigningKeys) -> list[str]:
    return sorted(key["kid"] for key in keys.jwks()["keys"])


def _rotate(store: Store, wall: Clock, keyring: Keyring | None = None) -> t.Any:
    admin = KeyAdmin(store, keyring or Keyring(OLD_SECRET), clock=wall)
    return admin.rotate(overlap=OVERLAP, max_token_lifetime=LIFETIME)


def test_a_rotation_publishes_the_next_key_before_it_signs(
    store: CountingStore, wall: Clock, mono: Clock
) -> None:
    signer, verifier = _worker(store, wall, mono), _worker(store, wall, mono)
    old_kid = signer.active().kid
    assert _jwks_kids(verifier) == [old_kid]
    rotation = _rotate(store, wall)
    assert rotation.previous_kid == old_kid
    mono.now += 1  # the JWKS' re-read interval
    assert _jwks_kids(verifier) == sorted([old_kid, rotation.kid])
    # Published, but nobody signs with it yet: every worker still signs old.
    assert signer.active().kid == old_kid
    assert verifier.active().kid == old_kid
    wall.now += OVERLAP - 1
    assert signer.active().kid == old_kid


def test_signing_switches_after_the_overlap_without_a_restart(
    store: CountingStore, wall: Clock, mono: Clock
) -> None:
    signer, verifier = _worker(store, wall, mono), _worker(store, wall, mono)
    old_token = _token(signer, wall)
    assert _verify(verifier, old_token, wall) == "alice"
    rotation = _rotate(store, wall)
    wall.now += OVERLAP
    mono.now += RECHECK_SECONDS  # the verifier's scheduled re-read
    assert signer.active().kid == rotation.kid
    assert verifier.active().kid == rotation.kid
    new_token = _token(signer, wall)
    assert _verify(verifier, new_token, wall) == "alice"
    # Tokens the old key signed still verify until it retires.
    assert _verify(verifier, old_token, wall) == "alice"


def test_the_old_key_retires_after_the_longest_token_lifetime(
    store: CountingStore, wall: Clock, mono: Clock
) -> None:
    signer, verifier = _worker(store, wall, mono), _worker(store, wall, mono)
    signer.active()
    rotation = _rotate(store, wall)
    wall.now += OVERLAP - 1
    # The last token the old key signs: it lives the full lifetime.
    last_old = _token(signer, wall)
    wall.now += 1
    generation = verifier.generation()
    retire_at = rotation.previous_retire_at
    assert retire_at == rotation.sign_from + LIFETIME + CLOCK_SKEW_SECONDS
    wall.now = retire_at - 1  # the last second its last token is accepted
    assert _verify(verifier, last_old, wall) == "alice"
    assert rotation.previous_kid in _jwks_kids(verifier)
    wall.now = retire_at
    mono.now += 1
    assert _jwks_kids(verifier) == [rotation.kid]
    # The cache of verified tokens sees a new generation: it forgets them.
    assert verifier.generation() != generation
    store.reads = 0
    with pytest.raises(InvalidTokenError) as refused:
        # `now` says the token has not expired: only the retirement refuses it.
        verifier.verify(last_old, issuer=ISSUER, audience=AUDIENCE, now=retire_at - 60)
    assert refused.value.reason == "bad_jwt"
    # The record still names the retired kid: no re-read is spent on it.
    assert store.reads == 0


def test_every_worker_derives_the_same_state_from_the_clock(
    store: CountingStore, wall: Clock, mono: Clock
) -> None:
    workers = [_worker(store, wall, mono) for _ in range(4)]
    workers[0].active()
    rotation = _rotate(store, wall)
    for moment in (0, OVERLAP - 1, OVERLAP, rotation.previous_retire_at - int(wall())):
        wall.now = 1_800_000_000.0 + moment
        mono.now += RECHECK_SECONDS
        assert len({w.active().kid for w in workers}) == 1
        assert len({json.dumps(w.jwks(), sort_keys=True) for w in workers}) == 1


def test_a_rotation_is_one_compare_and_set_write(
    store: CountingStore, wall: Clock, mono: Clock
) -> None:
    _worker(store, wall, mono).active()
    before = t.cast(str, store.load_signing_keys())
    _rotate(store, wall)
    after = t.cast(str, store.load_signing_keys())
    # A writer that read before the rotation cannot overwrite it.
    assert not store.replace_signing_keys(before, before)
    assert store.load_signing_keys() == after
    assert store.replace_signing_keys(after, after)


def test_a_second_rotation_during_the_overlap_is_refused(
    store: CountingStore, wall: Clock, mono: Clock
) -> None:
    _worker(store, wall, mono).active()
    _rotate(store, wall)
    before = store.load_signing_keys()
    wall.now += 10
    with pytest.raises(KeysRefusedError, match="in progress"):
        _rotate(store, wall)
    assert store.load_signing_keys() == before


def test_racing_rotations_add_exactly_one_key(
    real_redis: redis.Redis, wall: Clock, mono: Clock
) -> None:
    store = Store(real_redis, f"race-{uuid.uuid4().hex[:8]}:")
    _worker(store, wall, mono).active()
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def rotate() -> None:
        barrier.wait(timeout=10)
        try:
            outcomes.append(_rotate(store, wall).kid)
        except KeysRefusedError:
            outcomes.append("refused")

    threads = [threading.Thread(target=rotate) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(outcomes) == 6
    assert outcomes.count("refused") == 5
    assert len(parse_document(t.cast(str, store.load_signing_keys()))) == 2


def test_retire_takes_a_key_out_at_once(
    store: CountingStore, wall: Clock, mono: Clock
) -> None:
    signer = _worker(store, wall, mono)
    old_token = _token(signer, wall)
    rotation = _rotate(store, wall)
    wall.now += OVERLAP
    admin = KeyAdmin(store, Keyring(OLD_SECRET), clock=wall)
    with pytest.raises(KeysRefusedError, match="signs now"):
        admin.retire(rotation.kid)
    admin.retire(rotation.previous_kid)
    mono.now += RECHECK_SECONDS
    assert _jwks_kids(signer) == [rotation.kid]
    with pytest.raises(InvalidTokenError):
        _verify(signer, old_token, wall)


def test_rotate_refuses_a_record_it_cannot_open(
    store: CountingStore, wall: Clock, mono: Clock
) -> None:
    _worker(store, wall, mono).active()
    before = store.load_signing_keys()
    with pytest.raises(KeysRefusedError, match="PROXY_SECRET_KEY"):
        _rotate(store, wall, Keyring(NEW_SECRET))
    assert store.load_signing_keys() == before


# -- unknown kid after a rotation: one re-read, rate-limited -------------------------


def test_a_new_kid_is_picked_up_by_one_rate_limited_reread(
    store: CountingStore, wall: Clock, mono: Clock
) -> None:
    """A worker that has not re-read since the rotation meets the new kid:
    one GET adopts it; a flood of made-up kids in the same second costs none."""
    signer, verifier = _worker(store, wall, mono), _worker(store, wall, mono)
    _verify(verifier, _token(signer, wall), wall)
    _rotate(store, wall)
    wall.now += OVERLAP  # the overlap ran out before the verifier's schedule
    new_token = _token(signer, wall)
    store.reads = 0
    assert _verify(verifier, new_token, wall) == "alice"
    assert store.reads == 1
    forged = [_forged(wall, uuid.uuid4().hex) for _ in range(100)]
    for token in forged:
        with pytest.raises(InvalidTokenError):
            _verify(verifier, token, wall)
    assert store.reads == 1
    mono.now += UNKNOWN_KID_REREAD_SECONDS
    with pytest.raises(InvalidTokenError):
        _verify(verifier, forged[0], wall)
    assert store.reads == 2


def test_concurrent_unknown_kids_cause_one_reread(
    real_redis: redis.Redis, wall: Clock, mono: Clock
) -> None:
    store = CountingStore(real_redis, f"flood-{uuid.uuid4().hex[:8]}:")
    verifier = _worker(store, wall, mono)
    _verify(verifier, _token(_worker(store, wall, mono), wall), wall)
    store.reads = 0
    barrier = threading.Barrier(16)
    refused: list[bool] = []

    def present() -> None:
        token = _forged(wall, uuid.uuid4().hex)
        barrier.wait(timeout=10)
        try:
            _verify(verifier, token, wall)
        except InvalidTokenError:
            refused.append(True)

    threads = [threading.Thread(target=present) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(refused) == 16
    assert store.reads == 1


def _forged(wall: Clock, kid: str) -> str:
    from joserfc.jwk import ECKey

    key = ECKey.generate_key("P-256", private=True, parameters={"kid": kid})
    return mint_access_token(
        key,
        issuer=ISSUER,
        sub="mallory",
        audience=AUDIENCE,
        client_id="c",
        scope="mcp",
        grant_id="g",
        now=int(wall()),
        ttl=600,
    )


# -- a changed PROXY_SECRET_KEY: resealed once, atomically ---------------------------


def test_keys_sealed_under_the_previous_secret_are_resealed_once(
    store: CountingStore, wall: Clock, mono: Clock
) -> None:
    old_kid = _worker(store, wall, mono).active().kid
    seen: list[Event] = []
    events = Events()
    events.subscribe(seen.append)
    moved = Keyring(NEW_SECRET, [OLD_SECRET])
    worker = _worker(store, wall, mono, keyring=moved, events=events)
    assert worker.active().kid == old_kid  # the same key, not a new one
    raw = t.cast(str, store.load_signing_keys())
    (entry,) = parse_document(raw)
    # Now sealed under the new secret only.
    assert Keyring(NEW_SECRET).open(entry.sealed, context=SEAL_CONTEXT)
    with pytest.raises(ValueError, match="authenticate"):
        Keyring(OLD_SECRET).open(entry.sealed, context=SEAL_CONTEXT)
    assert [e.name for e in seen] == ["keys.resealed"]
    # Adopting its own write: no second reseal on the next reads.
    worker.active()
    mono.now += RECHECK_SECONDS
    worker.keyset()
    assert [e.name for e in seen] == ["keys.resealed"]
    assert store.load_signing_keys() == raw


def test_racing_workers_reseal_the_keys_exactly_once(
    real_redis: redis.Redis, wall: Clock, mono: Clock
) -> None:
    store = Store(real_redis, f"reseal-{uuid.uuid4().hex[:8]}:")
    old_kid = _worker(store, wall, mono).active().kid
    seen: list[Event] = []
    events = Events()
    events.subscribe(seen.append)
    workers = [
        _worker(store, wall, mono, Keyring(NEW_SECRET, [OLD_SECRET]), events)
        for _ in range(8)
    ]
    barrier = threading.Barrier(len(workers))
    kids: list[str] = []

    def sign(keys: SigningKeys) -> None:
        barrier.wait(timeout=10)
        kids.append(str(keys.active().kid))

    threads = [threading.Thread(target=sign, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert kids == [old_kid] * len(workers)
    assert [e.name for e in seen] == ["keys.resealed"]
    (entry,) = parse_document(t.cast(str, store.load_signing_keys()))
    assert Keyring(NEW_SECRET).open(entry.sealed, context=SEAL_CONTEXT)

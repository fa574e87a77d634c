"""JWT signing keys shared by every worker and instance, and the JWKS document.

Keys are either pinned by the operator (SIGNING_KEYS, see ``pinned.py``: never
generated, never stored, never re-read) or kept in Redis in the ``keys``
record, private parts sealed with AES-GCM, created once with ``SET NX``.

The record is the only truth, and a worker's copy is only a cache. Redis can
come back empty (a restart without persistence), and then every worker must
end up on the one key that is stored next, never on one it made up itself:

- **Signing reads the record every time**: the token endpoint pipelines the GET
  with its first read of the client and grant (``active_from()``; no extra
  round trip), anything else signing calls ``active()``. A worker that finds
  the record gone re-creates it with ``SET NX`` and signs with whatever is
  stored after that, so two workers racing converge on the winner's key.
- **The JWKS document re-reads at most once per second** (``JWKS_REREAD_SECONDS``),
  so two workers never publish different key sets for longer than that.
- **Verification re-reads on an unknown ``kid``**, at most once per second per
  process (``UNKNOWN_KID_REREAD_SECONDS``, its own budget: a flood of tokens
  with random kids costs one GET a second, not one per request), and
- **on a cheap schedule** (``RECHECK_SECONDS``, 30 s), so a worker that only
  verifies also drops a key Redis no longer holds.

A read that finds Redis down keeps the cached keys for the JWKS and for
verification (the request then needs Redis for the grant anyway, and answers
503 there); signing never signs with a cached key.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import typing as t
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass

import redis.exceptions
from joserfc.jwk import ECKey
from joserfc.jwk import KeySet

from proxy.keys.keyring import Keyring
from proxy.keys.pinned import with_thumbprint_kid
from proxy.oauth.access_tokens import ALGORITHM
from proxy.oauth.access_tokens import AccessClaims
from proxy.oauth.access_tokens import unverified_kid
from proxy.oauth.access_tokens import verify_access_token
from proxy.oauth.errors import InvalidTokenError

if t.TYPE_CHECKING:
    from proxy.store import Store


log = logging.getLogger(__name__)


#: A worker that only verifies re-reads the record this often (one GET).
RECHECK_SECONDS = 30.0
#: At most one re-read per process per this, for the JWKS endpoint.
JWKS_REREAD_SECONDS = 1.0
#: At most one re-read per process per this, for tokens with a kid we lack.
UNKNOWN_KID_REREAD_SECONDS = 1.0
#: After a failed read, cached keys are served this long before trying again.
FAILED_READ_RETRY_SECONDS = 1.0

_SEAL_CONTEXT = "signing-keys"
#: SET NX then GET, repeated if the record vanishes in between (FLUSHALL again).
_CREATE_ATTEMPTS = 3
_UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


@dataclass(frozen=True, slots=True)
class KeyView:
    """One adopted version of the key set: the first key signs."""

    raw: str | None
    keys: tuple[ECKey, ...]
    keyset: KeySet
    kids: frozenset[str]
    #: Changes whenever the key set does: caches of verified tokens key on it.
    generation: int


class SigningKeys:
    """The signing key, the key set and the JWKS, kept equal to the ``keys`` record."""

    def __init__(
        self,
        store: Store,
        keyring: Keyring,
        pinned: Sequence[ECKey] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._clock = clock
        self._pinned = bool(pinned)
        #: Serialises re-reads, so many requests due at once cause one GET.
        self._reread_lock = threading.Lock()
        self._adopt_lock = threading.Lock()
        self._reads = itertools.count(1)
        self._adopted_read = 0
        self._view: KeyView | None = None
        self._read_at = -float("inf")
        self._failed_at = -float("inf")
        self._unknown_kid_read_at = -float("inf")
        if pinned:
            self._view = _view(None, tuple(pinned), generation=1)

    # -- what the endpoints use -------------------------------------------------
    def active(self) -> ECKey:
        """The key new tokens are signed with: the first key Redis holds now."""
        if self._pinned:
            return self._pinned_view().keys[0]
        return self._read().keys[0]

    def active_from(self, stored: str | None) -> ECKey:
        """The signing key, from the ``keys`` record the caller read in its own
        round trip (the token endpoint pipelines it with the client and grant).

        As good as reading it now: the grant script that follows proves Redis
        still holds that state. A missing record is re-created (SET NX).
        """
        if self._pinned:
            return self._pinned_view().keys[0]
        read = next(self._reads)
        if stored is None:
            return self._read(missing=True).keys[0]
        return self._adopt(read, stored).keys[0]

    def jwks(self) -> dict[str, t.Any]:
        """The public key set, re-read at most every ``JWKS_REREAD_SECONDS``."""
        view = self._fresh(JWKS_REREAD_SECONDS)
        return {"keys": [_public_jwk(key) for key in view.keys]}

    def keyset(self) -> KeySet:
        """The verification key set (re-read every ``RECHECK_SECONDS``).

        Verifying never creates a key: before the first token is signed no
        presented token can be ours, and a refused request must not write the
        ``keys`` record.
        """
        return self._fresh(RECHECK_SECONDS, create=False).keyset

    def generation(self) -> int:
        """Changes whenever the key set does (re-read every ``RECHECK_SECONDS``)."""
        return self._fresh(RECHECK_SECONDS, create=False).generation

    def verify(
        self, token: str, *, issuer: str, audience: str, now: int
    ) -> AccessClaims:
        """verify_access_token() against our keys, re-reading on a kid we lack."""
        view = self._fresh(RECHECK_SECONDS, create=False)
        try:
            return verify_access_token(
                token, view.keyset, issuer=issuer, audience=audience, now=now
            )
        except InvalidTokenError as exc:
            if exc.reason != "bad_jwt":
                raise
            kid = unverified_kid(token)
            if kid is None or kid in view.kids:
                raise  # a key we hold said no: re-reading cannot help
            newer = self._reread_for(kid)
            if newer is None:
                raise
        return verify_access_token(
            token, newer.keyset, issuer=issuer, audience=audience, now=now
        )

    # -- keeping the cache equal to the record -----------------------------------
    def _pinned_view(self) -> KeyView:
        return t.cast(KeyView, self._view)

    def _fresh(self, max_age: float, *, create: bool = True) -> KeyView:
        """The cached view, re-read first if older than ``max_age``.

        With Redis unavailable, a cached view is kept (retried after
        ``FAILED_READ_RETRY_SECONDS``); without one, the error propagates (503).
        """
        view = self._view
        if view is not None and (self._pinned or not self._due(max_age)):
            return view
        with self._reread_lock:
            view = self._view
            if view is not None and not self._due(max_age):
                return view  # another request re-read while we waited
            try:
                return self._read(create=create)
            except _UNAVAILABLE as exc:
                self._failed_at = self._clock()
                if view is None:
                    raise
                log.warning(
                    "signing keys: Redis unavailable (%s), keeping the cached keys",
                    exc.__class__.__name__,
                )
                return view

    def _due(self, max_age: float) -> bool:
        now = self._clock()
        return (
            now - self._read_at >= max_age
            and now - self._failed_at >= FAILED_READ_RETRY_SECONDS
        )

    def _reread_for(self, kid: str) -> KeyView | None:
        """A view that knows ``kid`` after one re-read, or None (rate-limited,
        pinned, or Redis does not hold it either). Redis errors propagate."""
        if self._pinned:
            return None
        with self._reread_lock:
            view = self._view
            if view is not None and kid in view.kids:
                return view  # another request re-read while we waited
            now = self._clock()
            if now - self._unknown_kid_read_at < UNKNOWN_KID_REREAD_SECONDS:
                return None
            self._unknown_kid_read_at = now
            view = self._read(create=False)
            return view if kid in view.kids else None

    def _read(self, *, missing: bool = False, create: bool = True) -> KeyView:
        """Read the record (creating it with SET NX if it is gone) and adopt it.

        ``missing``: the caller just read it and found nothing. Without
        ``create`` (verification), a missing record is not written: the cached
        view is kept (checked again after its interval), or an empty one is
        returned and not cached, so the first signer's key is seen at once.
        """
        read = next(self._reads)
        raw = None if missing else self._store.load_signing_keys()
        if raw is None and not create:
            self._read_at = self._clock()
            return self._view or _view(None, (), generation=0)
        attempts = 0
        while raw is None:
            attempts += 1
            if attempts > _CREATE_ATTEMPTS:  # pragma: no cover - flushed in a loop
                raise RuntimeError("the signing keys record vanished while created")
            created = self._store.create_signing_keys(self._new_document())
            raw = self._store.load_signing_keys()
            if raw is not None and self._view is not None:
                # We had keys, so Redis lost the record (restarted empty?).
                log.warning(
                    "signing keys record was missing from Redis: %s",
                    "created a new key" if created else "adopted another worker's key",
                )
        return self._adopt(read, raw)

    def _adopt(self, read: int, raw: str) -> KeyView:
        """Make ``raw`` the cached view, unless a later read was adopted already."""
        with self._adopt_lock:
            current = self._view
            if current is not None and current.raw == raw:
                view = current
            else:
                generation = current.generation + 1 if current else 1
                view = _view(raw, self._parse(raw), generation=generation)
            if read > self._adopted_read:
                if current is not None and current.kids != view.kids:
                    log.warning(
                        "signing keys changed in Redis: kids %s -> %s",
                        sorted(current.kids),
                        sorted(view.kids),
                    )
                self._adopted_read = read
                self._view = view
                self._read_at = self._clock()
            return view

    def _new_document(self) -> str:
        key = with_thumbprint_kid(ECKey.generate_key("P-256", private=True))
        log.info("generated a new signing key kid=%s", key.kid)
        return json.dumps(
            {
                "v": 1,
                "keys": [
                    {
                        "kid": key.kid,
                        "alg": ALGORITHM,
                        "created_at": int(time.time()),
                        "private": self._keyring.seal(
                            key.as_pem(private=True), context=_SEAL_CONTEXT
                        ),
                    }
                ],
            }
        )

    def _parse(self, document: str) -> tuple[ECKey, ...]:
        entries = json.loads(document)["keys"]
        keys = []
        for entry in entries:
            pem = self._keyring.open(entry["private"], context=_SEAL_CONTEXT)
            keys.append(ECKey.import_key(pem, parameters={"kid": entry["kid"]}))
        return tuple(keys)


def _view(raw: str | None, keys: tuple[ECKey, ...], *, generation: int) -> KeyView:
    return KeyView(
        raw=raw,
        keys=keys,
        keyset=KeySet(list(keys)),
        kids=frozenset(str(key.kid) for key in keys),
        generation=generation,
    )


def _public_jwk(key: ECKey) -> dict[str, t.Any]:
    return {
        **key.as_dict(private=False),
        "use": "sig",
        "alg": ALGORITHM,
        "kid": key.kid,
    }

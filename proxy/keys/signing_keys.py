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

**Rotation is a schedule in the record** (``schedule.py``): each key carries
``publish_at``, ``sign_from`` and ``retire_at``, and every worker derives from
the wall clock which keys are published and which one signs, so ``python -m
proxy keys rotate`` is one atomic write and no worker restarts.

**A changed PROXY_SECRET_KEY**: keys sealed under a PROXY_SECRET_KEY_PREVIOUS
are opened with it and the record is resealed under the current key once, with
a compare-and-set. A record that no key opens is never replaced (J32): signing,
verification and the JWKS answer 503 and ``/readyz`` names the cause.
"""

from __future__ import annotations

import itertools
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

from proxy.keys import schedule
from proxy.keys.key_document import DocumentError
from proxy.keys.key_document import KeyEntry
from proxy.keys.key_document import dump_document
from proxy.keys.key_document import new_entry
from proxy.keys.key_document import open_entries
from proxy.keys.key_document import parse_document
from proxy.keys.keyring import Keyring
from proxy.keys.keyring import SealError
from proxy.oauth.access_tokens import ALGORITHM
from proxy.oauth.access_tokens import AccessClaims
from proxy.oauth.access_tokens import unverified_kid
from proxy.oauth.access_tokens import verify_access_token
from proxy.oauth.errors import InvalidTokenError
from proxy.oauth.errors import TemporarilyUnavailableError

if t.TYPE_CHECKING:
    from proxy.observability.events import Events
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

#: SET NX then GET, repeated if the record vanishes in between (FLUSHALL again).
_CREATE_ATTEMPTS = 3
_UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class SigningKeysUnusableError(TemporarilyUnavailableError):
    """The ``keys`` record cannot be used: no key we hold opens it, or it is
    unreadable. 503 for whoever needed it; /readyz names the cause (J32)."""


@dataclass(frozen=True, slots=True)
class Phase:
    """What a view of the record means at one moment: the published keys
    (JWKS, verification) and the one that signs."""

    signer: ECKey | None
    keys: tuple[ECKey, ...]
    keyset: KeySet
    kids: frozenset[str]
    #: Changes whenever the published keys do: caches of verified tokens key on it.
    generation: int


@dataclass(slots=True)
class KeyView:
    """One adopted version of the record, its keys opened, and its phases."""

    raw: str | None
    entries: tuple[KeyEntry, ...]
    keys: tuple[ECKey, ...]
    #: Every kid the record names, published or not (no re-read for these).
    all_kids: frozenset[str]
    phases: dict[tuple[str, ...], Phase]


class SigningKeys:
    """The signing key, the key set and the JWKS, kept equal to the ``keys`` record."""

    def __init__(
        self,
        store: Store,
        keyring: Keyring,
        pinned: Sequence[ECKey] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        events: Events | None = None,
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._clock = clock
        self._wall_clock = wall_clock
        self._events = events
        self._generations = itertools.count(1)
        self._unusable_raw: str | None = None
        self._pinned = bool(pinned)
        #: Serialises re-reads, so many requests due at once cause one GET.
        self._reread_lock = threading.Lock()
        self._adopt_lock = threading.Lock()
        self._phase_lock = threading.Lock()
        self._reads = itertools.count(1)
        self._adopted_read = 0
        self._view: KeyView | None = None
        self._read_at = -float("inf")
        self._failed_at = -float("inf")
        self._unknown_kid_read_at = -float("inf")
        if pinned:
            # Pinned: the first signs, every one verifies, nothing is scheduled.
            entries = tuple(KeyEntry(str(k.kid), "", 0, 0, 0) for k in pinned)
            self._view = self._make_view(None, entries, tuple(pinned))

    # -- what the endpoints use -------------------------------------------------
    def active(self) -> ECKey:
        """The key new tokens are signed with: per the record Redis holds now."""
        if self._pinned:
            return self._signer(self._pinned_view())
        return self._signer(self._read())

    def active_from(self, stored: str | None) -> ECKey:
        """The signing key, from the ``keys`` record the caller read in its own
        round trip (the token endpoint pipelines it with the client and grant).

        As good as reading it now: the grant script that follows proves Redis
        still holds that state. A missing record is re-created (SET NX).
        """
        if self._pinned:
            return self._signer(self._pinned_view())
        read = next(self._reads)
        if stored is None:
            return self._signer(self._read(missing=True))
        return self._signer(self._adopt(read, stored))

    def current(self) -> ECKey:
        """The key that signs now, in the view the JWKS serves (re-read at most
        every ``JWKS_REREAD_SECONDS``), with no Redis read of its own.

        For the gateway's 60-second identity JWTs (J62): the key is one this
        worker's JWKS published within the last second, so a backend finds it
        there. Never creates the record (the caller verified an access token,
        so it exists); no signer is a 503.
        """
        if self._pinned:
            return self._signer(self._pinned_view())
        return self._signer(self._fresh(JWKS_REREAD_SECONDS, create=False))

    def jwks(self) -> dict[str, t.Any]:
        """The published keys, re-read at most every ``JWKS_REREAD_SECONDS``."""
        phase = self._phase(self._fresh(JWKS_REREAD_SECONDS))
        return {"keys": [_public_jwk(key) for key in phase.keys]}

    def keyset(self) -> KeySet:
        """The verification key set: the keys published now (the record is
        re-read every ``RECHECK_SECONDS``).

        Verifying never creates a key: before the first token is signed no
        presented token can be ours, and a refused request must not write the
        ``keys`` record.
        """
        return self._phase(self._fresh(RECHECK_SECONDS, create=False)).keyset

    def generation(self) -> int:
        """Changes whenever the published keys do (by the record or the clock)."""
        return self._phase(self._fresh(RECHECK_SECONDS, create=False)).generation

    def problem(self) -> str | None:
        """Why the keys cannot be used (``/readyz``), or None.

        ``unsealable``: no PROXY_SECRET_KEY we hold opens the record;
        ``unreadable``: it is not a signing keys document. Redis errors
        propagate (the probe reports the store itself).
        """
        if self._pinned:
            return None
        try:
            self._fresh(JWKS_REREAD_SECONDS, create=False)
        except SigningKeysUnusableError as exc:
            return exc.reason
        return None

    def verify(
        self, token: str, *, issuer: str, audience: str, now: int
    ) -> AccessClaims:
        """verify_access_token() against our keys, re-reading on a kid we lack."""
        view = self._fresh(RECHECK_SECONDS, create=False)
        phase = self._phase(view)
        try:
            return verify_access_token(
                token, phase.keyset, issuer=issuer, audience=audience, now=now
            )
        except InvalidTokenError as exc:
            if exc.reason != "bad_jwt":
                raise
            kid = unverified_kid(token)
            if kid is None or kid in view.all_kids:
                # A key we hold said no, or the record names it but it is not
                # published (retired, or not yet): re-reading cannot help (J34).
                raise
            newer = self._reread_for(kid)
            if newer is None:
                raise
        return verify_access_token(
            token, newer.keyset, issuer=issuer, audience=audience, now=now
        )

    # -- keeping the cache equal to the record -----------------------------------
    def _pinned_view(self) -> KeyView:
        return t.cast(KeyView, self._view)

    def _now(self) -> int:
        return int(self._wall_clock())

    def _signer(self, view: KeyView) -> ECKey:
        signer = self._phase(view).signer
        if signer is None:
            # Only an operator's edit by hand can get here (the CLI refuses).
            raise SigningKeysUnusableError(
                "No signing key is available.", reason="no_signing_key"
            )
        return signer

    def _phase(self, view: KeyView) -> Phase:
        """The view at the wall clock's now: published keys and the signer."""
        now = self._now()
        signer = schedule.signer(view.entries, now)
        published = [
            index
            for index, entry in enumerate(view.entries)
            if schedule.is_published(entry, now)
        ]
        signer_kid = signer.kid if signer is not None else ""
        marker = (signer_kid, *(view.entries[i].kid for i in published))
        phase = view.phases.get(marker)
        if phase is not None:
            return phase
        with self._phase_lock:
            phase = view.phases.get(marker)
            if phase is not None:
                return phase  # another thread got there first
            keys = tuple(view.keys[i] for i in published)
            signing = next((k for k in keys if k.kid == signer_kid), None)
            phase = Phase(
                signer=signing,
                keys=keys,
                keyset=KeySet(list(keys)),
                kids=frozenset(str(key.kid) for key in keys),
                generation=next(self._generations),
            )
            view.phases[marker] = phase
            return phase

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

    def _reread_for(self, kid: str) -> Phase | None:
        """A view that knows ``kid`` after one re-read, or None (rate-limited,
        pinned, or Redis does not hold it either). Redis errors propagate."""
        if self._pinned:
            return None
        with self._reread_lock:
            view = self._view
            if view is not None and kid in self._phase(view).kids:
                return self._phase(view)  # another request re-read meanwhile
            now = self._clock()
            if now - self._unknown_kid_read_at < UNKNOWN_KID_REREAD_SECONDS:
                return None
            self._unknown_kid_read_at = now
            phase = self._phase(self._read(create=False))
            return phase if kid in phase.kids else None

    def _read(self, *, missing: bool = False, create: bool = True) -> KeyView:
        """Read the record (creating it with SET NX if it is gone) and adopt it.

        ``missing``: the caller just read it and found nothing. Without
        ``create`` (verification), a missing record is not written: the cached
        view is kept (checked again after its interval), or an empty one is
        returned and not cached, so the first signer's key is seen at once.
        """
        read = next(self._reads)
        # Before the read: a request running alongside (a greenlet of this
        # worker) may create and adopt the first record while this read is
        # out, which is a first start, not a record Redis lost.
        had_keys = self._view is not None
        raw = None if missing else self._store.load_signing_keys()
        if raw is None and not create:
            self._read_at = self._clock()
            return self._view or self._make_view(None, (), ())
        attempts = 0
        while raw is None:
            attempts += 1
            if attempts > _CREATE_ATTEMPTS:  # pragma: no cover - flushed in a loop
                raise RuntimeError("the signing keys record vanished while created")
            created = self._store.create_signing_keys(self._new_document())
            raw = self._store.load_signing_keys()
            if raw is not None and had_keys:
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
                view = self._parse(raw)
            if read > self._adopted_read:
                if current is not None and current.all_kids != view.all_kids:
                    log.warning(
                        "signing keys changed in Redis: kids %s -> %s",
                        sorted(current.all_kids),
                        sorted(view.all_kids),
                    )
                self._adopted_read = read
                self._view = view
                self._read_at = self._clock()
            return view

    def _new_document(self) -> str:
        now = self._now()
        entry = new_entry(self._keyring, now=now, sign_from=now)
        log.info("generated a new signing key kid=%s", entry.kid)
        return dump_document([entry])

    def _parse(self, raw: str) -> KeyView:
        """Open every key of ``raw``; reseal the record if an old secret opened it.

        No key we hold opening it is an operator's problem, not the caller's:
        503 and one clear log line per version of the record (J32).
        """
        try:
            entries = parse_document(raw)
            opened = open_entries(entries, self._keyring)
        except (SealError, DocumentError) as exc:
            reason = "unsealable" if isinstance(exc, SealError) else "unreadable"
            if self._unusable_raw != raw:
                self._unusable_raw = raw
                log.error(
                    "signing keys record is %s: %s",
                    reason,
                    "no PROXY_SECRET_KEY or PROXY_SECRET_KEY_PREVIOUS opens it; set "
                    "PROXY_SECRET_KEY_PREVIOUS to the key it was sealed with (see "
                    "README, Rotating keys)"
                    if reason == "unsealable"
                    else exc,
                )
            raise SigningKeysUnusableError(
                "Signing keys are unavailable.", reason=reason
            ) from None
        if opened.resealed is not None:
            raw = self._reseal(raw, opened.resealed, entries)
        return self._make_view(raw, entries, opened.keys)

    def _reseal(self, raw: str, resealed: str, entries: tuple[KeyEntry, ...]) -> str:
        """Store the record resealed under the current key, once (compare-and-set):
        of many workers, one wins and the others adopt its write on a re-read."""
        if not self._store.replace_signing_keys(raw, resealed):
            return raw
        log.warning("signing keys resealed under the current PROXY_SECRET_KEY")
        if self._events is not None:
            self._events.emit("keys.resealed", kids=[e.kid for e in entries])
        return resealed

    def _make_view(
        self, raw: str | None, entries: tuple[KeyEntry, ...], keys: tuple[ECKey, ...]
    ) -> KeyView:
        return KeyView(
            raw=raw,
            entries=entries,
            keys=keys,
            all_kids=frozenset(entry.kid for entry in entries),
            phases={},
        )


def _public_jwk(key: ECKey) -> dict[str, t.Any]:
    return {
        **key.as_dict(private=False),
        "use": "sig",
        "alg": ALGORITHM,
        "kid": key.kid,
    }

"""An in-process cache of verified access tokens (never of their revocation)."""

from __future__ import annotations

import threading
import typing as t
from collections import OrderedDict

from proxy.oauth.access_tokens import CLOCK_SKEW_SECONDS
from proxy.oauth.access_tokens import AccessClaims
from proxy.oauth.errors import InvalidTokenError

if t.TYPE_CHECKING:
    from proxy.app_state import AppState


class VerifiedTokens:
    """Access tokens whose signature and claims this app already checked.

    Only the result of a pure check is kept (a token string always verifies
    the same way against the same keys, issuer and audience), keyed by the
    audience asked as well as the token: a token verified for one MCP server
    is never a hit at another (J57). Expiry is
    re-checked on every hit, and revocation always asks the store. The cache
    is emptied when the key set changes (``SigningKeys.generation()``), so a
    key dropped from Redis stops a cached token too. One per app, bounded,
    least recently used first out.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._claims: OrderedDict[tuple[str, str], AccessClaims] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0
        self._called: OrderedDict[str, None] = OrderedDict()

    def verify(
        self, app: AppState, token: str, now: int, *, audience: str
    ) -> AccessClaims:
        """The token's claims if its `aud` is `audience` (cached or checked now)."""
        generation = app.signing_keys.generation()
        key = (audience, token)
        with self._lock:
            if generation != self._generation:
                self._claims.clear()
                self._generation = generation
            cached = self._claims.get(key)
            if cached is not None:
                self._claims.move_to_end(key)
        if cached is not None:
            if cached.expires_at + CLOCK_SKEW_SECONDS < now:
                raise InvalidTokenError("The access token expired.", reason="expired")
            return cached
        claims = app.signing_keys.verify(
            token,
            issuer=app.settings.issuer,
            audience=audience,
            now=now,
        )
        with self._lock:
            if generation != self._generation:
                return claims  # the keys changed meanwhile: do not cache
            self._claims[key] = claims
            while len(self._claims) > self._size:
                self._claims.popitem(last=False)
        return claims

    def first_call(self, grant_id: str) -> bool:
        """True the first time this worker relays an MCP call for `grant_id`.

        Per worker and bounded like the cache: with N workers a grant's
        "first call" may be told up to N times, never on every call.
        """
        with self._lock:
            if grant_id in self._called:
                return False
            self._called[grant_id] = None
            while len(self._called) > self._size:
                self._called.popitem(last=False)
            return True

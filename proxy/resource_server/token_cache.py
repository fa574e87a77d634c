"""An in-process cache of verified access tokens (never of their revocation)."""

from __future__ import annotations

import threading
import typing as t
from collections import OrderedDict

from proxy.oauth.access_tokens import CLOCK_SKEW_SECONDS
from proxy.oauth.access_tokens import AccessClaims
from proxy.oauth.access_tokens import verify_access_token
from proxy.oauth.errors import InvalidTokenError

if t.TYPE_CHECKING:
    from proxy.app_state import AppState


class VerifiedTokens:
    """Access tokens whose signature and claims this app already checked.

    Only the result of a pure check is kept (a token string always verifies
    the same way against the same keys, issuer and audience); expiry is
    re-checked on every hit, and revocation always asks the store. One per app,
    bounded, least recently used first out.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._claims: OrderedDict[str, AccessClaims] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, app: AppState, token: str, now: int) -> AccessClaims:
        with self._lock:
            cached = self._claims.get(token)
            if cached is not None:
                self._claims.move_to_end(token)
        if cached is not None:
            if cached.expires_at + CLOCK_SKEW_SECONDS < now:
                raise InvalidTokenError("The access token expired.", reason="expired")
            return cached
        claims = verify_access_token(
            token,
            app.signing_keys.keyset(),
            issuer=app.settings.issuer,
            audience=app.settings.resource,
            now=now,
        )
        with self._lock:
            self._claims[token] = claims
            while len(self._claims) > self._size:
                self._claims.popitem(last=False)
        return claims

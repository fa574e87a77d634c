"""The resource side: is this request's bearer token good for the MCP server?

Shared by the gateway (`/mcp`) and the forward-auth endpoint. Checks, in
order: a bearer token in the Authorization header (never the query, PRM-14;
never two methods, PRM-12), our signature, `typ`, `iss`, `aud` = the resource,
`exp`, that the grant is still alive in the store (revocation takes effect on
the next request), and the required scopes.
"""

from __future__ import annotations

import threading
import time
import typing as t
from collections import OrderedDict
from urllib.parse import urlsplit

from . import scopes
from .bearer import challenge
from .bearer import token_from_header
from .errors import InsufficientScopeError
from .errors import InvalidRequestError
from .errors import InvalidTokenError
from .tokens import CLOCK_SKEW_SECONDS
from .tokens import AccessClaims
from .tokens import verify_access_token

if t.TYPE_CHECKING:
    from flask import Request

    from .app_state import AppState
    from .settings import Settings


def resource_metadata_url(app: AppState) -> str:
    """The path-inserted PRM URL of the resource (RFC 9728 §3.1)."""
    path = urlsplit(app.settings.resource).path
    return app.settings.url("/.well-known/oauth-protected-resource" + path)


def identity_headers(settings: Settings, claims: AccessClaims) -> dict[str, str]:
    """The verified identity, as the gateway and forward-auth hand it on."""
    headers = {
        settings.forward_user_header: claims.sub,
        "X-Forwarded-Client-Id": claims.client_id,
        "X-Forwarded-Scope": claims.scope,
    }
    email = claims.extra.get("email")
    # Only an address the IdP verified is an identity (a user can type any
    # unverified address into some IdPs).
    if isinstance(email, str) and claims.extra.get("email_verified") is True:
        headers[settings.forward_email_header] = email
    return headers


def challenge_scope(app: AppState) -> str | None:
    needed = app.settings.required_scopes or app.settings.mcp_scopes
    return " ".join(needed) or None


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


def verify_request(app: AppState, request: Request) -> AccessClaims:
    """The verified claims of the request's access token, or an InvalidTokenError."""
    metadata = resource_metadata_url(app)
    scope = challenge_scope(app)
    header_token = token_from_header(request.headers.get("Authorization"))
    if header_token and request.mimetype == "application/x-www-form-urlencoded":
        if "access_token" in request.form:
            # RFC 6750 §3.1: more than one method is invalid_request (PRM-12).
            raise InvalidRequestError("Send the token in one place only.")
    if header_token is None:
        error = InvalidTokenError("Authorization required.", reason="no_token")
        error.challenge = challenge(metadata, scope=scope)
        raise error
    try:
        claims = app.verified_tokens.verify(app, header_token, int(time.time()))
        # Revocation is never cached: the store is asked on every request.
        if not app.store.grant_exists(claims.grant_id):
            raise InvalidTokenError("The access token was revoked.", reason="revoked")
    except InvalidTokenError as exc:
        exc.challenge = challenge(
            metadata, scope=scope, error="invalid_token", description=exc.description
        )
        raise
    required = app.settings.required_scopes
    if required and not scopes.is_subset(list(required), scopes.parse(claims.scope)):
        error = InsufficientScopeError("The token lacks a required scope.")
        error.challenge = challenge(
            metadata, scope=" ".join(required), error="insufficient_scope"
        )
        raise error
    return claims

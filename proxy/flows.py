"""Steps shared by several endpoints: sending the browser upstream, minting tokens."""

from __future__ import annotations

import json
import time
import typing as t

from . import pkce
from .authorization import AuthorizationRequest
from .browser import browser_hash
from .crypto import random_token
from .errors import BadRequestPageError
from .errors import TemporarilyUnavailableError
from .store.records import Transaction
from .tokens import mint_access_token
from .upstream import UpstreamError
from .upstream import UpstreamTokens

if t.TYPE_CHECKING:
    from .app_state import AppState


def begin_upstream(
    app: AppState,
    request: AuthorizationRequest,
    browser: str,
    *,
    proxy_state: str | None = None,
) -> str:
    """Store the approved request under a fresh state; return the IdP login URL.

    UP-1: the upstream state is created only now, after consent, and stored
    with the proxy's own PKCE verifier and nonce and the browser binding. A
    consent form passes a state derived from its own nonce, so submitting the
    same form twice finds the state taken and fails (CONSENT-3: usable once).
    """
    proxy_state = proxy_state or random_token()
    verifier, challenge = pkce.new_pair()
    nonce = random_token(16)
    txn = Transaction(
        **request.to_dict(),
        upstream_verifier=verifier,
        nonce=nonce,
        browser_hash=browser_hash(browser),
        created_at=int(time.time()),
    )
    try:
        url = app.upstream.authorization_url(
            state=proxy_state, code_challenge=challenge, nonce=nonce
        )
    except UpstreamError as exc:
        # AUTHZ-14: the IdP being down goes back to the client, not a 500 page.
        raise TemporarilyUnavailableError(
            "The identity provider is unavailable.",
            reason=f"upstream_{exc.kind}",
            redirect_uri=request.redirect_uri,
            state=request.state,
        ) from exc
    if not app.store.create_txn(proxy_state, txn):
        raise BadRequestPageError(
            "This consent form was already used. Start the connection again.",
            reason="txn_exists",
        )
    return url


def token_response(
    app: AppState,
    *,
    sub: str,
    claims: dict[str, t.Any],
    client_id: str,
    scope: str,
    resource: str,
    grant_id: str,
    refresh_token: str | None,
    now: int,
) -> dict[str, t.Any]:
    """The RFC 6749 §5.1 success body with a freshly signed access token."""
    ttl = app.settings.access_token_ttl_seconds
    access_token = mint_access_token(
        app.signing_keys.active(),
        issuer=app.settings.issuer,
        sub=sub,
        audience=resource,
        client_id=client_id,
        scope=scope,
        grant_id=grant_id,
        now=now,
        ttl=ttl,
        extra=claims,
    )
    body: dict[str, t.Any] = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ttl,
        "scope": scope,
    }
    if refresh_token:
        body["refresh_token"] = refresh_token
    return body


def seal_upstream(app: AppState, tokens: UpstreamTokens, context: str) -> str:
    """Upstream tokens as stored in a grant: AES-GCM, bound to the grant's key.

    The upstream access token is kept only when it is forwarded to the MCP
    backend (FORWARD_UPSTREAM_TOKEN); refreshing needs only the refresh token.
    """
    data = tokens.as_dict()
    if not app.settings.forward_upstream_token:
        data["access_token"] = ""
    return app.keyring.seal(
        json.dumps(data, separators=(",", ":")).encode(), context=context
    )


def dumps(body: dict[str, t.Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()

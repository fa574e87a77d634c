"""Sending the browser to the IdP: store the transaction, redirect with PKCE."""

from __future__ import annotations

import time
import typing as t

from proxy.front_channel.browser_binding import browser_hash
from proxy.keys.keyring import random_token
from proxy.oauth import pkce
from proxy.oauth.authorization_request import AuthorizationRequest
from proxy.oauth.errors import BadRequestPageError
from proxy.oauth.errors import TemporarilyUnavailableError
from proxy.store.records import Transaction
from proxy.upstream.base import UpstreamError

if t.TYPE_CHECKING:
    from proxy.app_state import AppState


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

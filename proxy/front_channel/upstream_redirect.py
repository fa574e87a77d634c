"""The upstream leg: send the browser to the IdP with our PKCE, take its answer back.

:func:`begin_upstream` stores the approved request as a transaction and returns
the IdP's login URL; at the callback, :func:`take_transaction` takes it back
(once, in the same browser) and :func:`finish_upstream` turns the IdP's answer
into tokens and an identity.
"""

from __future__ import annotations

import logging
import time
import typing as t

from proxy.front_channel.browser_binding import browser_hash
from proxy.keys.keyring import random_token
from proxy.oauth import pkce
from proxy.oauth.authorization_request import AuthorizationRequest
from proxy.oauth.errors import AccessDeniedError
from proxy.oauth.errors import BadRequestPageError
from proxy.oauth.errors import OAuthError
from proxy.oauth.errors import ServerError
from proxy.oauth.errors import TemporarilyUnavailableError
from proxy.observability.events import current_trace
from proxy.store import BindingMismatchError
from proxy.store.records import Transaction
from proxy.upstream.base import UpstreamError
from proxy.upstream.base import error_for

if t.TYPE_CHECKING:
    from collections.abc import Mapping

    from proxy.app_state import AppState
    from proxy.upstream.base import Identity
    from proxy.upstream.base import UpstreamTokens

log = logging.getLogger(__name__)

# What the client may learn of an upstream error (UP-6: no upstream details).
_PASSED_ON = {
    "access_denied": AccessDeniedError,
    "temporarily_unavailable": TemporarilyUnavailableError,
}


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
        trace_id=current_trace.get() or "",
    )
    try:
        url = app.upstream.authorization_url(
            state=proxy_state, code_challenge=challenge, nonce=nonce
        )
    except UpstreamError as exc:
        log.warning("upstream login cannot start: %s", exc.cause)
        app.events.emit(
            "upstream.redirected",
            outcome="error",
            client_id=request.client_id,
            reason=f"upstream_{exc.kind}",
            detail=str(exc),
        )
        # AUTHZ-14: the IdP being down goes back to the client, not a 500 page.
        raise error_for(
            exc, redirect_uri=request.redirect_uri, state=request.state
        ) from exc
    if not app.store.create_txn(proxy_state, txn):
        raise BadRequestPageError(
            "This consent form was already used. Start the connection again.",
            reason="txn_exists",
        )
    app.events.emit("upstream.redirected", client_id=request.client_id)
    return url


def take_transaction(
    app: AppState, proxy_state: str, browser_id: str | None
) -> Transaction:
    """The approved request the IdP's answer belongs to; an error page otherwise."""
    if not proxy_state or len(proxy_state) > 128:
        raise BadRequestPageError("Missing 'state'.", reason="callback_no_state")
    # UP-2: the browser that approved consent must be the one coming back.
    if browser_id is None:
        raise BadRequestPageError(
            "This sign-in did not start in this browser. Start again.",
            reason="callback_no_binding",
        )
    # UP-3: the transaction is taken once, and only by its own browser.
    try:
        txn = app.store.take_txn(proxy_state, browser_hash(browser_id))
    except BindingMismatchError:
        raise BadRequestPageError(
            "This sign-in did not start in this browser. Start again.",
            reason="callback_binding",
        ) from None
    if txn is None:
        raise BadRequestPageError(
            "This sign-in link expired or was already used. Start again.",
            reason="callback_unknown_state",
        )
    return txn


def finish_upstream(
    app: AppState, txn: Transaction, args: Mapping[str, str]
) -> tuple[UpstreamTokens, Identity]:
    """The IdP's answer (`code` or `error`, `iss`) exchanged for tokens and identity.

    The client's redirect URI is validated by now: errors go back to it.
    """

    def fail(error: type[OAuthError], reason: str) -> OAuthError:
        return error("", reason=reason, redirect_uri=txn.redirect_uri, state=txn.state)

    upstream_error = args.get("error")
    app.events.emit(
        "callback.received",
        outcome="error" if upstream_error else "ok",
        client_id=txn.client_id,
        upstream_error=upstream_error or None,
        upstream_error_description=args.get("error_description") or None,
    )
    if upstream_error:
        log.info("upstream returned error=%r", upstream_error[:64])
        raise fail(
            _PASSED_ON.get(upstream_error, ServerError),
            f"upstream_{upstream_error[:32]}",
        )
    # RFC 9207 §2.4: a mismatching iss means a mix-up attack; stop here.
    iss = args.get("iss")
    try:
        if iss is not None and not app.upstream.issuer_matches(iss):
            raise fail(ServerError, "upstream_iss_mismatch")
        code = args.get("code")
        if not code:
            raise fail(ServerError, "upstream_no_code")
        tokens, identity = app.upstream.exchange_code(
            code=code, code_verifier=txn.upstream_verifier, nonce=txn.nonce
        )
    except UpstreamError as exc:
        log.warning("upstream code exchange failed: %s", exc.cause)
        if exc.kind == "issuer_mismatch":
            raise error_for(
                exc, redirect_uri=txn.redirect_uri, state=txn.state
            ) from exc
        if exc.kind == "unavailable":
            raise fail(TemporarilyUnavailableError, "upstream_unavailable") from exc
        if exc.kind == "access_denied":
            raise fail(AccessDeniedError, "upstream_denied") from exc
        raise fail(ServerError, f"upstream_{exc.kind}") from exc
    app.events.emit("login.succeeded", client_id=txn.client_id, sub=identity.subject)
    return tokens, identity

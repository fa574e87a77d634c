"""GET /oauth2/callback: the IdP's answer; mint our one-time code (UP-2..UP-7)."""

from __future__ import annotations

import logging
import time

from flask import Blueprint
from flask import redirect
from flask import request
from werkzeug.wrappers import Response as BaseResponse

from proxy.app_state import state
from proxy.front_channel import browser_binding
from proxy.grants.token_response import seal_upstream
from proxy.keys.keyring import sha256_hex
from proxy.oauth.errors import NO_STORE
from proxy.oauth.errors import AccessDeniedError
from proxy.oauth.errors import BadRequestPageError
from proxy.oauth.errors import OAuthError
from proxy.oauth.errors import ServerError
from proxy.oauth.errors import TemporarilyUnavailableError
from proxy.oauth.errors import add_query
from proxy.oauth.opaque_tokens import new_grant_id
from proxy.oauth.opaque_tokens import new_opaque
from proxy.store import BindingMismatchError
from proxy.store.records import Grant
from proxy.store.records import Transaction
from proxy.upstream.base import UpstreamError

bp = Blueprint("callback", __name__)
log = logging.getLogger(__name__)

# What the client may learn of an upstream error (UP-6: no upstream details).
_PASSED_ON = {
    "access_denied": AccessDeniedError,
    "temporarily_unavailable": TemporarilyUnavailableError,
}


@bp.get("/oauth2/callback")
def finish_login() -> BaseResponse:
    app = state()
    proxy_state = request.args.get("state", "")
    if not proxy_state or len(proxy_state) > 128:
        raise BadRequestPageError("Missing 'state'.", reason="callback_no_state")
    # UP-2: the browser that approved consent must be the one coming back.
    browser_id = browser_binding.browser_id(request, app.settings)
    if browser_id is None:
        raise BadRequestPageError(
            "This sign-in did not start in this browser. Start again.",
            reason="callback_no_binding",
        )
    # UP-3: the transaction is taken once, and only by its own browser.
    try:
        txn = app.store.take_txn(proxy_state, browser_binding.browser_hash(browser_id))
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

    def fail(error: type[OAuthError], reason: str) -> OAuthError:
        # From here the client's redirect URI is validated: errors go back to it.
        return error("", reason=reason, redirect_uri=txn.redirect_uri, state=txn.state)

    upstream_error = request.args.get("error")
    if upstream_error:
        log.info("upstream returned error=%r", upstream_error[:64])
        raise fail(
            _PASSED_ON.get(upstream_error, ServerError),
            f"upstream_{upstream_error[:32]}",
        )
    # RFC 9207 §2.4: a mismatching iss means a mix-up attack; stop here.
    iss = request.args.get("iss")
    try:
        if iss is not None and not app.upstream.issuer_matches(iss):
            raise fail(ServerError, "upstream_iss_mismatch")
        code = request.args.get("code")
        if not code:
            raise fail(ServerError, "upstream_no_code")
        tokens, identity = app.upstream.exchange_code(
            code=code, code_verifier=txn.upstream_verifier, nonce=txn.nonce
        )
    except UpstreamError as exc:
        log.warning("upstream code exchange failed: %s", exc)
        if exc.kind == "unavailable":
            raise fail(TemporarilyUnavailableError, "upstream_unavailable") from exc
        if exc.kind == "access_denied":
            raise fail(AccessDeniedError, "upstream_denied") from exc
        raise fail(ServerError, f"upstream_{exc.kind}") from exc

    grant_id = new_grant_id()
    code_value, code_secret = new_opaque(grant_id)
    now = int(time.time())
    key = app.store.keys.grant(grant_id)
    claims = identity.token_claims()
    grant = Grant(
        grant_id=grant_id,
        client_id=txn.client_id,
        sub=identity.subject,
        claims=claims,
        scope=txn.scope,
        resource=txn.resource,
        redirect_uri=txn.redirect_uri,
        redirect_uri_given=txn.redirect_uri_given,
        code_challenge=txn.code_challenge,
        code_hash=sha256_hex(code_secret),
        code_exp=now + app.settings.code_ttl_seconds,
        created_at=now,
        expires_at=now + app.settings.refresh_token_max_lifetime_seconds,
        # UP-9: upstream tokens are stored only as AES-GCM ciphertext.
        upstream=seal_upstream(app, tokens, key),
    )
    app.store.create_grant(grant, ttl=app.settings.code_ttl_seconds)
    log.info("grant %s created for client %s", grant_id[:8], txn.client_id[:24])
    response = redirect(_client_redirect(txn, code_value, app.settings.issuer))
    response.headers.update(NO_STORE)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _client_redirect(txn: Transaction, code: str, issuer: str) -> str:
    # OAuth 2.1 §4.1.2 + RFC 9207 §2: code, the client's own state, and iss.
    return add_query(
        txn.redirect_uri, {"code": code, "state": txn.state, "iss": issuer}
    )

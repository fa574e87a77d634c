"""GET /account: the apps connected to the signed-in user; revoke one, sign out.

The user signs in through the upstream IdP (``front_channel/account_login.py``:
its own state, PKCE and nonce; the shared callback hands the answer to
:func:`finish_sign_in` here) and holds a sealed 20-minute cookie scoped to
``/account`` (``front_channel/account_session.py``). Every form carries a CSRF
token bound to that sign-in. Revoking deletes the grant, so its access and
refresh tokens fail at their next use.
"""

from __future__ import annotations

import time
from datetime import UTC
from datetime import datetime

from flask import Blueprint
from flask import Response
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from werkzeug.wrappers import Response as BaseResponse

from proxy.app_state import state
from proxy.front_channel import account_login
from proxy.front_channel import account_session
from proxy.front_channel.account_session import AccountSession
from proxy.front_channel.connected_apps import RevokeOutcome
from proxy.front_channel.connected_apps import connected_apps
from proxy.front_channel.connected_apps import revoke_for_user
from proxy.oauth.errors import NO_STORE
from proxy.oauth.errors import PAGE_HEADERS
from proxy.oauth.errors import BadRequestPageError
from proxy.web.rate_limits import limit_requests

bp = Blueprint("account", __name__)
limit_requests(bp, "account")

#: The consent page's headers, plus: forms on these pages post only here.
ACCOUNT_PAGE_HEADERS = {
    **PAGE_HEADERS,
    **NO_STORE,
    "Content-Security-Policy": PAGE_HEADERS["Content-Security-Policy"]
    + "; form-action 'self'",
}


class ForbiddenPageError(BadRequestPageError):
    """A form without this sign-in's CSRF token, or a user the allow-lists refuse."""

    error = "access_denied"
    status_code = 403


class NotFoundPageError(BadRequestPageError):
    """No grant of this user by that id (gone, or someone else's: one answer)."""

    error = "not_found"
    status_code = 404


@bp.get("/account")
def show_apps() -> BaseResponse:
    app = state()
    session = account_session.current_session(request, app.settings, app.keyring)
    if session is None:
        return _start_sign_in()
    _check_allowed(session)
    rows = connected_apps(app, session.sub)
    html = render_template(
        "account.html",
        user=session.email or session.name or session.sub,
        apps=rows,
        csrf_token=account_session.csrf_token(app.keyring, session),
        expires_at=_when(session.expires_at),
        when=_when,
    )
    return _page(html)


@bp.post("/account/revoke")
def revoke_app() -> BaseResponse:
    app = state()
    session = _form_session()
    grant_id = request.form.get("grant_id", "")
    outcome, client_id = revoke_for_user(app, session.sub, grant_id)
    if outcome is RevokeOutcome.NOT_YOURS:
        raise NotFoundPageError(
            "No app of yours holds this access: it may already be revoked.",
            reason="account_grant_unknown",
        )
    app.events.emit(
        "account.grant_revoked",
        sub=session.sub,
        client_id=client_id,
        grant=grant_id[:8],
    )
    app.events.emit(
        "grant.revoked", client_id=client_id, grant=grant_id[:8], reason="account"
    )
    # GEN-3: a redirect answering a form POST is 303 (post/redirect/get).
    response = redirect(url_for("account.show_apps"), code=303)
    response.headers.update(NO_STORE)
    return response


@bp.post("/account/sign-out")
def sign_out() -> BaseResponse:
    app = state()
    session = _form_session()
    app.events.emit("account.signed_out", sub=session.sub)
    response = _page(render_template("account_signed_out.html"))
    account_session.clear_session_cookie(
        response, app.settings, root=request.script_root
    )
    return response


def finish_sign_in() -> BaseResponse:
    """GET /oauth2/callback for an ``account.`` state: the IdP's answer to /account.

    Called by the callback endpoint, which owns the one redirect URI the IdP
    knows; the session cookie it sets is scoped to /account.
    """
    app = state()
    g.account_page = True  # its error pages point back to /account
    pending = account_login.pending_sign_in(request, app.settings, app.keyring)
    identity = account_login.finish_sign_in(app, pending, request.args)
    session = AccountSession.start(identity, int(time.time()))
    app.events.emit("account.signed_in", sub=identity.subject)
    response = redirect(url_for("account.show_apps"))
    response.headers.update(NO_STORE)
    response.headers["Referrer-Policy"] = "no-referrer"
    account_login.clear_pending_cookie(response, app.settings, root=request.script_root)
    account_session.set_session_cookie(
        response, app.settings, app.keyring, session, root=request.script_root
    )
    return response


def _start_sign_in() -> BaseResponse:
    """No session: off to the IdP, remembering the sign-in in a sealed cookie."""
    app = state()
    url, pending = account_login.begin_sign_in(app)
    response = redirect(url)
    response.headers.update(NO_STORE)
    response.headers["Referrer-Policy"] = "no-referrer"
    account_login.set_pending_cookie(
        response, app.settings, app.keyring, pending, root=request.script_root
    )
    # A stale or altered session cookie goes too.
    if account_session.session_cookie(request, app.settings):
        account_session.clear_session_cookie(
            response, app.settings, root=request.script_root
        )
    return response


def _form_session() -> AccountSession:
    """The session behind a POST, with its CSRF token checked (constant time)."""
    app = state()
    session = account_session.current_session(request, app.settings, app.keyring)
    if session is None:
        raise ForbiddenPageError(
            "Your session has ended. Open your connected apps page to sign in again.",
            reason="account_no_session",
        )
    if not account_session.check_csrf(
        app.keyring, session, request.form.get("csrf_token", "")
    ):
        raise ForbiddenPageError("The request could not be verified.", reason="csrf")
    _check_allowed(session)
    return session


def _check_allowed(session: AccountSession) -> None:
    if not account_session.still_allowed(state().settings, session):
        raise ForbiddenPageError(
            "This account may not use this service.", reason="account_not_allowed"
        )


def _page(html: str) -> Response:
    response = Response(html, mimetype="text/html")
    response.headers.update(ACCOUNT_PAGE_HEADERS)
    return response


def _when(timestamp: int | None) -> str:
    if timestamp is None:
        return "never"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")

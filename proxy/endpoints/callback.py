"""GET /oauth2/callback: the IdP's answer; mint our one-time code (UP-2..UP-7).

The IdP knows this one redirect URI, so an /account sign-in (an ``account.``
state) returns here too and is finished by ``endpoints/account.py``.
"""

from __future__ import annotations

from flask import Blueprint
from flask import redirect
from flask import request
from werkzeug.wrappers import Response as BaseResponse

from proxy.app_state import state
from proxy.endpoints import account
from proxy.front_channel import account_login
from proxy.front_channel import browser_binding
from proxy.front_channel.upstream_redirect import finish_upstream
from proxy.front_channel.upstream_redirect import take_transaction
from proxy.grants.authorization_code import issue_code
from proxy.oauth.errors import NO_STORE
from proxy.oauth.errors import add_query
from proxy.observability.trace import enter_trace
from proxy.store.records import Transaction
from proxy.web.rate_limits import limit_requests

bp = Blueprint("callback", __name__)
limit_requests(bp, "callback")


@bp.get("/oauth2/callback")
def finish_login() -> BaseResponse:
    if account_login.is_account_state(request.args.get("state", "")):
        # The IdP knows one redirect URI; /account's sign-in comes back here too.
        return account.finish_sign_in()
    app = state()
    # Until the transaction is found, this browser's latest attempt: an IdP's
    # error page may drop `state`, and the user still needs a trace id.
    enter_trace(browser_binding.trace_from_cookie(request, app.settings, app.keyring))
    txn = take_transaction(
        app,
        request.args.get("state", ""),
        browser_binding.browser_id(request, app.settings),
    )
    enter_trace(txn.trace_id)
    tokens, identity = finish_upstream(app, txn, request.args)
    code = issue_code(app, txn, tokens, identity)
    response = redirect(_client_redirect(txn, code, app.settings.issuer))
    response.headers.update(NO_STORE)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _client_redirect(txn: Transaction, code: str, issuer: str) -> str:
    # OAuth 2.1 §4.1.2 + RFC 9207 §2: code, the client's own state, and iss.
    return add_query(
        txn.redirect_uri, {"code": code, "state": txn.state, "iss": issuer}
    )

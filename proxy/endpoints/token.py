"""POST /oauth2/token: OAuth 2.1 §3.2 (authorization_code and refresh_token)."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import request

from proxy.app_state import state
from proxy.clients.authentication import read_credentials
from proxy.grants.registry import GRANTS
from proxy.grants.token_response import dumps
from proxy.oauth.errors import NO_STORE
from proxy.oauth.errors import InvalidRequestError
from proxy.oauth.errors import UnsupportedGrantTypeError
from proxy.oauth.params import single
from proxy.web.cors import allow_cors
from proxy.web.rate_limits import limit_requests

bp = Blueprint("token", __name__)
limit_requests(bp, "token", per_client=True, auth_failures=True)
allow_cors(bp, "POST")


@bp.post("/oauth2/token")
def issue_token() -> Response:
    # GEN-9: the token endpoint takes form-urlencoded bodies only.
    if request.mimetype != "application/x-www-form-urlencoded":
        raise InvalidRequestError("The body must be application/x-www-form-urlencoded.")
    form = request.form
    grant_type = single(form, "grant_type")
    if grant_type is None:
        raise InvalidRequestError("'grant_type' is required.")
    grant_class = GRANTS.get(grant_type)
    if grant_class is None:
        raise UnsupportedGrantTypeError("Supported: authorization_code, refresh_token.")
    credentials = read_credentials(form, request.headers, request.args)
    body = grant_class(state()).issue(form, credentials)
    response = Response(dumps(body), mimetype="application/json")
    response.headers.update(NO_STORE)
    return response

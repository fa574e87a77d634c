"""POST /oauth2/introspect: RFC 7662 token introspection for resource servers.

Only operator-registered confidential clients marked `"introspection": true`
in STATIC_CLIENTS_FILE may call it (RFC 7662 §4, INTRO-4): an MCP client
must not learn about tokens this way.
"""

from __future__ import annotations

import time
import typing as t

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request

from proxy.app_state import state
from proxy.clients.authentication import authenticate
from proxy.clients.authentication import read_credentials
from proxy.keys.keyring import equal
from proxy.keys.keyring import sha256_hex
from proxy.oauth.errors import NO_STORE
from proxy.oauth.errors import InvalidClientError
from proxy.oauth.errors import InvalidRequestError
from proxy.oauth.errors import InvalidTokenError
from proxy.oauth.opaque_tokens import split_opaque
from proxy.oauth.params import single
from proxy.resource_server.verification import verify_for_any_server
from proxy.web.rate_limits import limit_requests

bp = Blueprint("introspect", __name__)
limit_requests(bp, "introspect", auth_failures=True)

INACTIVE: dict[str, t.Any] = {"active": False}


@bp.post("/oauth2/introspect")
def introspect_token() -> Response:
    if request.mimetype != "application/x-www-form-urlencoded":
        raise InvalidRequestError("The body must be application/x-www-form-urlencoded.")
    app = state()
    # RFC 7662 §2.1: the endpoint MUST require authentication; a caller that
    # sent none is challenged with 401 (INTRO-1), not told its request is bad.
    if not (
        "Authorization" in request.headers
        or "client_id" in request.form
        or "client_assertion" in request.form
    ):
        raise InvalidClientError(
            "Client authentication is required.", basic=True, reason="no_credentials"
        )
    credentials = read_credentials(request.form, request.headers, request.args)
    caller = authenticate(
        credentials,
        app.clients.static(credentials.client_id),
        assertions=app.client_assertions,
        endpoint="/oauth2/introspect",
    )
    allowed = {c.client_id for c in app.settings.static_clients if c.can_introspect}
    # RFC 7662 §2.1: the caller must be authorized (INTRO-1, INTRO-4).
    if caller.is_public or caller.client_id not in allowed:
        raise InvalidClientError(
            "This client may not introspect tokens.",
            basic=credentials.method == "client_secret_basic",
            reason="not_introspector",
        )
    token = single(request.form, "token")
    if token is None:
        raise InvalidRequestError("'token' is required.")
    response = jsonify(_describe(token))
    response.headers.update(NO_STORE)
    return response


def _describe(token: str) -> dict[str, t.Any]:
    """RFC 7662 §2.2: an active token's claims, or exactly {"active": false}."""
    app = state()
    settings = app.settings
    parts = split_opaque(token)
    if parts is not None:
        grant = app.store.load_grant(parts[0])
        if grant is None or not grant.rt_hash:
            return INACTIVE
        if not equal(sha256_hex(parts[1]), grant.rt_hash):
            return INACTIVE
        return {
            "active": True,
            "token_type": "refresh_token",
            "client_id": grant.client_id,
            "scope": grant.scope,
            "sub": grant.sub,
            "aud": grant.resource,
            "iss": settings.issuer,
            "iat": grant.rotated_at or grant.created_at,
            "exp": grant.expires_at,
        }
    try:
        claims = verify_for_any_server(app, token, int(time.time()))
    except InvalidTokenError:
        return INACTIVE
    if not app.store.grant_exists(claims.grant_id):
        return INACTIVE
    return {
        "active": True,
        "token_type": "access_token",
        "client_id": claims.client_id,
        "scope": claims.scope,
        "sub": claims.sub,
        "aud": claims.audience,
        "iss": settings.issuer,
        "iat": claims.issued_at,
        "exp": claims.expires_at,
        "jti": claims.jti,
        **claims.extra,
    }

"""POST /oauth2/revoke: RFC 7009 §2 token revocation."""

from __future__ import annotations

import time

from flask import Blueprint
from flask import Response
from flask import request

from proxy.app_state import state
from proxy.clients.authentication import authenticate
from proxy.clients.authentication import read_credentials
from proxy.keys.keyring import equal
from proxy.keys.keyring import sha256_hex
from proxy.oauth.errors import NO_STORE
from proxy.oauth.errors import InvalidGrantError
from proxy.oauth.errors import InvalidRequestError
from proxy.oauth.errors import InvalidTokenError
from proxy.oauth.errors import UnsupportedTokenTypeError
from proxy.oauth.opaque_tokens import split_opaque
from proxy.oauth.params import single
from proxy.resource_server.verification import verify_for_any_server
from proxy.web.cors import allow_cors
from proxy.web.rate_limits import limit_requests

bp = Blueprint("revoke", __name__)
limit_requests(bp, "revoke", per_client=True, auth_failures=True)
allow_cors(bp, "POST")

TOKEN_TYPE_HINTS = ("access_token", "refresh_token")


@bp.post("/oauth2/revoke")
def revoke_token() -> Response:
    if request.mimetype != "application/x-www-form-urlencoded":
        raise InvalidRequestError("The body must be application/x-www-form-urlencoded.")
    app = state()
    form = request.form
    credentials = read_credentials(form, request.headers, request.args)
    basic = credentials.method == "client_secret_basic"
    client = authenticate(
        credentials,
        app.clients.find_for_auth(credentials.client_id, basic=basic),
        assertions=app.client_assertions,
        endpoint="/oauth2/revoke",
    )
    token = single(form, "token")
    if token is None:
        raise InvalidRequestError("'token' is required.")
    hint = single(form, "token_type_hint")
    # RFC 7009 §2.2.1: a hint we cannot revoke at all is unsupported_token_type;
    # a wrong hint among ours is ignored and every type is searched (REV-5).
    if hint is not None and hint not in TOKEN_TYPE_HINTS:
        raise UnsupportedTokenTypeError("Only access and refresh tokens are revocable.")

    grant_id = _grant_of(token, client.client_id)
    if grant_id is not None:
        app.store.revoke_grant(grant_id)
        app.events.emit(
            "token.revoked", client_id=client.client_id, grant=grant_id[:8], hint=hint
        )
        app.events.emit(
            "grant.revoked",
            client_id=client.client_id,
            grant=grant_id[:8],
            reason="revocation",
        )
    # RFC 7009 §2.2: 200 also for invalid or unknown tokens (REV-2).
    response = Response(status=200)
    response.headers.update(NO_STORE)
    return response


def _grant_of(token: str, client_id: str) -> str | None:
    """The grant a token belongs to, if it is one of ours and this client's."""
    app = state()
    parts = split_opaque(token)
    if parts is not None:
        grant = app.store.load_grant(parts[0])
        if grant is None:
            return None
        digest = sha256_hex(parts[1])
        if not any(h and equal(digest, h) for h in (grant.rt_hash, grant.rt_prev_hash)):
            return None
        _check_owner(grant.client_id, client_id)
        return grant.grant_id
    try:
        claims = verify_for_any_server(app, token, int(time.time()))
    except InvalidTokenError:
        return None
    _check_owner(claims.client_id, client_id)
    # REV-4: revoking an access token ends its grant, refresh token included.
    return claims.grant_id


def _check_owner(owner: str, client_id: str) -> None:
    # RFC 7009 §2.1: a token issued to another client is refused, not revoked.
    if owner != client_id:
        raise InvalidGrantError(
            "The token was not issued to this client.", reason="revoke_foreign"
        )

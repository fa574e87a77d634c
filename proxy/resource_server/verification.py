"""The resource side: is this request's bearer token good for the MCP server?

Shared by the gateway (`/mcp`) and the forward-auth endpoint. Checks, in
order: a bearer token in the Authorization header (never the query, PRM-14;
never two methods, PRM-12), our signature, `typ`, `iss`, `aud` = the resource
of the server asked (with MCP_SERVERS, each its own: a token for one is
refused by the others, J57), `exp`, that the grant is still alive in the store
(revocation takes effect on the next request), and the required scopes.
"""

from __future__ import annotations

import time
import typing as t

from proxy.oauth import scopes
from proxy.oauth.access_tokens import AccessClaims
from proxy.oauth.errors import InsufficientScopeError
from proxy.oauth.errors import InvalidRequestError
from proxy.oauth.errors import InvalidTokenError
from proxy.oauth.errors import TooManyRequestsError
from proxy.oauth.scope_hierarchy import ScopeHierarchy
from proxy.observability.trace import enter_trace
from proxy.resource_server.bearer import challenge
from proxy.resource_server.bearer import token_from_header

if t.TYPE_CHECKING:
    from collections.abc import Sequence

    from flask import Request

    from proxy.app_state import AppState
    from proxy.config.mcp_servers import McpServer
    from proxy.store.limits import Rider


def resource_metadata_url(app: AppState, server: McpServer) -> str:
    """The path-inserted PRM URL of the server's resource (RFC 9728 §3.1)."""
    return app.settings.url(server.metadata_path)


def challenge_scope(app: AppState, server: McpServer) -> str | None:
    needed = app.settings.required_scopes or server.scopes
    return " ".join(needed) or None


def verify_for_any_server(app: AppState, token: str, now: int) -> AccessClaims:
    """The claims of one of our access tokens for any server we front.

    For revocation and introspection, which take a token from its client or
    a resource server whichever MCP server it is for; InvalidTokenError if no
    server's audience is its `aud`.
    """
    error: InvalidTokenError | None = None
    for server in app.settings.servers:
        try:
            return app.signing_keys.verify(
                token, issuer=app.settings.issuer, audience=server.audience, now=now
            )
        except InvalidTokenError as exc:
            if exc.reason != "aud_mismatch":
                raise  # bad signature, expired: no other audience helps
            error = exc
    raise t.cast(InvalidTokenError, error)


def verify_request(
    app: AppState,
    request: Request,
    server: McpServer,
    *,
    riders: Sequence[Rider] = (),
) -> AccessClaims:
    """The verified claims of the request's access token for `server`, or an
    InvalidTokenError.

    ``riders`` are reads the caller needs from Redis too: they ride in the
    round trip that checks the grant (the gateway's session owners).
    """
    metadata = resource_metadata_url(app, server)
    scope = challenge_scope(app, server)
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
        claims = app.verified_tokens.verify(
            app, header_token, int(time.time()), audience=server.audience
        )
        enter_trace(claims.trace_id)
        # Revocation is never cached: the store is asked on every request,
        # in the same round trip as the grant's rate bucket.
        limits = app.settings.limits
        rate = limits.per_grant if limits.enabled else None
        alive, wait = app.store.limits.charge_grant(
            claims.grant_id, rate, riders=riders
        )
        if not alive:
            raise InvalidTokenError("The access token was revoked.", reason="revoked")
    except InvalidTokenError as exc:
        exc.challenge = challenge(
            metadata, scope=scope, error="invalid_token", description=exc.description
        )
        raise
    if wait:
        raise TooManyRequestsError(wait, reason="grant_rate_limited")
    required = app.settings.required_scopes
    tool_scopes = server.tool_scopes
    # SCOPE-3: a broader scope covers the narrower ones it implies.
    hierarchy = tool_scopes.hierarchy if tool_scopes else ScopeHierarchy()
    if required and hierarchy.missing(scopes.parse(claims.scope), required):
        error = InsufficientScopeError("The token lacks a required scope.")
        error.challenge = challenge(
            metadata, scope=" ".join(required), error="insufficient_scope"
        )
        raise error
    return claims

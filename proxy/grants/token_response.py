"""The token response (OAuth 2.1 §3.2.3) and the sealing of upstream tokens."""

from __future__ import annotations

import json
import typing as t

from proxy.oauth.access_tokens import mint_access_token
from proxy.upstream.base import UpstreamTokens

if t.TYPE_CHECKING:
    from joserfc.jwk import ECKey

    from proxy.app_state import AppState


def token_response(
    app: AppState,
    *,
    signing_key: ECKey,
    sub: str,
    claims: dict[str, t.Any],
    client_id: str,
    scope: str,
    resource: str,
    grant_id: str,
    refresh_token: str | None,
    now: int,
    trace_id: str = "",
) -> dict[str, t.Any]:
    """The RFC 6749 §5.1 success body with a freshly signed access token."""
    ttl = app.settings.access_token_ttl_seconds
    access_token = mint_access_token(
        signing_key,
        issuer=app.settings.issuer,
        sub=sub,
        audience=resource,
        client_id=client_id,
        scope=scope,
        grant_id=grant_id,
        now=now,
        ttl=ttl,
        extra=claims,
        trace_id=trace_id,
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

"""What the backend is told about the caller: headers, a signed JWT, or both.

MCP_BACKEND_IDENTITY (``proxy/config/backend_identity.py``) picks. The JWT
travels in its own header, ``X-MCP-Identity``, never in ``Authorization``
(J60), and is signed per request with the key the JWKS publishes as current
(J62, J63). A client's own copy of any of these headers never reaches the
backend (``identity_header_names``).
"""

from __future__ import annotations

import typing as t

from proxy.oauth.identity_tokens import mint_identity_token
from proxy.resource_server.identity_headers import IDENTITY_JWT_HEADER
from proxy.resource_server.identity_headers import identity_headers

if t.TYPE_CHECKING:
    from proxy.app_state import AppState
    from proxy.config.mcp_servers import McpServer
    from proxy.oauth.access_tokens import AccessClaims


def backend_audience(server: McpServer) -> str:
    """The identity JWT's ``aud``: the server's backend audience
    (MCP_BACKEND_AUDIENCE), else its backend URL: each backend its own."""
    return server.backend_audience or t.cast(str, server.backend_url)


def backend_identity(
    app: AppState, server: McpServer, claims: AccessClaims, now: int
) -> dict[str, str]:
    """The identity headers the backend of `server` receives."""
    settings = app.settings
    mode = settings.backend_identity
    headers = identity_headers(settings, claims) if mode.sends_headers else {}
    if mode.sends_jwt:
        headers[IDENTITY_JWT_HEADER] = mint_identity_token(
            app.signing_keys.current(),
            claims,
            issuer=settings.issuer,
            audience=backend_audience(server),
            now=now,
        )
    return headers

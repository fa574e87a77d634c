"""MCP_BACKEND_IDENTITY and MCP_BACKEND_AUDIENCE: how the gateway tells the
backend who is calling (decisions J60-J64).

``headers`` (the default) is the plain ``X-Forwarded-*`` identity, which a
backend can trust only if nothing but the gateway reaches it; ``jwt`` replaces
it with a short-lived JWT the backend verifies against our JWKS, so a backend
someone reaches directly can still tell who is calling; ``both`` sends both
(for a backend moving from one to the other).
"""

from __future__ import annotations

import enum
import typing as t

from proxy.config.env import ConfigError

if t.TYPE_CHECKING:
    from proxy.config.env import EnvReader


class BackendIdentity(enum.StrEnum):
    """What identity the backend receives with each relayed request."""

    HEADERS = "headers"
    JWT = "jwt"
    BOTH = "both"

    @property
    def sends_headers(self) -> bool:
        return self is not BackendIdentity.JWT

    @property
    def sends_jwt(self) -> bool:
        return self is not BackendIdentity.HEADERS


def read_backend_identity(env: EnvReader, *, resource: str) -> dict[str, t.Any]:
    """The two settings, checked; ``resource`` is our protected resource (aud of
    access tokens), which the backend's audience must never equal."""
    raw = env.text("MCP_BACKEND_IDENTITY", BackendIdentity.HEADERS).lower()
    try:
        mode = BackendIdentity(raw)
    except ValueError:
        raise ConfigError(
            f"MCP_BACKEND_IDENTITY={raw!r} is not one of headers, jwt, both; "
            "e.g. MCP_BACKEND_IDENTITY=jwt"
        ) from None
    audience = env.text("MCP_BACKEND_AUDIENCE") or None
    # J61: an identity JWT must never be usable as an access token, nor an
    # access token as an identity JWT: their audiences never meet.
    if audience is not None and audience.rstrip("/") == resource.rstrip("/"):
        raise ConfigError(
            "MCP_BACKEND_AUDIENCE must not be the protected resource "
            f"({resource}): name the backend, e.g. its URL"
        )
    return {"backend_identity": mode, "backend_audience": audience}

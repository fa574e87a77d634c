"""The verified identity the backend receives, as configured request headers."""

from __future__ import annotations

import typing as t

from proxy.oauth.access_tokens import AccessClaims

if t.TYPE_CHECKING:
    from proxy.config.settings import Settings


def identity_headers(settings: Settings, claims: AccessClaims) -> dict[str, str]:
    """The verified identity, as the gateway and forward-auth hand it on."""
    headers = {
        settings.forward_user_header: claims.sub,
        "X-Forwarded-Client-Id": claims.client_id,
        "X-Forwarded-Scope": claims.scope,
    }
    email = claims.extra.get("email")
    # Only an address the IdP verified is an identity (a user can type any
    # unverified address into some IdPs).
    if isinstance(email, str) and claims.extra.get("email_verified") is True:
        headers[settings.forward_email_header] = email
    return headers

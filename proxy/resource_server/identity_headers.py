"""The verified identity the backend receives, as configured request headers."""

from __future__ import annotations

import typing as t
from urllib.parse import quote

from proxy.oauth.access_tokens import AccessClaims

if t.TYPE_CHECKING:
    from proxy.config.settings import Settings


CLIENT_ID_HEADER = "X-Forwarded-Client-Id"
SCOPE_HEADER = "X-Forwarded-Scope"
#: The signed identity JWT (MCP_BACKEND_IDENTITY=jwt|both; decision J60).
IDENTITY_JWT_HEADER = "X-MCP-Identity"


def identity_header_names(settings: Settings) -> frozenset[str]:
    """Every header name the proxy may set as identity, lower-cased.

    A client's own copy of any of them is dropped before relaying, whether or
    not this request's identity fills it (a user without a verified email
    must not be able to send one), and so is one of the identity JWT's
    header, whatever MCP_BACKEND_IDENTITY says.
    """
    names = {
        settings.forward_user_header,
        settings.forward_email_header,
        CLIENT_ID_HEADER,
        SCOPE_HEADER,
        IDENTITY_JWT_HEADER,
    }
    return frozenset(name.lower() for name in names)


#: What a header value carries as is: printable ASCII but the escape itself.
_AS_IS = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def header_value(value: str) -> str:
    """``value`` as a header can carry it: printable ASCII as is; ``%``,
    control characters and anything beyond ASCII percent-encoded as UTF-8
    (``用户@example.com`` → ``%E7%94%A8%E6%88%B7@example.com``), and a space
    at either end too (HTTP parsers strip those: `` admin`` would arrive as
    ``admin``). HTTP/1.1 header values are Latin-1 at best and never hold a
    line break, and an IdP's subject or a verified address may hold either."""
    encoded = quote(value, safe=_AS_IS)
    core = encoded.strip(" ")
    if not core:
        return "%20" * len(encoded)
    lead = len(encoded) - len(encoded.lstrip(" "))
    trail = len(encoded) - len(encoded.rstrip(" "))
    return "%20" * lead + core + "%20" * trail


def identity_headers(settings: Settings, claims: AccessClaims) -> dict[str, str]:
    """The verified identity, as the gateway and forward-auth hand it on
    (each value through :func:`header_value`)."""
    headers = {
        settings.forward_user_header: claims.sub,
        CLIENT_ID_HEADER: claims.client_id,
        SCOPE_HEADER: claims.scope,
    }
    email = claims.extra.get("email")
    # Only an address the IdP verified is an identity (a user can type any
    # unverified address into some IdPs).
    if isinstance(email, str) and claims.extra.get("email_verified") is True:
        headers[settings.forward_email_header] = email
    return {name: header_value(value) for name, value in headers.items()}

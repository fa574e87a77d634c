"""Redirect URI rules: registration policy and matching (OAuth 2.1 §2.3, RFC 8252 §7.3).

Matching is exact string comparison, with two deliberate exceptions for loopback
URIs only (decisions J2, J3 in docs/decisions.md): the port is ignored for
`127.0.0.1`, `[::1]` and `localhost`, and an empty path equals `/`.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from proxy.oauth.url_syntax import is_browser_safe_url

# MCP-SBP / OAuth 2.1 §2.3.1: schemes that can run code are never allowed.
DANGEROUS_SCHEMES = frozenset(
    {"javascript", "data", "file", "vbscript", "blob", "about"}
)


MAX_REDIRECT_URI_LENGTH = 2000


def is_loopback_uri(uri: str) -> bool:
    try:
        parts = urlsplit(uri)
    except ValueError:  # e.g. "http://[::1/cb": not a URI at all
        return False
    return parts.scheme == "http" and is_loopback_host(parts.hostname or "")


def is_allowed_redirect_uri(
    uri: str,
    private_schemes: frozenset[str],
    catalogued: frozenset[str] = frozenset(),
) -> bool:
    """May this URI be registered? https, loopback http, or an allowlisted scheme.

    `catalogued` holds the exact private-use URIs of known clients (Cursor's
    `cursor://anysphere.cursor-mcp/oauth/callback`, proxy/clients/catalog.json).
    """
    if len(uri) > MAX_REDIRECT_URI_LENGTH:
        return False
    scheme = uri.partition(":")[0].lower()
    # What we match must be what the browser follows (see url_syntax).
    if not is_browser_safe_url(uri, need_authority=scheme in ("http", "https")):
        return False
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    scheme = parts.scheme.lower()
    if not scheme or scheme in DANGEROUS_SCHEMES:
        return False
    # OAuth 2.1 §2.3: the redirect URI MUST NOT include a fragment component.
    if "#" in uri:
        return False
    if parts.username or parts.password:
        return False
    if scheme == "https":
        return bool(parts.hostname)
    if scheme == "http":
        # MCP: redirect URIs MUST be either localhost or HTTPS (SEC-1).
        return is_loopback_host(parts.hostname or "")
    # Private-use schemes (RFC 8252 §7.1) only when the operator allowlisted
    # them (decision J1). The operator's explicit choice is the control, so a
    # dotless scheme such as Cursor's `cursor` can be allowed too. A URI the
    # client catalog lists exactly is one known client's own callback: it is
    # allowed by itself, not its whole scheme.
    return scheme in private_schemes or uri in catalogued


def matches(
    requested: str, registered: str, *, any_loopback_host: bool = False
) -> bool:
    """Does the requested redirect_uri match one registered value?

    `any_loopback_host` is for a catalogued client known to register one
    loopback host and authorize with another (Codex: `127.0.0.1`, then
    `localhost`); both name the user's own machine.
    """
    if requested == registered:
        return True
    if not (is_loopback_uri(requested) and is_loopback_uri(registered)):
        return False
    req, reg = urlsplit(requested), urlsplit(registered)
    try:
        req.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    # Only the port may differ: no userinfo smuggled in front of the host.
    if req.username is not None or req.password is not None:
        return False
    # RFC 8252 §7.3: "MUST allow any port to be specified at the time of the
    # request for loopback IP redirect URIs"; extended to localhost (decision J2).
    return (
        (req.hostname == reg.hostname or any_loopback_host)
        and (req.path or "/") == (reg.path or "/")
        and req.query == reg.query
        and not req.fragment
    )


def resolve(
    requested: str | None,
    registered: tuple[str, ...],
    *,
    any_loopback_host: bool = False,
) -> str | None:
    """The redirect URI to use, or None when it cannot be trusted.

    OAuth 2.1 §2.3.2: it may be omitted only when exactly one is registered.
    """
    if not requested:
        return registered[0] if len(registered) == 1 else None
    for candidate in registered:
        if matches(requested, candidate, any_loopback_host=any_loopback_host):
            return requested
    return None


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def is_loopback_host(host: str) -> bool:
    """RFC 8252 §7.3 loopback hosts, plus `localhost` (decision J2)."""
    host = host.lower()
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

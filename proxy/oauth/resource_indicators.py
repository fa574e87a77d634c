"""RFC 8707 resource indicators: canonical form and comparison (RES-1..RES-5)."""

from __future__ import annotations

from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_resource(value: str) -> str | None:
    """Return the canonical form of an absolute resource URI, or None if invalid.

    RFC 8707 §2: the value "MUST be an absolute URI" and "MUST NOT include a
    fragment component". Scheme and host compare case-insensitively, a default
    port is dropped, and a trailing slash is not significant (MCP canonical URI).
    """
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.fragment or "#" in value or parts.username or parts.password:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = parts.path.rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{path}{query}"


def matches_resource(requested: str, canonical: str) -> bool:
    """True if `requested` names the protected resource `canonical`.

    Some clients (ChatGPT) append a query string to the resource they learned
    from the PRM; the audience is still this one resource, so the query is not
    significant when the rest matches.
    """
    candidate = canonical_resource(requested)
    if candidate is None:
        return False
    return candidate == canonical or candidate.split("?", 1)[0] == canonical

"""RFC 6750 bearer tokens at the resource: reading the header, writing challenges."""

from __future__ import annotations

import re

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")


def token_from_header(header: str | None) -> str | None:
    """The bearer token of an Authorization header, or None if there is none.

    OAuth 2.1 §5.1.1: the scheme name is case-insensitive (PRM-13).
    """
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or not _B64TOKEN.match(token):
        return None
    return token


def challenge(
    resource_metadata: str,
    *,
    scope: str | None = None,
    error: str | None = None,
    description: str | None = None,
) -> str:
    """A `WWW-Authenticate: Bearer …` value (RFC 6750 §3, RFC 9728 §5.1).

    Without credentials the challenge carries no `error` (PRM-10).
    """
    params = []
    if error:
        params.append(f'error="{error}"')
        if description:
            params.append(f'error_description="{description}"')
    if scope:
        params.append(f'scope="{scope}"')
    params.append(f'resource_metadata="{resource_metadata}"')
    return "Bearer " + ", ".join(params)

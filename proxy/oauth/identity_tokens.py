"""Identity JWTs for the MCP backend: who the gateway vouches for, signed.

Not an access token and never usable as one (decision J61): its header
``typ`` is ``mcp-identity+jwt`` (explicit typing, RFC 8725 §3.11), its ``aud``
is the backend, never our protected resource, and it carries no ``sid``; the
access-token check refuses it on each count. It lives 60 s: long enough for
clock skew between the proxy and the backend, too short to be worth stealing
from a backend's logs.
"""

from __future__ import annotations

import typing as t

from joserfc import jwt

from proxy.keys.keyring import random_token
from proxy.oauth.access_tokens import ALGORITHM

if t.TYPE_CHECKING:
    from joserfc.jwk import ECKey

    from proxy.oauth.access_tokens import AccessClaims

#: RFC 8725 §3.11: a type of its own, so no verifier can take it for another JWT.
IDENTITY_TOKEN_TYPE = "mcp-identity+jwt"  # noqa: S105 - a media type, not a secret
IDENTITY_TOKEN_TTL_SECONDS = 60


def identity_claims(
    claims: AccessClaims, *, issuer: str, audience: str, now: int
) -> dict[str, t.Any]:
    """The verified identity of an access token, addressed to ``audience``."""
    out: dict[str, t.Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": claims.sub,
        "client_id": claims.client_id,
        "scope": claims.scope,
        "iat": now,
        "exp": now + IDENTITY_TOKEN_TTL_SECONDS,
        # Fresh per request, so a backend may refuse a replayed one (J63).
        "jti": random_token(16),
    }
    email = claims.extra.get("email")
    # As for X-Forwarded-Email: only an address the IdP verified is an identity.
    if isinstance(email, str) and claims.extra.get("email_verified") is True:
        out["email"] = email
    return out


def mint_identity_token(
    key: ECKey, claims: AccessClaims, *, issuer: str, audience: str, now: int
) -> str:
    """Sign the identity JWT with ``key`` (the proxy's current signing key)."""
    header = {"alg": ALGORITHM, "typ": IDENTITY_TOKEN_TYPE, "kid": key.kid}
    payload = identity_claims(claims, issuer=issuer, audience=audience, now=now)
    return jwt.encode(header, payload, key)

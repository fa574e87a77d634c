"""Access tokens (RFC 9068 JWTs) and the opaque codes and refresh tokens.

Codes and refresh tokens are ``<grant_id>.<secret>``: the grant id finds the
record, and only the secret's SHA-256 is stored. Access tokens are short-lived
JWTs any MCP server can verify offline against our JWKS.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from joserfc.jwk import KeySet

from .crypto import random_token
from .errors import InvalidTokenError
from .signing_keys import ALGORITHM

ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105
_OPAQUE = re.compile(r"([A-Za-z0-9_-]{16,64})\.([A-Za-z0-9_-]{32,128})")
CLOCK_SKEW_SECONDS = 30
#: Identity claims a resource reads back from a verified token.
IDENTITY_CLAIMS = ("email", "email_verified", "name")


def new_grant_id() -> str:
    return random_token(16)


def new_opaque(grant_id: str) -> tuple[str, str]:
    """A fresh `<grant_id>.<secret>` token and its secret part."""
    secret = random_token()
    return f"{grant_id}.{secret}", secret


def split_opaque(token: str) -> tuple[str, str] | None:
    """(grant_id, secret) of a well-formed opaque token, else None."""
    match = _OPAQUE.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None


@dataclass(frozen=True, slots=True)
class AccessClaims:
    sub: str
    client_id: str
    scope: str
    audience: str
    grant_id: str
    expires_at: int
    issued_at: int
    jti: str
    extra: dict[str, t.Any]


def mint_access_token(
    key: ECKey,
    *,
    issuer: str,
    sub: str,
    audience: str,
    client_id: str,
    scope: str,
    grant_id: str,
    now: int,
    ttl: int,
    extra: dict[str, t.Any] | None = None,
) -> str:
    """Sign an RFC 9068 access token."""
    claims: dict[str, t.Any] = dict(extra or {})
    # RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat, jti are REQUIRED.
    claims.update(
        {
            "iss": issuer,
            "sub": sub,
            # RFC 8707 §2: the token is restricted to the requested resource.
            "aud": audience,
            "client_id": client_id,
            "scope": scope,
            "iat": now,
            "exp": now + ttl,
            "jti": random_token(16),
            # The grant (session) the token belongs to: revocation checks it.
            "sid": grant_id,
        }
    )
    # RFC 9068 §2.1: the header typ is "at+jwt".
    header = {"alg": ALGORITHM, "typ": ACCESS_TOKEN_TYPE, "kid": key.kid}
    return jwt.encode(header, claims, key)


def verify_access_token(
    token: str, keys: KeySet, *, issuer: str, audience: str, now: int
) -> AccessClaims:
    """Check signature, typ, iss, aud and exp; raise InvalidTokenError otherwise."""
    try:
        decoded = jwt.decode(token, keys, algorithms=[ALGORITHM])
    except (JoseError, ValueError) as exc:
        raise InvalidTokenError(
            "The access token is invalid.", reason="bad_jwt"
        ) from exc
    header, claims = decoded.header, decoded.claims
    if str(header.get("typ", "")).lower() not in (
        ACCESS_TOKEN_TYPE,
        "application/at+jwt",
    ):
        raise InvalidTokenError("The access token is invalid.", reason="bad_typ")
    if claims.get("iss") != issuer:
        raise InvalidTokenError("The access token is invalid.", reason="bad_iss")
    aud = claims.get("aud")
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        raise InvalidTokenError("The access token is invalid.", reason="aud_mismatch")
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp + CLOCK_SKEW_SECONDS < now:
        raise InvalidTokenError("The access token expired.", reason="expired")
    try:
        return AccessClaims(
            sub=str(claims["sub"]),
            client_id=str(claims["client_id"]),
            scope=str(claims.get("scope", "")),
            audience=audience,
            grant_id=str(claims["sid"]),
            expires_at=exp,
            issued_at=int(claims.get("iat", 0)),
            jti=str(claims.get("jti", "")),
            extra={k: v for k, v in claims.items() if k in IDENTITY_CLAIMS},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidTokenError(
            "The access token is invalid.", reason="claims"
        ) from exc

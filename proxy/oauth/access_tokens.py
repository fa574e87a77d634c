"""Access tokens (RFC 9068): short-lived JWTs any MCP server verifies against our JWKS.

Also the claims the proxy owns (RESERVED_CLAIMS), which TOKEN_EXTRA_CLAIMS may
never copy from upstream."""

from __future__ import annotations

import json
import typing as t
from dataclasses import dataclass
from dataclasses import field

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from joserfc.jwk import KeySet

from proxy.keys.keyring import b64url_decode
from proxy.keys.keyring import random_token
from proxy.oauth.errors import InvalidTokenError

#: The one JWS algorithm our access tokens are signed with (RFC 9068 §2.1: asymmetric).
ALGORITHM = "ES256"
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105


CLOCK_SKEW_SECONDS = 30


#: Identity claims a resource reads back from a verified token.
IDENTITY_CLAIMS = ("email", "email_verified", "name")


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
    #: The flow trace of the authorization this token descends from ("": none).
    trace_id: str = ""
    #: Upstream claims copied into the token (groups, roles): the tool policy
    #: reads them here, with no store round trip.
    upstream_claims: dict[str, t.Any] = field(default_factory=dict)


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
    trace_id: str = "",
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
    if trace_id:
        # Not a secret: the id an error page shows, so the gateway can trace
        # the first MCP call without reading the grant.
        claims["trace"] = trace_id
    # RFC 9068 §2.1: the header typ is "at+jwt".
    header = {"alg": ALGORITHM, "typ": ACCESS_TOKEN_TYPE, "kid": key.kid}
    return jwt.encode(header, claims, key)


def verify_access_token(
    token: str, keys: KeySet, *, issuer: str, audience: str, now: int
) -> AccessClaims:
    """Check signature, typ, iss, aud and exp; raise InvalidTokenError otherwise."""
    # RFC 7515 §4.1.11: a recipient MUST reject a JWS whose `crit` names an
    # extension it does not understand. We understand none and issue none, and
    # a malformed `crit` must not reach the JOSE library (it raised TypeError).
    if "crit" in _protected_header(token):
        raise InvalidTokenError("The access token is invalid.", reason="crit")
    try:
        decoded = jwt.decode(token, keys, algorithms=[ALGORITHM])
    except (JoseError, ValueError, TypeError) as exc:
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
            trace_id=str(claims.get("trace") or ""),
            # What TOKEN_EXTRA_CLAIMS/TOOL_POLICY_CLAIMS copied from upstream
            # (groups, roles): every claim we did not reserve.
            upstream_claims={
                k: v for k, v in claims.items() if k not in RESERVED_CLAIMS
            },
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidTokenError(
            "The access token is invalid.", reason="claims"
        ) from exc


def unverified_kid(token: str) -> str | None:
    """The ``kid`` a token's header names, unverified: which key to look for.

    Only a hint for finding the key (a key set re-read on a kid we lack); the
    signature decides.
    """
    try:
        kid = _protected_header(token).get("kid")
    except InvalidTokenError:
        return None
    return kid if isinstance(kid, str) and kid else None


#: Claims the proxy sets itself in an access token; TOKEN_EXTRA_CLAIMS never
#: copies these from upstream (RFC 9068 §2.2 plus ours: sid, and email/name,
#: which come only from the verified identity).
RESERVED_CLAIMS = frozenset(
    {
        "iss",
        "sub",
        "aud",
        "exp",
        "nbf",
        "iat",
        "jti",
        "client_id",
        "scope",
        "sid",
        "trace",
        "cnf",
        "email",
        "email_verified",
        "name",
    }
)


def _protected_header(token: str) -> dict[str, t.Any]:
    """The JWS header, unverified; InvalidTokenError unless a JSON object."""
    encoded = token.partition(".")[0]
    try:
        header = json.loads(b64url_decode(encoded))
    except (ValueError, RecursionError) as exc:
        raise InvalidTokenError(
            "The access token is invalid.", reason="bad_header"
        ) from exc
    if not isinstance(header, dict):
        raise InvalidTokenError("The access token is invalid.", reason="bad_header")
    return header

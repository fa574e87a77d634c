"""A client's key pair and the private_key_jwt assertions it signs (RFC 7523 §2.2).

Keys are generated once per process (RSA generation is slow). The tests sign
assertions with the claims they want to break (tests/client_assertions.py
adds the malformed ones); the benchmark's private_key_jwt flow signs one
fresh assertion per token request, as a real client does.
"""

from __future__ import annotations

import functools
import secrets
import time
import typing as t
import warnings

from joserfc import jwt

try:
    from joserfc.errors import SecurityWarning
except ImportError:  # joserfc < 1.1 has no category of its own for these
    SecurityWarning = UserWarning  # type: ignore[misc,assignment]
from joserfc.jwk import ECKey
from joserfc.jwk import OKPKey
from joserfc.jwk import RSAKey

from proxy.oauth.client_assertion import CLIENT_ASSERTION_TYPE

ALGORITHM_KEYS: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "PS256": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "EdDSA": ("OKP", "Ed25519"),
}


@functools.cache
def private_key(alg: str = "RS256", name: str = "a") -> t.Any:
    """A private key fit for `alg`; `name` gives a distinct key of the same kind."""
    kty, crv = ALGORITHM_KEYS[alg]
    if kty == "RSA":
        return RSAKey.generate_key(2048, parameters={"kid": f"rsa-{name}"})
    if kty == "EC":
        return ECKey.generate_key(crv, parameters={"kid": f"ec-{crv}-{name}"})
    return OKPKey.generate_key(crv, parameters={"kid": f"okp-{name}"})


def public_jwk(key: t.Any, **extra: t.Any) -> dict[str, t.Any]:
    jwk = dict(key.as_dict(private=False))
    jwk.update(extra)
    return {k: v for k, v in jwk.items() if v is not None}


def jwks(*keys: t.Any) -> dict[str, t.Any]:
    return {"keys": [public_jwk(k) for k in keys]}


def claims_for(client_id: str, audience: str, **override: t.Any) -> dict[str, t.Any]:
    now = int(time.time())
    claims: dict[str, t.Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(16),
    }
    claims.update(override)
    return {k: v for k, v in claims.items() if v is not None}


def sign(
    claims: dict[str, t.Any],
    key: t.Any = None,
    *,
    alg: str = "RS256",
    kid: str | None | bool = True,
) -> str:
    """A compact JWS; kid=True uses the key's own kid, None or False sends none."""
    key = key if key is not None else private_key(alg)
    header: dict[str, t.Any] = {"alg": alg, "typ": "JWT"}
    if kid is True:
        header["kid"] = key.kid
    elif isinstance(kid, str):
        header["kid"] = kid
    with warnings.catch_warnings():
        # joserfc warns that RFC 9864 deprecates the name EdDSA; clients use it.
        warnings.simplefilter("ignore", SecurityWarning)
        return jwt.encode(header, claims, key, algorithms=[alg])


def assertion_form(assertion: str, **extra: t.Any) -> dict[str, t.Any]:
    form = {
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    form.update(extra)
    return {k: v for k, v in form.items() if v is not None}

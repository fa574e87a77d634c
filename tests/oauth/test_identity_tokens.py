"""Identity JWTs for the backend: their claims, and never an access token."""

from __future__ import annotations

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from joserfc.jwk import KeySet

from proxy.oauth.access_tokens import AccessClaims
from proxy.oauth.access_tokens import verify_access_token
from proxy.oauth.errors import InvalidTokenError
from proxy.oauth.identity_tokens import IDENTITY_TOKEN_TTL_SECONDS
from proxy.oauth.identity_tokens import IDENTITY_TOKEN_TYPE
from proxy.oauth.identity_tokens import mint_identity_token

ISSUER = "https://proxy.example.com"
BACKEND = "http://10.0.0.5:8001/mcp"
NOW = 1_800_000_000


def _claims(**extra: object) -> AccessClaims:
    return AccessClaims(
        sub="alice",
        client_id="client-1",
        scope="mcp mcp:write",
        audience="https://proxy.example.com/mcp",
        grant_id="grant-1",
        expires_at=NOW + 3600,
        issued_at=NOW,
        jti="at-jti",
        extra=dict(extra),
    )


@pytest.fixture
def key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)


def test_identity_token_carries_the_verified_identity(key: ECKey) -> None:
    claims = _claims(email="alice@example.com", email_verified=True)
    token = mint_identity_token(key, claims, issuer=ISSUER, audience=BACKEND, now=NOW)
    decoded = jwt.decode(token, key, algorithms=["ES256"])
    assert decoded.header == {"alg": "ES256", "typ": IDENTITY_TOKEN_TYPE, "kid": "k1"}
    body = decoded.claims
    assert {k: body[k] for k in ("iss", "aud", "sub", "client_id", "scope")} == {
        "iss": ISSUER,
        "aud": BACKEND,
        "sub": "alice",
        "client_id": "client-1",
        "scope": "mcp mcp:write",
    }
    assert body["email"] == "alice@example.com"
    assert (body["iat"], body["exp"]) == (NOW, NOW + IDENTITY_TOKEN_TTL_SECONDS)
    assert IDENTITY_TOKEN_TTL_SECONDS == 60
    assert "sid" not in body


@pytest.mark.parametrize("verified", [False, None, "true"])
def test_an_unverified_email_is_left_out(key: ECKey, verified: object) -> None:
    claims = _claims(email="ceo@example.com", email_verified=verified)
    token = mint_identity_token(key, claims, issuer=ISSUER, audience=BACKEND, now=NOW)
    assert "email" not in jwt.decode(token, key).claims


def test_every_identity_token_has_its_own_jti(key: ECKey) -> None:
    tokens = [
        mint_identity_token(key, _claims(), issuer=ISSUER, audience=BACKEND, now=NOW)
        for _ in range(2)
    ]
    assert len({jwt.decode(tok, key).claims["jti"] for tok in tokens}) == 2


def test_access_token_verification_refuses_an_identity_token(key: ECKey) -> None:
    """J61: even verified for the very audience it names, its typ is refused."""
    token = mint_identity_token(
        key, _claims(), issuer=ISSUER, audience=BACKEND, now=NOW
    )
    with pytest.raises(InvalidTokenError) as exc:
        verify_access_token(
            token, KeySet([key]), issuer=ISSUER, audience=BACKEND, now=NOW
        )
    assert exc.value.reason == "bad_typ"

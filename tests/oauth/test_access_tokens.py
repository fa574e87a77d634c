"""proxy/oauth/access_tokens.py (RFC 9068) and opaque_tokens.py."""

from __future__ import annotations

import json
import typing as t

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from joserfc.jwk import KeySet
from joserfc.jwk import RSAKey

from proxy.keys.keyring import b64url
from proxy.oauth import access_tokens
from proxy.oauth import opaque_tokens
from proxy.oauth.access_tokens import mint_access_token
from proxy.oauth.access_tokens import verify_access_token
from proxy.oauth.errors import InvalidTokenError
from proxy.oauth.opaque_tokens import split_opaque

ISSUER = "https://auth.example.com"
AUDIENCE = "https://mcp.example.com/mcp"
NOW = 1_800_000_000
TTL = 3600


@pytest.fixture(scope="module")
def key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)


@pytest.fixture(scope="module")
def keyset(key: ECKey) -> KeySet:
    return KeySet([key])


def _mint(key: ECKey, **override: t.Any) -> str:
    args: dict[str, t.Any] = {
        "issuer": ISSUER,
        "sub": "alice",
        "audience": AUDIENCE,
        "client_id": "mcp_client",
        "scope": "mcp",
        "grant_id": "g" * 22,
        "now": NOW,
        "ttl": TTL,
        "extra": {"email": "alice@example.com", "name": "Alice", "groups": ["x"]},
    }
    args.update(override)
    return mint_access_token(key, **args)


def _verify(
    token: str, keyset: KeySet, **override: t.Any
) -> access_tokens.AccessClaims:
    args: dict[str, t.Any] = {"issuer": ISSUER, "audience": AUDIENCE, "now": NOW}
    args.update(override)
    return verify_access_token(token, keyset, **args)


def _claims(**override: t.Any) -> dict[str, t.Any]:
    """A valid access token's claims, to encode by hand with one thing changed."""
    claims = {
        "iss": ISSUER,
        "sub": "a",
        "aud": AUDIENCE,
        "client_id": "c",
        "exp": NOW + 60,
        "iat": NOW,
        "sid": "g",
    }
    claims.update(override)
    return claims


def _b64(text: str) -> str:
    return b64url(text.encode())


def _reason(exc: pytest.ExceptionInfo[InvalidTokenError]) -> str:
    assert exc.value.error == "invalid_token"
    assert exc.value.status_code == 401
    return t.cast(str, exc.value.reason)


def test_minted_token_verifies(key: ECKey, keyset: KeySet) -> None:
    claims = _verify(_mint(key), keyset)
    assert claims.sub == "alice"
    assert claims.client_id == "mcp_client"
    assert claims.scope == "mcp"
    assert claims.audience == AUDIENCE
    assert claims.grant_id == "g" * 22
    assert claims.issued_at == NOW
    assert claims.expires_at == NOW + TTL
    assert claims.jti
    assert claims.extra == {"email": "alice@example.com", "name": "Alice"}


def test_header_and_claims_follow_rfc9068(key: ECKey, keyset: KeySet) -> None:
    """RES-6: `aud` is the resource; RFC 9068 §2.1 header typ at+jwt."""
    decoded = jwt.decode(_mint(key), keyset, algorithms=["ES256"])
    assert decoded.header == {"alg": "ES256", "typ": "at+jwt", "kid": "k1"}
    for claim in ("iss", "exp", "aud", "sub", "client_id", "iat", "jti"):
        assert claim in decoded.claims
    assert decoded.claims["aud"] == AUDIENCE
    assert decoded.claims["iss"] == ISSUER


def test_jti_is_unique(key: ECKey) -> None:
    jtis = {
        jwt.decode(_mint(key), KeySet([key]), algorithms=["ES256"]).claims["jti"]
        for _ in range(20)
    }
    assert len(jtis) == 20


def test_registered_claims_cannot_be_overridden_by_extra(
    key: ECKey, keyset: KeySet
) -> None:
    token = _mint(
        key, extra={"aud": "https://other.example/mcp", "iss": "x", "sub": "mallory"}
    )
    claims = _verify(token, keyset)
    assert claims.sub == "alice"


def test_wrong_audience_is_refused(key: ECKey, keyset: KeySet) -> None:
    """RS-2: a token minted for https://other/mcp → invalid_token."""
    token = _mint(key, audience="https://other.example/mcp")
    with pytest.raises(InvalidTokenError) as exc:
        _verify(token, keyset)
    assert _reason(exc) == "aud_mismatch"


def test_audience_list_containing_ours_is_accepted(key: ECKey, keyset: KeySet) -> None:
    claims = _claims(aud=["https://x.example", AUDIENCE])
    token = jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": "k1"}, claims, key)
    assert _verify(token, keyset).sub == "a"


def test_missing_audience_is_refused(key: ECKey, keyset: KeySet) -> None:
    """RS-2: a missing `aud` → invalid_token."""
    claims = {"iss": ISSUER, "sub": "a", "client_id": "c", "exp": NOW + 60, "sid": "g"}
    token = jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": "k1"}, claims, key)
    with pytest.raises(InvalidTokenError) as exc:
        _verify(token, keyset)
    assert _reason(exc) == "aud_mismatch"


def test_wrong_issuer_is_refused(key: ECKey, keyset: KeySet) -> None:
    """RS-3: a token this AS did not issue → invalid_token."""
    token = _mint(key, issuer="https://idp.example.com")
    with pytest.raises(InvalidTokenError) as exc:
        _verify(token, keyset)
    assert _reason(exc) == "bad_iss"


def test_expired_token_is_refused(key: ECKey, keyset: KeySet) -> None:
    """RS-1: exp (plus the allowed skew) in the past → invalid_token."""
    token = _mint(key)
    skew = access_tokens.CLOCK_SKEW_SECONDS
    assert _verify(token, keyset, now=NOW + TTL + skew).sub == "alice"
    with pytest.raises(InvalidTokenError) as exc:
        _verify(token, keyset, now=NOW + TTL + skew + 1)
    assert _reason(exc) == "expired"


@pytest.mark.parametrize("typ", ["JWT", "jwt", None, "id_token+jwt", "dpop+jwt"])
def test_wrong_typ_is_refused(key: ECKey, keyset: KeySet, typ: str | None) -> None:
    """RS-3: ID tokens and other JWTs are not access tokens (RFC 9068 §4)."""
    header = {"alg": "ES256", "kid": "k1"}
    if typ is not None:
        header["typ"] = typ
    claims = _claims()
    token = jwt.encode(header, claims, key)
    with pytest.raises(InvalidTokenError) as exc:
        _verify(token, keyset)
    assert _reason(exc) == "bad_typ"


def test_media_type_typ_is_accepted(key: ECKey, keyset: KeySet) -> None:
    """RFC 9068 §2.1: `application/at+jwt` is the same type."""
    claims = _claims()
    token = jwt.encode(
        {"alg": "ES256", "typ": "application/at+jwt", "kid": "k1"}, claims, key
    )
    assert _verify(token, keyset).sub == "a"


@pytest.mark.parametrize("part", [0, 1, 2])
def test_tampered_token_is_refused(key: ECKey, keyset: KeySet, part: int) -> None:
    """RS-1: a changed header, payload or signature fails the signature check."""
    pieces = _mint(key).split(".")
    if part == 1:
        other = _mint(key, sub="mallory").split(".")
        pieces[1] = other[1]
    else:
        text = pieces[part]
        pieces[part] = text[:10] + ("A" if text[10] != "A" else "B") + text[11:]
    with pytest.raises(InvalidTokenError):
        _verify(".".join(pieces), keyset)


def test_token_signed_by_another_key_with_our_kid_is_refused(keyset: KeySet) -> None:
    impostor = ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)
    with pytest.raises(InvalidTokenError) as exc:
        _verify(_mint(impostor), keyset)
    assert _reason(exc) == "bad_jwt"


def test_unknown_kid_is_refused(keyset: KeySet) -> None:
    stranger = ECKey.generate_key("P-256", parameters={"kid": "k2"}, private=True)
    with pytest.raises(InvalidTokenError) as exc:
        _verify(_mint(stranger), keyset)
    assert _reason(exc) == "bad_jwt"


def test_other_algorithms_are_refused(keyset: KeySet) -> None:
    """Only ES256: an RS256 or `none` token is refused."""
    rsa = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
    claims = _claims()
    token = jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": "k1"}, claims, rsa)
    with pytest.raises(InvalidTokenError):
        _verify(token, KeySet([rsa]))
    header = _b64('{"alg":"none","typ":"at+jwt","kid":"k1"}')
    body = _b64(json.dumps(claims))
    with pytest.raises(InvalidTokenError):
        _verify(f"{header}.{body}.", keyset)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "a.b", "..", "é.é.é"])
def test_garbage_is_invalid_token(keyset: KeySet, garbage: str) -> None:
    with pytest.raises(InvalidTokenError):
        _verify(garbage, keyset)


def test_missing_required_claims_are_refused(key: ECKey, keyset: KeySet) -> None:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": NOW + 60}
    token = jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": "k1"}, claims, key)
    with pytest.raises(InvalidTokenError) as exc:
        _verify(token, keyset)
    assert _reason(exc) == "claims"


def test_non_integer_exp_is_refused(key: ECKey, keyset: KeySet) -> None:
    claims = _claims(exp=str(NOW + 60))
    token = jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": "k1"}, claims, key)
    with pytest.raises(InvalidTokenError):
        _verify(token, keyset)


# -- opaque tokens ---------------------------------------------------------------------


def test_new_opaque_splits_back() -> None:
    grant_id = opaque_tokens.new_grant_id()
    token, secret = opaque_tokens.new_opaque(grant_id)
    assert token == f"{grant_id}.{secret}"
    assert split_opaque(token) == (grant_id, secret)


def test_two_opaque_tokens_for_one_grant_differ() -> None:
    grant_id = opaque_tokens.new_grant_id()
    assert (
        opaque_tokens.new_opaque(grant_id)[1] != opaque_tokens.new_opaque(grant_id)[1]
    )


@pytest.mark.parametrize(
    "token",
    [
        "",
        "nodot",
        "a" * 22,
        "a" * 15 + "." + "b" * 43,
        "a" * 65 + "." + "b" * 43,
        "a" * 22 + "." + "b" * 31,
        "a" * 22 + "." + "b" * 129,
        "a" * 22 + "." + "b" * 43 + "\n",
        "a" * 22 + ".." + "b" * 43,
        "a" * 22 + "." + "b" * 43 + ".c",
        "a" * 22 + "." + "b" * 42 + "=",
        "a" * 22 + "." + "b" * 42 + "+",
        "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln",
        " " + "a" * 22 + "." + "b" * 43,
    ],
)
def test_malformed_opaque_tokens_do_not_split(token: str) -> None:
    assert split_opaque(token) is None


@pytest.mark.parametrize(
    "crit", [False, [1e308], [[1]], ["exp"], [], "b64", {"a": 1}, None]
)
def test_any_crit_header_is_refused_as_invalid_token(
    key: ECKey, keyset: KeySet, crit: t.Any
) -> None:
    """RFC 7515 §4.1.11: we understand no extension, so any `crit` is refused."""
    header = {"alg": "ES256", "typ": "at+jwt", "kid": key.kid, "crit": crit}
    good = _mint(key)
    token = _b64(json.dumps(header)) + good[good.index(".") :]
    with pytest.raises(InvalidTokenError) as exc:
        _verify(token, keyset)
    assert _reason(exc) == "crit"


@pytest.mark.parametrize(
    "header", ["", "!!!", _b64("[1]"), _b64('"text"'), _b64("[" * 5000), "7Z-_"]
)
def test_a_header_that_is_no_json_object_is_invalid_token(
    keyset: KeySet, header: str
) -> None:
    with pytest.raises(InvalidTokenError) as exc:
        _verify(f"{header}.e30.AAAA", keyset)
    assert _reason(exc) == "bad_header"

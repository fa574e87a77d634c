"""proxy/oauth/client_assertion.py: every private_key_jwt rule (RFC 7523 §3)."""

from __future__ import annotations

import time
import typing as t

import pytest

from proxy.oauth import client_assertion
from proxy.oauth.client_assertion import InvalidJWKSError
from proxy.oauth.client_assertion import UnknownKeyError
from proxy.oauth.errors import InvalidClientError
from tests.client_assertions import claims_for
from tests.client_assertions import hmac_signed
from tests.client_assertions import jwks
from tests.client_assertions import private_key
from tests.client_assertions import public_jwk
from tests.client_assertions import rs256_with_header
from tests.client_assertions import sign
from tests.client_assertions import unsigned

CLIENT = "mcp_client"
ISSUER = "https://as.example"
TOKEN_URL = ISSUER + "/oauth2/token"
AUDIENCES = {ISSUER, TOKEN_URL}
MAX_LIFETIME = 300


def _verify(
    assertion: str, keys: t.Any = None, *, now: int | None = None
) -> client_assertion.VerifiedAssertion:
    keys = keys or client_assertion.parse_public_jwks(jwks(private_key("RS256")))
    return client_assertion.verify(
        assertion,
        client_id=CLIENT,
        audiences=AUDIENCES,
        keys=keys,
        now=int(time.time()) if now is None else now,
        max_lifetime_seconds=MAX_LIFETIME,
    )


def _refused(assertion: str, reason: str, keys: t.Any = None) -> None:
    with pytest.raises(InvalidClientError) as caught:
        _verify(assertion, keys)
    assert caught.value.reason == reason
    assert caught.value.status_code == 401


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "ES384", "EdDSA"])
def test_a_well_formed_assertion_passes(alg: str) -> None:
    key = private_key(alg)
    keys = client_assertion.parse_public_jwks(jwks(key))
    claims = claims_for(CLIENT, TOKEN_URL)
    verified = _verify(sign(claims, key, alg=alg), keys)
    assert verified.jti == claims["jti"]
    assert verified.expires_at == claims["exp"]


@pytest.mark.parametrize("aud", [ISSUER, TOKEN_URL, ["https://other.example", ISSUER]])
def test_audience_may_be_the_issuer_or_the_token_endpoint(aud: t.Any) -> None:
    _verify(sign(claims_for(CLIENT, aud)))


@pytest.mark.parametrize(
    "aud",
    ["https://other.example/oauth2/token", ["https://other.example"], None, 42],
)
def test_wrong_audience_is_refused(aud: t.Any) -> None:
    claims = claims_for(CLIENT, TOKEN_URL)
    claims["aud"] = aud
    _refused(sign(claims), "assertion_aud")


def test_wrong_issuer_is_refused() -> None:
    _refused(sign(claims_for(CLIENT, TOKEN_URL, iss="someone")), "assertion_iss")


def test_wrong_subject_is_refused() -> None:
    _refused(sign(claims_for(CLIENT, TOKEN_URL, sub="someone")), "assertion_sub")


def test_expired_assertion_is_refused() -> None:
    now = int(time.time())
    claims = claims_for(CLIENT, TOKEN_URL, iat=now - 120, exp=now - 60)
    _refused(sign(claims), "assertion_expired")


def test_just_expired_assertion_is_within_the_leeway() -> None:
    now = int(time.time())
    claims = claims_for(CLIENT, TOKEN_URL, exp=now - 5)
    _verify(sign(claims), now=now)


def test_missing_exp_is_refused() -> None:
    claims = claims_for(CLIENT, TOKEN_URL)
    del claims["exp"]
    _refused(sign(claims), "assertion_no_exp")


@pytest.mark.parametrize("exp", ["soon", True, float("inf"), float("nan")])
def test_exp_must_be_a_finite_number(exp: t.Any) -> None:
    _refused(sign(claims_for(CLIENT, TOKEN_URL, exp=exp)), "assertion_no_exp")


def test_exp_too_far_in_the_future_is_refused() -> None:
    now = int(time.time())
    claims = claims_for(CLIENT, TOKEN_URL, exp=now + 3600)
    _refused(sign(claims), "assertion_exp_too_far")


def test_nbf_in_the_future_is_refused() -> None:
    now = int(time.time())
    claims = claims_for(CLIENT, TOKEN_URL, nbf=now + 120)
    _refused(sign(claims), "assertion_nbf")


def test_iat_in_the_future_is_refused() -> None:
    now = int(time.time())
    claims = claims_for(CLIENT, TOKEN_URL, iat=now + 120)
    _refused(sign(claims), "assertion_iat")


def test_missing_jti_is_refused() -> None:
    claims = claims_for(CLIENT, TOKEN_URL)
    del claims["jti"]
    _refused(sign(claims), "assertion_no_jti")


def test_hmac_signed_with_the_public_key_is_refused() -> None:
    """The classic confusion: HS256 keyed with the client's public key bytes."""
    modulus = public_jwk(private_key("RS256"))["n"].encode()
    _refused(hmac_signed(claims_for(CLIENT, TOKEN_URL), modulus), "assertion_alg")


def test_alg_none_is_refused() -> None:
    _refused(unsigned(claims_for(CLIENT, TOKEN_URL)), "assertion_alg")


def test_signature_by_another_key_is_refused() -> None:
    """Same kid, other key: the signature decides."""
    impostor = private_key("RS256", name="impostor")
    claims = claims_for(CLIENT, TOKEN_URL)
    assertion = sign(claims, impostor, kid=private_key("RS256").kid)
    _refused(assertion, "assertion_signature")


def test_tampered_claims_fail_the_signature() -> None:
    header, _, signature = sign(claims_for(CLIENT, TOKEN_URL)).split(".")
    _, body, _ = sign(claims_for(CLIENT, TOKEN_URL, sub="x", iss="x")).split(".")
    _refused(f"{header}.{body}.{signature}", "assertion_signature")


def test_unknown_kid_is_its_own_error() -> None:
    """The caller re-reads a jwks_uri on this error, and only on this one."""
    assertion = sign(claims_for(CLIENT, TOKEN_URL), kid="rotated-away")
    with pytest.raises(UnknownKeyError):
        _verify(assertion)


def test_without_kid_the_key_fitting_the_algorithm_is_found() -> None:
    ec, rsa = private_key("ES256"), private_key("RS256")
    keys = client_assertion.parse_public_jwks(jwks(ec, rsa))
    _verify(sign(claims_for(CLIENT, TOKEN_URL), rsa, kid=False), keys)
    _verify(sign(claims_for(CLIENT, TOKEN_URL), ec, alg="ES256", kid=False), keys)


def test_a_key_published_for_another_alg_is_not_used() -> None:
    key = private_key("RS256")
    keys = client_assertion.parse_public_jwks({"keys": [public_jwk(key, alg="PS256")]})
    _refused(sign(claims_for(CLIENT, TOKEN_URL), key), "assertion_no_key_for_alg", keys)


def test_crit_header_is_refused() -> None:
    header = {"alg": "RS256", "kid": "rsa-a", "crit": ["exp"], "exp": 1}
    assertion = rs256_with_header(header, claims_for(CLIENT, TOKEN_URL))
    _refused(assertion, "assertion_crit")


def test_the_hand_signer_is_accepted_without_crit() -> None:
    """The crit test's signer makes valid assertions: only crit is refused."""
    header = {"alg": "RS256", "kid": "rsa-a"}
    _verify(rs256_with_header(header, claims_for(CLIENT, TOKEN_URL)))


@pytest.mark.parametrize(
    "assertion", ["", "a.b", "a.b.c.d.e", "!!.??.**", "e30.W10.", "x" * 9000]
)
def test_malformed_assertions_are_invalid_client(assertion: str) -> None:
    with pytest.raises(InvalidClientError):
        _verify(assertion)


def test_assertion_type_must_be_exact() -> None:
    client_assertion.validate_assertion_type(client_assertion.CLIENT_ASSERTION_TYPE)
    for wrong in (None, "jwt-bearer", client_assertion.CLIENT_ASSERTION_TYPE + " "):
        with pytest.raises(InvalidClientError):
            client_assertion.validate_assertion_type(wrong)


def test_unverified_subject_names_the_client() -> None:
    assert client_assertion.unverified_subject(sign(claims_for(CLIENT, ISSUER))) == (
        CLIENT
    )
    assert client_assertion.unverified_subject("not a jwt") is None


# -- the key set --------------------------------------------------------------


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi"])
def test_private_key_members_are_refused(member: str) -> None:
    private = private_key("RS256").as_dict(private=True)
    jwk = public_jwk(private_key("RS256"))
    jwk[member] = private[member]
    with pytest.raises(InvalidJWKSError):
        client_assertion.parse_public_jwks({"keys": [jwk]})


def test_symmetric_keys_are_refused() -> None:
    with pytest.raises(InvalidJWKSError):
        client_assertion.parse_public_jwks({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})


def test_short_rsa_keys_are_refused() -> None:
    jwk = public_jwk(private_key("RS256"))
    jwk["n"] = jwk["n"][:170]  # about 1000 bits
    with pytest.raises(InvalidJWKSError):
        client_assertion.parse_public_jwks({"keys": [jwk]})


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        {"keys": []},
        {"keys": {}},
        {"keys": ["x"]},
        {"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]},
        {"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]},
        {"keys": [{"kty": "OKP", "crv": "X25519", "x": "AA"}]},
        {"keys": [{"kty": "RSA", "use": "enc"}]},
        {"keys": [{**{"kty": "EC"}, "alg": "HS256"}]},
    ],
)
def test_unusable_key_sets_are_refused_with_a_reason(value: t.Any) -> None:
    with pytest.raises(InvalidJWKSError) as caught:
        client_assertion.parse_public_jwks(value)
    assert str(caught.value)


def test_too_many_keys_are_refused() -> None:
    jwk = public_jwk(private_key("ES256"))
    with pytest.raises(InvalidJWKSError):
        client_assertion.parse_public_jwks({"keys": [jwk] * 17})

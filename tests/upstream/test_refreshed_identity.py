"""J66: the identity a refresh answer vouches for, checked as OIDC Core §12.2 says.

The provider alone, against the local stand-in (real RS256 signatures and a
JWKS over HTTP): what `OIDCProvider.refreshed_identity` accepts, what it
refuses and with which kind, and when it asks userinfo at all.
"""

from __future__ import annotations

import time
import typing as t

import pytest
from joserfc import jwt

from proxy.upstream.base import UpstreamError
from proxy.upstream.base import UpstreamTokens
from proxy.upstream.github import GitHubProvider
from proxy.upstream.google import GoogleProvider
from proxy.upstream.oidc import OIDCProvider
from proxy.upstream.policy import LoginPolicy

from .standins import OIDCStandIn
from .standins import new_key

USER = {"sub": "u1", "email": "ann@example.com", "email_verified": True}


def provider(
    idp: OIDCStandIn,
    cls: type[OIDCProvider] = OIDCProvider,
    **options: t.Any,
) -> OIDCProvider:
    return cls(
        issuer=idp.issuer,
        client_id=idp.client_id,
        client_secret=idp.client_secret,
        redirect_uri="http://127.0.0.1:9999/oauth2/callback",
        scopes=("openid",),
        **options,
    )


def answer(idp: OIDCStandIn, claims: dict[str, t.Any] | None) -> UpstreamTokens:
    """A refresh answer: a fresh access token the stand-in's userinfo knows,
    with an ID token made of `claims` (None: no ID token)."""
    access_token = f"at-{len(idp.access_tokens)}"
    idp.access_tokens[access_token] = dict(USER)
    return UpstreamTokens(
        access_token=access_token,
        refresh_token="rt",
        id_token=None if claims is None else idp.id_token(claims),
    )


def refused(call: t.Callable[[], object]) -> str:
    with pytest.raises(UpstreamError) as caught:
        call()
    return caught.value.kind


def test_a_refreshed_id_token_for_the_same_user_gives_the_groups_it_names_now(
    httpserver: t.Any,
) -> None:
    idp = OIDCStandIn(httpserver)
    idp_provider = provider(idp, extra_claims=("groups",))
    tokens = answer(idp, {**USER, "groups": []})
    identity = idp_provider.refreshed_identity(tokens, subject="u1")
    assert identity is not None
    assert identity.token_claims() == {
        "groups": [],
        "email": "ann@example.com",
        "email_verified": True,
    }
    assert idp.userinfo_requests == []  # the ID token named every kept claim


def test_no_nonce_is_needed_on_refresh_but_login_still_needs_its_own(
    httpserver: t.Any,
) -> None:
    """§12.2 asks no nonce of a refresh; the login check is not weakened."""
    idp = OIDCStandIn(httpserver)
    idp_provider = provider(idp)
    token = idp.id_token(USER)
    assert idp_provider.verify_refreshed_id_token(token)["sub"] == "u1"
    assert refused(lambda: idp_provider.verify_id_token(token, nonce="n1")) == (
        "invalid_response"
    )


def test_an_id_token_for_another_subject_is_a_subject_change(
    httpserver: t.Any,
) -> None:
    """§12.2: sub MUST be the login's; another one ends the grant."""
    idp = OIDCStandIn(httpserver)
    tokens = answer(idp, {**USER, "sub": "u2"})
    kind = refused(lambda: provider(idp).refreshed_identity(tokens, subject="u1"))
    assert kind == "subject_changed"


def test_the_subject_compared_is_the_namespaced_one(httpserver: t.Any) -> None:
    idp = OIDCStandIn(httpserver)
    prefixed = provider(idp, subject_prefix="okta|")
    tokens = answer(idp, USER)
    identity = prefixed.refreshed_identity(tokens, subject="okta|u1")
    assert identity is not None
    assert identity.subject == "okta|u1"
    assert refused(lambda: prefixed.refreshed_identity(tokens, subject="u1")) == (
        "subject_changed"
    )


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"aud": "someone-else"}, "another audience"),
        ({"aud": ["proxy-client", "other"], "azp": "other"}, "another azp"),
        ({"azp": "other"}, "an azp naming another client, one audience"),
        ({"iss": "https://evil.example"}, "another issuer"),
        ({"exp": int(time.time()) - 3600}, "expired"),
    ],
)
def test_a_refreshed_id_token_that_fails_a_login_check_is_invalid(
    httpserver: t.Any, change: dict[str, t.Any], why: str
) -> None:
    idp = OIDCStandIn(httpserver)
    tokens = answer(idp, {**USER, **change})
    kind = refused(lambda: provider(idp).refreshed_identity(tokens, subject="u1"))
    assert kind == "invalid_response", why


def test_a_refreshed_id_token_signed_by_a_key_the_jwks_lacks_is_invalid(
    httpserver: t.Any,
) -> None:
    idp = OIDCStandIn(httpserver)
    impostor = new_key("k1")  # the published kid, another key
    forged = jwt.encode(
        {"alg": "RS256", "kid": "k1"},
        {**USER, "iss": idp.issuer, "aud": idp.client_id, "exp": time.time() + 300},
        impostor,
    )
    tokens = UpstreamTokens(access_token="at", id_token=forged)
    kind = refused(lambda: provider(idp).refreshed_identity(tokens, subject="u1"))
    assert kind == "invalid_response"


def test_the_login_allow_lists_apply_to_the_refreshed_identity(
    httpserver: t.Any,
) -> None:
    idp = OIDCStandIn(httpserver)
    idp_provider = provider(idp, policy=LoginPolicy(domains=frozenset({"example.com"})))
    assert idp_provider.refreshed_identity(answer(idp, USER), subject="u1")
    moved = answer(idp, {**USER, "email": "ann@elsewhere.example"})
    kind = refused(lambda: idp_provider.refreshed_identity(moved, subject="u1"))
    assert kind == "access_denied"


def test_without_an_id_token_or_kept_claims_nothing_is_asked(
    httpserver: t.Any,
) -> None:
    """No new ID token and nothing userinfo could change: the stored claims stand."""
    idp = OIDCStandIn(httpserver)
    assert provider(idp).refreshed_identity(answer(idp, None), subject="u1") is None
    assert idp.userinfo_requests == []


def test_without_an_id_token_kept_claims_are_read_from_userinfo(
    httpserver: t.Any,
) -> None:
    """As at a login without an ID token: userinfo with the new access token."""
    idp = OIDCStandIn(httpserver)
    idp.users["u1"] = {**USER, "groups": ["staff"]}
    tokens = answer(idp, None)
    identity = provider(idp, extra_claims=("groups",)).refreshed_identity(
        tokens, subject="u1"
    )
    assert identity is not None
    assert identity.extra == {"groups": ["staff"]}
    assert idp.userinfo_requests == [f"Bearer {tokens.access_token}"]


def _userinfo_refusal(idp: OIDCStandIn) -> str:
    """How u1's refresh is refused when its answer has no ID token (userinfo)."""
    tokens = answer(idp, None)
    return refused(
        lambda: provider(idp, extra_claims=("groups",)).refreshed_identity(
            tokens, subject="u1"
        )
    )


def test_userinfo_for_another_subject_is_a_subject_change(httpserver: t.Any) -> None:
    idp = OIDCStandIn(httpserver)
    idp.users["u1"] = {**USER, "sub": "u2"}
    assert _userinfo_refusal(idp) == "subject_changed"


def test_a_rate_limited_userinfo_is_unavailable_not_invalid(
    httpserver: t.Any,
) -> None:
    """A 429 must never read as a bad identity: that would end the grant."""
    idp = OIDCStandIn(httpserver)
    httpserver.expect_request("/busy-userinfo").respond_with_json({}, status=429)
    idp.discovery["userinfo_endpoint"] = httpserver.url_for("/busy-userinfo")
    assert _userinfo_refusal(idp) == "unavailable"


def test_google_without_a_refreshed_id_token_keeps_the_stored_claims(
    httpserver: t.Any,
) -> None:
    """Google's userinfo holds no groups: nothing to re-read without an ID token."""
    idp = OIDCStandIn(httpserver, issuer="https://accounts.google.com")
    google = provider(idp, GoogleProvider, extra_claims=("groups",))
    assert google.refreshed_identity(answer(idp, None), subject="u1") is None
    assert idp.userinfo_requests == []


def test_github_keeps_the_stored_claims() -> None:
    """GitHub's refresh answer names nobody, and re-reading costs REST calls."""
    github = GitHubProvider(
        client_id="c",
        client_secret="s",  # noqa: S106
        redirect_uri="http://127.0.0.1:9999/oauth2/callback",
        scopes=(),
    )
    tokens = UpstreamTokens(access_token="at", refresh_token="rt")
    assert github.refreshed_identity(tokens, subject="github|1") is None

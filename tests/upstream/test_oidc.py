"""The generic OIDC provider end to end against a real OIDC provider.

Upstream: oidc-provider-mock (tests/conftest.py `idp_url`), which implements
OpenID Connect Core 1.0 with Authlib: discovery, RS256 ID tokens, refresh
tokens, and `POST /users/<sub>/revoke-tokens` to end a user's tokens. JWKS
rotation and token-endpoint failures use the local stand-in (standins.py).
"""

from __future__ import annotations

import typing as t
import uuid

import pytest
import requests

from proxy.config.settings import Settings
from proxy.upstream.base import UpstreamError
from proxy.upstream.factory import build_provider
from proxy.upstream.oidc import OIDCProvider
from tests.endpoints._helpers import assert_json_error
from tests.endpoints._helpers import closed_port
from tests.oauth_client import OAuthTestClient
from tests.oauth_client import query_of

from .standins import OIDCStandIn
from .standins import access_claims
from .standins import come_back
from .standins import new_key
from .standins import start_login


def new_user(idp_url: str, **claims: t.Any) -> str:
    """A user at the mock IdP with the given claims; returns its sub."""
    sub = f"user-{uuid.uuid4().hex[:8]}"
    response = requests.put(f"{idp_url}/users/{sub}", json=claims, timeout=5)
    assert response.status_code == 204
    return sub


def login(oauth: OAuthTestClient, user: str) -> tuple[str, dict[str, t.Any]]:
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id, user)
    response = oauth.token(flow)
    assert response.status_code == 200, response.get_data(as_text=True)
    return client_id, t.cast(dict[str, t.Any], response.get_json())


def test_oidc_login_keeps_raw_sub_and_refreshes(
    settings: Settings, make_oauth: t.Any, idp_url: str
) -> None:
    """oidc: the token's sub is the IdP's raw sub; refresh works end to end."""
    oauth = make_oauth(settings)
    sub = new_user(idp_url, email="raw@example.com", email_verified=True)
    client_id, body = login(oauth, sub)
    claims = access_claims(body["access_token"])
    assert claims["sub"] == sub
    assert claims["email"] == "raw@example.com"
    assert claims["email_verified"] is True
    refreshed = oauth.refresh(client_id, body["refresh_token"])
    assert refreshed.status_code == 200
    assert access_claims(refreshed.get_json()["access_token"])["sub"] == sub


def test_upstream_invalid_grant_ends_our_grant(
    settings: Settings, make_oauth: t.Any, idp_url: str
) -> None:
    """A user whose tokens the IdP revoked loses the grant at the next refresh."""
    oauth = make_oauth(settings)
    sub = new_user(idp_url, email="gone@example.com")
    client_id, body = login(oauth, sub)
    response = requests.post(f"{idp_url}/users/{sub}/revoke-tokens", timeout=5)
    assert response.status_code == 204
    assert_json_error(
        oauth.refresh(client_id, body["refresh_token"]), 400, "invalid_grant"
    )
    # The grant is gone, not just this one refresh token.
    grant_id = body["refresh_token"].split(".")[0]
    assert oauth.app.extensions["proxy"].store.load_grant(grant_id) is None


def test_upstream_down_at_refresh_is_503_and_keeps_the_grant(
    settings: Settings, make_oauth: t.Any, idp_url: str
) -> None:
    """IdP unreachable during refresh: 503 temporarily_unavailable JSON, grant kept."""
    oauth = make_oauth(settings)
    client_id, body = login(oauth, new_user(idp_url))
    upstream = oauth.app.extensions["proxy"].upstream
    document = upstream.metadata()
    upstream._discovery = dict(
        document, token_endpoint=f"http://127.0.0.1:{closed_port()}/token"
    )
    response = oauth.refresh(client_id, body["refresh_token"])
    assert_json_error(response, 503, "temporarily_unavailable")
    assert response.headers["Cache-Control"] == "no-store"
    grant_id = body["refresh_token"].split(".")[0]
    assert oauth.app.extensions["proxy"].store.load_grant(grant_id) is not None


def test_verified_email_allow_list_admits(
    settings: Settings, make_oauth: t.Any, idp_url: str
) -> None:
    """ALLOWED_EMAIL_DOMAINS admits a verified address in the domain."""
    oauth = make_oauth(
        settings.replace(allowed_email_domains=frozenset({"ok.example"}))
    )
    sub = new_user(idp_url, email="a@ok.example", email_verified=True)
    login(oauth, sub)


@pytest.mark.parametrize(
    ("claims", "policy"),
    [
        (
            {"email": "a@ok.example"},
            {"allowed_email_domains": frozenset({"ok.example"})},
        ),
        (
            {"email": "a@ok.example", "email_verified": False},
            {"allowed_emails": frozenset({"a@ok.example"})},
        ),
        (
            {"email": "b@other.example", "email_verified": True},
            {"allowed_email_domains": frozenset({"ok.example"})},
        ),
        ({}, {"allowed_emails": frozenset({"a@ok.example"})}),
    ],
)
def test_refused_user_gets_access_denied_at_the_client(
    settings: Settings,
    make_oauth: t.Any,
    idp_url: str,
    claims: dict[str, t.Any],
    policy: dict[str, t.Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Unverified, missing or foreign emails: access_denied redirect, a log line."""
    oauth = make_oauth(settings.replace(**policy))
    sub = new_user(idp_url, **claims)
    flow = start_login(oauth)
    oauth.upstream_login(flow, sub)
    response = oauth.callback(flow)
    assert response.status_code == 302
    query = query_of(response.headers["Location"])
    assert query["error"] == ["access_denied"]
    assert query["state"] == ["client-state"]
    assert "code" not in query
    assert any("login refused" in r.getMessage() for r in caplog.records)


def test_extra_claims_are_copied_but_never_override_registered(
    settings: Settings, make_oauth: t.Any, idp_url: str
) -> None:
    """TOKEN_EXTRA_CLAIMS copies groups; an upstream `client_id` claim is ignored."""
    oauth = make_oauth(settings.replace(token_extra_claims=("groups", "missing")))
    # The provider is configured with a reserved name it must still refuse.
    oauth.app.extensions["proxy"].upstream.extra_claims = ("groups", "client_id")
    sub = new_user(idp_url, groups=["admins", "dev"], client_id="evil")
    client_id, body = login(oauth, sub)
    claims = access_claims(body["access_token"])
    assert claims["groups"] == ["admins", "dev"]
    assert claims["client_id"] == client_id
    assert "missing" not in claims


def test_subject_prefix_setting_namespaces_oidc(
    settings: Settings, make_oauth: t.Any, idp_url: str
) -> None:
    """OAUTH_SUBJECT_PREFIX opts the generic provider into a namespace."""
    oauth = make_oauth(settings.replace(subject_prefix="corp|"))
    sub = new_user(idp_url)
    _, body = login(oauth, sub)
    assert access_claims(body["access_token"])["sub"] == f"corp|{sub}"


# -- JWKS cache and rotation (local stand-in) -----------------------------------
def _provider(idp: OIDCStandIn) -> OIDCProvider:
    return OIDCProvider(
        issuer=idp.issuer,
        client_id=idp.client_id,
        client_secret=idp.client_secret,
        redirect_uri="http://127.0.0.1:9999/oauth2/callback",
        scopes=("openid",),
    )


def test_jwks_is_cached_and_refetched_for_an_unknown_kid(httpserver: t.Any) -> None:
    """Keys are fetched once; a token signed by a new key triggers one re-fetch."""
    idp = OIDCStandIn(httpserver)
    provider = _provider(idp)
    provider.verify_id_token(idp.id_token({"sub": "a"}, "n"), nonce="n")
    provider.verify_id_token(idp.id_token({"sub": "a"}, "n"), nonce="n")
    assert idp.jwks_requests == 1
    # The IdP rotates: k2 signs from now on.
    idp.keys.append(new_key("k2"))
    idp.signing_kid = "k2"
    provider._jwks_at -= 60  # the last fetch was a minute ago
    claims = provider.verify_id_token(idp.id_token({"sub": "b"}, "n"), nonce="n")
    assert claims["sub"] == "b"
    assert idp.jwks_requests == 2


def test_unknown_kid_refetch_is_rate_limited(httpserver: t.Any) -> None:
    """A burst of unknown kids re-fetches at most once per JWKS_MIN_REFRESH_SECONDS."""
    idp = OIDCStandIn(httpserver)
    provider = _provider(idp)
    provider.verify_id_token(idp.id_token({"sub": "a"}, "n"), nonce="n")
    idp.keys.append(new_key("k9"))
    idp.signing_kid = "k9"
    forged_by_unknown = idp.id_token({"sub": "a"}, "n")
    idp.keys.pop()  # k9 is not published: nobody can verify it
    for _ in range(3):
        with pytest.raises(UpstreamError) as info:
            provider.verify_id_token(forged_by_unknown, nonce="n")
        assert info.value.kind == "invalid_response"
    assert idp.jwks_requests == 1


def test_upstream_invalid_client_at_refresh_keeps_the_grant(
    httpserver: t.Any, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """Our own credentials refused upstream (a rotated secret): 503, grants kept."""
    idp = OIDCStandIn(httpserver)
    oauth = make_oauth(provider_settings.replace(upstream_issuer=idp.issuer))
    flow = start_login(oauth)
    code, _ = idp.login(flow.upstream_url, {"sub": "u1"})
    assert "code" in come_back(oauth, flow, code=code)
    body = oauth.token(flow).get_json()
    idp.refresh_answer = (401, {"error": "invalid_client"})
    response = oauth.refresh(flow.client_id, body["refresh_token"])
    assert_json_error(response, 503, "temporarily_unavailable")
    grant_id = body["refresh_token"].split(".")[0]
    assert oauth.app.extensions["proxy"].store.load_grant(grant_id) is not None


def test_factory_builds_the_generic_provider_by_default(
    provider_settings: Settings,
) -> None:
    """OAUTH_PROVIDER unset: OIDCProvider with raw subjects and the audience."""
    provider = build_provider(provider_settings.replace(upstream_audience="api"))
    assert type(provider) is OIDCProvider
    assert provider.subject_prefix == ""
    assert provider.audience == "api"

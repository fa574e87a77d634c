"""Google: OIDC with Google's refresh-token and hosted-domain rules.

The stand-in follows Google's documentation:
- "OpenID Connect" (https://developers.google.com/identity/openid-connect/openid-connect):
  the ID token's `iss` is `https://accounts.google.com` or
  `accounts.google.com`; `hd` is the Workspace domain, and "be sure to
  validate that the returned ID token has an hd claim value that matches";
  `email_verified` is a boolean.
- "Using OAuth 2.0 for Web Server Applications"
  (https://developers.google.com/identity/protocols/oauth2/web-server):
  `access_type=offline` makes Google return a refresh token "the first time
  that your application exchanges an authorization code"; `prompt=consent`
  asks again, so every login gets one; a refresh answer has no new
  refresh token.
- "OpenID Connect API reference" (https://developers.google.com/identity/openid-connect/reference):
  discovery `scopes_supported` is `openid email profile` (no
  `offline_access`).
"""

from __future__ import annotations

import typing as t

import pytest

from proxy.config.settings import Settings
from proxy.upstream.base import UpstreamTokens
from proxy.upstream.factory import GoogleProvider
from proxy.upstream.factory import build_provider

from .standins import OIDCStandIn
from .standins import access_claims
from .standins import come_back
from .standins import start_login
from .standins import upstream_params

USER = {
    "sub": "110169484474386276334",
    "email": "ada@corp.example",
    "email_verified": True,
    "name": "Ada",
    "hd": "corp.example",
}


class GoogleStandIn(OIDCStandIn):
    """Google's refresh rule: a refresh token only with access_type=offline, and
    only on a user's first consent unless prompt=consent asks again."""

    consented: set[str]

    def __post_init__(self) -> None:
        self.consented = set()
        self.rotate_refresh = False  # Google keeps the same refresh token
        self.discovery_extra = {
            "scopes_supported": ["openid", "email", "profile"],
            **self.discovery_extra,
        }
        super().__post_init__()

    def login(
        self, authorize_url: str, claims: dict[str, t.Any], *, refresh: bool = True
    ) -> tuple[str, dict[str, str]]:
        params = dict(
            p.split("=", 1) for p in authorize_url.split("?", 1)[1].split("&")
        )
        first = claims["sub"] not in self.consented
        self.consented.add(claims["sub"])
        offline = params.get("access_type") == "offline"
        refresh = offline and (first or params.get("prompt") == "consent")
        return super().login(authorize_url, claims, refresh=refresh)


@pytest.fixture
def google(httpserver: t.Any) -> GoogleStandIn:
    return GoogleStandIn(httpserver, token_issuer="https://accounts.google.com")


def google_settings(base: Settings, idp: OIDCStandIn, **changes: t.Any) -> Settings:
    return base.replace(
        upstream_provider="google",
        upstream_issuer=idp.issuer,
        upstream_scopes=("openid", "email", "profile", "offline_access"),
        upstream_audience="https://mcp.example.com/mcp",
        **changes,
    )


def log_in(oauth: t.Any, idp: OIDCStandIn, claims: dict[str, t.Any]) -> t.Any:
    flow = start_login(oauth)
    code, _ = idp.login(flow.upstream_url, claims)
    return flow, come_back(oauth, flow, code=code)


def test_authorize_asks_for_offline_access_the_google_way(
    google: GoogleStandIn, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """access_type=offline, prompt=consent, hd; no offline_access scope, no audience."""
    oauth = make_oauth(
        google_settings(provider_settings, google, google_hosted_domain="corp.example")
    )
    params = upstream_params(start_login(oauth))
    assert params["access_type"] == "offline"
    assert params["prompt"] == "consent"
    assert params["hd"] == "corp.example"
    assert params["scope"].split() == ["openid", "email", "profile"]
    assert "audience" not in params


def test_every_login_gets_a_refresh_token(
    google: GoogleStandIn, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """prompt=consent: a returning user still brings an upstream refresh token."""
    oauth = make_oauth(google_settings(provider_settings, google))
    for _ in range(2):
        flow, query = log_in(oauth, google, USER)
        body = oauth.token(flow).get_json()
        before = len(google.token_requests)
        assert oauth.refresh(flow.client_id, body["refresh_token"]).status_code == 200
        # Our refresh reached Google: the grant holds an upstream refresh token.
        assert len(google.token_requests) == before + 1
        assert google.token_requests[-1]["grant_type"] == "refresh_token"


def test_refresh_keeps_the_refresh_token_google_does_not_resend(
    google: GoogleStandIn, provider_settings: Settings
) -> None:
    """A Google refresh answer has no refresh_token; the old one is kept."""
    provider = build_provider(google_settings(provider_settings, google))
    google.refresh_tokens["rt-1"] = USER
    renewed = provider.refresh(UpstreamTokens(access_token="a", refresh_token="rt-1"))
    assert renewed.refresh_token == "rt-1"
    assert renewed.access_token != "a"


def test_sub_is_namespaced_and_legacy_issuer_accepted(
    httpserver: t.Any, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """google|<sub>; an ID token with iss `accounts.google.com` verifies."""
    idp = GoogleStandIn(httpserver, token_issuer="accounts.google.com")
    oauth = make_oauth(google_settings(provider_settings, idp))
    flow, query = log_in(oauth, idp, USER)
    assert "code" in query
    claims = access_claims(oauth.token(flow).get_json()["access_token"])
    assert claims["sub"] == "google|110169484474386276334"
    assert claims["email"] == "ada@corp.example"


def test_foreign_issuer_is_refused(
    httpserver: t.Any, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """An ID token from another issuer is not Google's: server_error, no code."""
    idp = GoogleStandIn(httpserver, token_issuer="https://evil.example")
    oauth = make_oauth(google_settings(provider_settings, idp))
    _, query = log_in(oauth, idp, USER)
    assert query["error"] == "server_error"


@pytest.mark.parametrize(
    ("hd", "error"),
    [
        ("corp.example", None),
        ("other.example", "access_denied"),
        (None, "access_denied"),
    ],
)
def test_hosted_domain_is_checked_on_the_id_token(
    google: GoogleStandIn,
    provider_settings: Settings,
    make_oauth: t.Any,
    hd: str | None,
    error: str | None,
) -> None:
    """GOOGLE_HOSTED_DOMAIN: the ID token's hd must match; gmail.com has none."""
    oauth = make_oauth(
        google_settings(provider_settings, google, google_hosted_domain="corp.example")
    )
    claims = {k: v for k, v in USER.items() if k != "hd"}
    if hd:
        claims["hd"] = hd
    _, query = log_in(oauth, google, claims)
    assert query.get("error") == error


def test_callback_iss_in_either_spelling(
    google: GoogleStandIn, provider_settings: Settings
) -> None:
    """RFC 9207 iss from Google matches in both of Google's spellings only."""
    provider = build_provider(google_settings(provider_settings, google))
    assert isinstance(provider, GoogleProvider)
    assert provider.issuer_matches("https://accounts.google.com")
    assert provider.issuer_matches("accounts.google.com")
    assert not provider.issuer_matches("https://evil.example")

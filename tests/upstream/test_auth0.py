"""Auth0: the OIDC preset with `audience`, `offline_access` and its issuer slash.

The stand-in follows Auth0's documentation:
- "Locate the OIDC discovery endpoint / Authentication API: Authorize"
  (https://auth0.com/docs/api/authentication#authorize-application): the
  issuer is `https://{yourDomain}/` (with the trailing slash, also in the ID
  token's `iss`); `audience` names the API; `offline_access` asks for a
  refresh token.
- "Refresh Token Rotation" (https://auth0.com/docs/secure/tokens/refresh-tokens/refresh-token-rotation):
  every refresh answers a new refresh token; a reused or revoked one is
  `invalid_grant`.
- Subjects look like `auth0|<id>` or `google-oauth2|<id>`.
"""

from __future__ import annotations

import typing as t

from proxy.config.settings import Settings
from proxy.upstream.factory import Auth0Provider
from proxy.upstream.factory import build_provider
from tests.endpoints._helpers import assert_json_error

from .standins import OIDCStandIn
from .standins import access_claims
from .standins import come_back
from .standins import start_login
from .standins import upstream_params


def auth0(server: t.Any) -> OIDCStandIn:
    base = server.url_for("").rstrip("/")
    return OIDCStandIn(server, issuer=base + "/")


def settings_for(base: Settings, idp: OIDCStandIn) -> Settings:
    return base.replace(
        upstream_provider="auth0",
        # Operators often leave off Auth0's trailing slash.
        upstream_issuer=idp.issuer.rstrip("/"),
        upstream_audience="https://api.example.com",
    )


def test_auth0_login_sends_audience_and_namespaces_sub(
    httpserver: t.Any, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """audience + offline_access upstream; sub auth0|<Auth0 sub>; refresh rotates."""
    idp = auth0(httpserver)
    oauth = make_oauth(settings_for(provider_settings, idp))
    flow = start_login(oauth)
    params = upstream_params(flow)
    assert params["audience"] == "https://api.example.com"
    assert "offline_access" in params["scope"].split()
    code, _ = idp.login(flow.upstream_url, {"sub": "auth0|5f7c8ec7c33c6c004bbafe82"})
    assert "code" in come_back(oauth, flow, code=code)
    body = oauth.token(flow).get_json()
    assert (
        access_claims(body["access_token"])["sub"]
        == "auth0|auth0|5f7c8ec7c33c6c004bbafe82"
    )
    again = oauth.refresh(flow.client_id, body["refresh_token"])
    assert again.status_code == 200
    idp.refresh_tokens.clear()  # the user was blocked in Auth0
    response = oauth.refresh(flow.client_id, again.get_json()["refresh_token"])
    assert_json_error(response, 400, "invalid_grant")


def test_auth0_factory(httpserver: t.Any, provider_settings: Settings) -> None:
    """OAUTH_PROVIDER=auth0 builds the Auth0 preset."""
    provider = build_provider(settings_for(provider_settings, auth0(httpserver)))
    assert isinstance(provider, Auth0Provider)
    assert provider.subject_prefix == "auth0|"

"""Okta: the OIDC preset against a custom authorization server.

The stand-in follows Okta's documentation:
- "OpenID Connect & OAuth 2.0 API" (https://developer.okta.com/docs/api/openapi/okta-oauth/guides/overview/):
  a custom authorization server's issuer is `https://{yourOktaDomain}/oauth2/default`
  with discovery at `{issuer}/.well-known/openid-configuration`; the token
  endpoint takes `client_secret_basic`; `offline_access` gives refresh tokens;
  a `groups` claim appears when configured on the server.
"""

from __future__ import annotations

import typing as t

from proxy.config.settings import Settings

from .standins import OIDCStandIn
from .standins import access_claims
from .standins import come_back
from .standins import start_login


def test_okta_login_copies_groups_and_namespaces_sub(
    httpserver: t.Any, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """sub okta|<uid>; TOKEN_EXTRA_CLAIMS=groups copies Okta's groups claim."""
    idp = OIDCStandIn(
        httpserver, path="/oauth2/default", auth_methods=("client_secret_basic",)
    )
    oauth = make_oauth(
        provider_settings.replace(
            upstream_provider="okta",
            upstream_issuer=idp.issuer,
            token_extra_claims=("groups",),
        )
    )
    flow = start_login(oauth)
    code, _ = idp.login(
        flow.upstream_url,
        {
            "sub": "00uid4BxXw6I6TV4m0g3",
            "email": "isaac@example.org",
            "email_verified": True,
            "groups": ["Everyone", "mcp-users"],
        },
    )
    assert "code" in come_back(oauth, flow, code=code)
    claims = access_claims(oauth.token(flow).get_json()["access_token"])
    assert claims["sub"] == "okta|00uid4BxXw6I6TV4m0g3"
    assert claims["groups"] == ["Everyone", "mcp-users"]
    # Basic authentication, as the discovery document asks.
    assert "client_secret" not in idp.token_requests[0]

"""Keycloak: the OIDC preset for a realm, with RFC 9207 `iss` on the callback.

The stand-in follows Keycloak's documentation:
- "Securing applications: OIDC" (https://www.keycloak.org/securing-apps/oidc-layers):
  the issuer is `https://{host}/realms/{realm}`; the authorization response
  carries `iss` (RFC 9207, Keycloak 19+); refresh tokens rotate; a refresh
  after the SSO session ended is `invalid_grant` ("Session not active"),
  which `offline_access` (offline tokens) avoids.
"""

from __future__ import annotations

import typing as t

from proxy.config.settings import Settings
from tests.endpoints._helpers import assert_json_error

from .standins import OIDCStandIn
from .standins import access_claims
from .standins import come_back
from .standins import start_login


def keycloak(server: t.Any) -> OIDCStandIn:
    return OIDCStandIn(server, path="/realms/mcp")


def settings_for(base: Settings, idp: OIDCStandIn) -> Settings:
    return base.replace(upstream_provider="keycloak", upstream_issuer=idp.issuer)


USER = {"sub": "f1b2c3d4-0000-4000-8000-000000000001", "preferred_username": "kc"}


def test_keycloak_login_with_iss_and_session_end(
    httpserver: t.Any, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """iss on the callback matches; sub keycloak|<id>; session end ends the grant."""
    idp = keycloak(httpserver)
    oauth = make_oauth(settings_for(provider_settings, idp))
    flow = start_login(oauth)
    code, _ = idp.login(flow.upstream_url, USER)
    assert "code" in come_back(oauth, flow, code=code, iss=idp.issuer)
    body = oauth.token(flow).get_json()
    claims = access_claims(body["access_token"])
    assert claims["sub"] == f"keycloak|{USER['sub']}"
    assert claims["name"] == "kc"
    idp.refresh_answer = (
        400,
        {"error": "invalid_grant", "error_description": "Session not active"},
    )
    assert_json_error(
        oauth.refresh(flow.client_id, body["refresh_token"]), 400, "invalid_grant"
    )


def test_keycloak_callback_with_foreign_iss_is_refused(
    httpserver: t.Any, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """RFC 9207 §2.4: an `iss` naming another realm stops the login (mix-up)."""
    idp = keycloak(httpserver)
    oauth = make_oauth(settings_for(provider_settings, idp))
    flow = start_login(oauth)
    code, _ = idp.login(flow.upstream_url, USER)
    query = come_back(oauth, flow, code=code, iss=idp.base.replace("/mcp", "/other"))
    assert query["error"] == "server_error"
    assert "code" not in query

"""J66 at the gateway: groups removed at the IdP stop reaching tools on refresh.

The upstream is the real oidc-provider-mock (tests/conftest.py `idp_url`),
whose users' claims can change between login and refresh (`PUT /users/<sub>`)
and whose refresh answers carry no ID token, so the proxy re-reads `groups`
from userinfo, as it did at login. The tool policy and backend are those of
tests/endpoints/test_gateway_tools.py: `delete_*` is for group `admins` only.
"""

from __future__ import annotations

import typing as t

from tests.oauth_client import OAuthTestClient
from tests.upstream.standins import access_claims

from .test_gateway_tools import TOOLS
from .test_gateway_tools import app  # noqa: F401 - fixture
from .test_gateway_tools import backend  # noqa: F401 - fixture
from .test_gateway_tools import gateway_settings  # noqa: F401 - fixture
from .test_gateway_tools import listed
from .test_gateway_tools import rpc
from .test_gateway_tools import set_user

USER = "root@example.com"


def log_in(oauth: OAuthTestClient, idp_url: str) -> tuple[str, dict[str, t.Any]]:
    set_user(idp_url, USER, groups=["admins"])
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id, USER, scope="mcp:read")
    response = oauth.token(flow)
    assert response.status_code == 200, response.get_data(as_text=True)
    return client_id, t.cast(dict[str, t.Any], response.get_json())


def test_an_admin_removed_from_admins_upstream_loses_delete_at_the_next_refresh(
    client: t.Any, oauth: OAuthTestClient, idp_url: str
) -> None:
    client_id, body = log_in(oauth, idp_url)
    first = body["access_token"]
    assert rpc(client, first, "tools/call", "delete_repo").status_code == 200
    assert listed(rpc(client, first, "tools/list")) == TOOLS

    set_user(idp_url, USER, groups=[])  # the IdP's admin removes the user
    refreshed = oauth.refresh(client_id, body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
    token = refreshed.get_json()["access_token"]
    assert access_claims(token)["groups"] == []

    denied = rpc(client, token, "tools/call", "delete_repo")
    assert denied.status_code == 403
    assert listed(rpc(client, token, "tools/list")) == [
        name for name in TOOLS if not name.startswith("delete_")
    ]
    assert rpc(client, token, "tools/call", "echo").status_code == 200


def test_an_admin_added_upstream_gains_delete_at_the_next_refresh(
    client: t.Any, oauth: OAuthTestClient, idp_url: str
) -> None:
    """Both ways: the policy follows the IdP, not the login."""
    set_user(idp_url, "new@example.com", groups=["staff"])
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id, "new@example.com", scope="mcp:read")
    body = oauth.token(flow).get_json()
    first = body["access_token"]
    assert rpc(client, first, "tools/call", "delete_repo").status_code == 403
    set_user(idp_url, "new@example.com", groups=["admins"])
    token = oauth.refresh(client_id, body["refresh_token"]).get_json()["access_token"]
    assert rpc(client, token, "tools/call", "delete_repo").status_code == 200

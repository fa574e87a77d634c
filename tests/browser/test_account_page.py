"""The connected-apps page (/account) in a real headless Chromium.

A user connects an MCP client through the normal OAuth flow (consent, the
oidc-provider-mock login), then opens /account, signs in at the same IdP,
sees the app by name and scopes, revokes it, and its tokens stop working at
the resource side and the token endpoint.
"""

from __future__ import annotations

import typing as t

import requests

from .test_consent_page import CLIENT_NAME
from .test_consent_page import HTTP_TIMEOUT_SECONDS
from .test_consent_page import USER
from .test_consent_page import Authorization
from .test_consent_page import authorization
from .test_consent_page import browser  # noqa: F401 - fixture
from .test_consent_page import flow  # noqa: F401 - fixture
from .test_consent_page import new_context  # noqa: F401 - fixture
from .test_consent_page import page  # noqa: F401 - fixture
from .test_consent_page import pytestmark  # noqa: F401 - skip without Chromium

if t.TYPE_CHECKING:
    from playwright.sync_api import Page

    from .conftest import LiveProxy
    from .conftest import Site


def _idp_login(tab: Page, idp_url: str, user: str) -> None:
    tab.wait_for_url(f"{idp_url}/**")
    tab.locator("input[name=sub]").fill(user)
    tab.locator("input[name=sub]").press("Enter")


def _connect(
    tab: Page, proxy: LiveProxy, site: Site, auth: Authorization, idp_url: str
) -> dict[str, t.Any]:
    """The normal OAuth flow in the browser; the client redeems the code."""
    tab.goto(auth.url)
    tab.locator("#approve").click()
    _idp_login(tab, idp_url, USER)
    tab.wait_for_url(f"{site.url}/callback?**")
    [query] = site.queries("/callback")
    response = requests.post(
        proxy.url + "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "code_verifier": auth.verifier,
            "client_id": auth.client_id,
            "redirect_uri": auth.redirect_uri,
        },
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    assert response.status_code == 200, response.text
    return t.cast(dict[str, t.Any], response.json())


def _resource_status(proxy: LiveProxy, access_token: str) -> int:
    response = requests.get(
        proxy.url + "/oauth2/forward-auth",
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    return response.status_code


def test_user_revokes_a_connected_app_and_its_tokens_stop_working(
    page: Page,  # noqa: F811 - the imported fixture
    live_proxy: LiveProxy,
    client_site: Site,
    flow: Authorization,  # noqa: F811 - the imported fixture
    idp_url: str,
) -> None:
    tokens = _connect(page, live_proxy, client_site, flow, idp_url)
    assert _resource_status(live_proxy, tokens["access_token"]) == 200

    # /account signs in through the IdP with its own round trip.
    page.goto(live_proxy.url + "/account")
    _idp_login(page, idp_url, USER)
    page.wait_for_url(live_proxy.url + "/account")
    assert page.locator("#signed-in-as").inner_text() == USER
    [app] = page.locator("li.app").all()
    assert app.locator(".app-name").inner_text() == CLIENT_NAME
    assert app.locator(".app-scopes code").all_inner_texts() == ["mcp", "mcp:write"]
    assert app.locator(".app-client-id").inner_text() == flow.client_id

    cookies = {c["name"]: c for c in page.context.cookies(live_proxy.url + "/account")}
    session = cookies["mcp_account"]
    assert session["path"] == "/account"
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Lax"
    assert "mcp_account_login" not in cookies
    # Path=/account: the session never reaches the token endpoint or the gateway.
    elsewhere = page.context.cookies(live_proxy.url + "/oauth2/token")
    assert "mcp_account" not in {c["name"] for c in elsewhere}

    app.get_by_role("button", name=f"Revoke {CLIENT_NAME}").click()
    page.wait_for_load_state()
    assert page.url == live_proxy.url + "/account"
    assert page.locator("#no-apps").is_visible()
    assert page.locator("li.app").count() == 0

    # The grant is gone: its access token and its refresh token are refused.
    assert _resource_status(live_proxy, tokens["access_token"]) == 401
    refresh = requests.post(
        live_proxy.url + "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": flow.client_id,
        },
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    assert refresh.status_code == 400
    assert refresh.json()["error"] == "invalid_grant"

    page.locator("#sign-out").click()
    page.locator("#signed-out").wait_for()
    remaining = page.context.cookies(live_proxy.url + "/account")
    assert "mcp_account" not in {c["name"] for c in remaining}


HOSTILE_NAME = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


def test_a_hostile_client_name_is_shown_as_text(
    page: Page,  # noqa: F811 - the imported fixture
    live_proxy: LiveProxy,
    client_site: Site,
    idp_url: str,
) -> None:
    """A client name is whatever its registrant typed: text on the page, never
    markup, and nothing runs (the CSP allows no script either)."""
    redirect_uri = client_site.url + "/callback"
    registered = requests.post(
        live_proxy.url + "/oauth2/register",
        json={
            "client_name": HOSTILE_NAME,
            "redirect_uris": [redirect_uri],
            "token_endpoint_auth_method": "none",
        },
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    assert registered.status_code == 201, registered.text
    auth = authorization(live_proxy, registered.json()["client_id"], redirect_uri)
    _connect(page, live_proxy, client_site, auth, idp_url)

    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(live_proxy.url + "/account")
    _idp_login(page, idp_url, USER)
    page.wait_for_url(live_proxy.url + "/account")
    assert page.locator("li.app .app-name").inner_text() == HOSTILE_NAME
    assert page.locator("li.app img").count() == 0
    assert page.locator("script").count() == 0
    assert dialogs == []

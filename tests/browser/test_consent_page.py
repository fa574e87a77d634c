"""The consent page in a real headless Chromium (Playwright, sync API).

The proxy, a client redirect receiver and an attacker site are real HTTP servers
on loopback ports (see conftest.py); the upstream is oidc-provider-mock, whose
login form takes any `sub`. Requests to any non-loopback host are aborted, so
the IdP's CDN stylesheet never leaves the machine.
"""

from __future__ import annotations

import html
import importlib.util
import os
import secrets
import struct
import typing as t
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
import requests

from proxy.oauth.pkce import s256

if t.TYPE_CHECKING:
    from playwright.sync_api import Browser
    from playwright.sync_api import BrowserContext
    from playwright.sync_api import Page
    from playwright.sync_api import Route

    from .conftest import LiveProxy
    from .conftest import Site

CHROMIUM_PATH = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAUNCH_TIMEOUT_MS = 30_000
ACTION_TIMEOUT_MS = 10_000
HTTP_TIMEOUT_SECONDS = 10
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLIENT_NAME = "Browser Test Client"
USER = "alice@example.com"


def _chromium_problem() -> str | None:
    if not os.access(CHROMIUM_PATH, os.X_OK):
        return f"{CHROMIUM_PATH} is not installed (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


_PROBLEM = _chromium_problem()

pytestmark = [
    # Locally a missing Chromium skips; with CI set, the `browser` fixture fails.
    pytest.mark.skipif(
        _PROBLEM is not None and not os.environ.get("CI"),
        reason=f"browser tests need Chromium: {_PROBLEM}",
    ),
    pytest.mark.timeout(60),
]


# -- the browser ----------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if _PROBLEM is not None:
        pytest.fail(f"{_PROBLEM}; it is required when CI is set", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM_PATH),
            args=CHROMIUM_ARGS,
            timeout=LAUNCH_TIMEOUT_MS,
        )
        try:
            yield browser
        finally:
            browser.close()


def _loopback_only(route: Route) -> None:
    """No request leaves the machine (e.g. the IdP page's CDN stylesheet)."""
    if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
        route.continue_()
    else:
        route.abort()


@pytest.fixture
def new_context(browser: Browser) -> Iterator[Callable[[], BrowserContext]]:
    """Make fresh browser contexts (separate cookie jars); all close at teardown."""
    contexts: list[BrowserContext] = []

    def make() -> BrowserContext:
        context = browser.new_context()
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        context.set_default_navigation_timeout(ACTION_TIMEOUT_MS)
        context.route("**/*", _loopback_only)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_context: Callable[[], BrowserContext]) -> Page:
    return new_context().new_page()


def record_requests(page: Page) -> list[str]:
    """Every URL this page requests from now on, redirect hops included."""
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    return urls


# -- the MCP client's side ------------------------------------------------------
def register(proxy: LiveProxy, *redirect_uris: str) -> str:
    response = requests.post(
        proxy.url + "/oauth2/register",
        json={
            "client_name": CLIENT_NAME,
            "redirect_uris": list(redirect_uris),
            "token_endpoint_auth_method": "none",
        },
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    assert response.status_code == 201, response.text
    return t.cast(str, response.json()["client_id"])


class Authorization(t.NamedTuple):
    url: str
    client_id: str
    redirect_uri: str
    state: str
    verifier: str


def authorization(
    proxy: LiveProxy, client_id: str, redirect_uri: str, scope: str = "mcp"
) -> Authorization:
    state = secrets.token_urlsafe(16)
    verifier = secrets.token_urlsafe(48)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
            "scope": scope,
            "state": state,
            "resource": proxy.settings.resource,
        }
    )
    url = f"{proxy.url}/oauth2/authorize?{query}"
    return Authorization(url, client_id, redirect_uri, state, verifier)


@pytest.fixture
def flow(live_proxy: LiveProxy, client_site: Site) -> Authorization:
    """A registered client whose redirect URI is `client_site`'s /callback."""
    redirect_uri = client_site.url + "/callback"
    client_id = register(live_proxy, redirect_uri)
    return authorization(live_proxy, client_id, redirect_uri, scope="mcp mcp:write")


def hidden_fields(page: Page) -> dict[str, str]:
    fields = page.locator("form input[type=hidden]")
    return {
        t.cast(str, fields.nth(i).get_attribute("name")): t.cast(
            str, fields.nth(i).get_attribute("value")
        )
        for i in range(fields.count())
    }


# -- tests ------------------------------------------------------------------------
def test_allow_signs_in_upstream_and_returns_a_code(
    page: Page,
    live_proxy: LiveProxy,
    client_site: Site,
    flow: Authorization,
    idp_url: str,
    tmp_path: Path,
) -> None:
    """CONSENT-1/CONSENT-2: the page names the client, redirect host and scopes;
    Allow goes to the IdP login, and signing in returns code, state and iss."""
    response = page.goto(flow.url)
    assert response is not None
    assert response.status == 200
    assert response.headers["cache-control"] == "no-store"
    assert page.locator("#client-name").inner_text() == CLIENT_NAME
    assert page.locator("#redirect-host").inner_text() == "127.0.0.1"
    assert page.locator("#redirect-uri").inner_text() == flow.redirect_uri
    assert page.locator("#scopes li").all_inner_texts() == ["mcp", "mcp:write"]
    assert page.locator("#approve").is_visible()
    assert page.locator("#deny").is_visible()

    screenshot = tmp_path / "consent.png"
    page.screenshot(path=str(screenshot), full_page=True)
    data = screenshot.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width > 0
    assert height > 0

    page.locator("#approve").click()
    page.wait_for_url(f"{idp_url}/**")
    page.locator("input[name=sub]").fill(USER)
    page.locator("input[name=sub]").press("Enter")
    page.wait_for_url(f"{client_site.url}/callback?**")
    assert page.locator("#received").is_visible()

    [query] = client_site.queries("/callback")
    assert set(query) == {"code", "state", "iss"}
    assert query["state"] == [flow.state]
    assert query["iss"] == [live_proxy.url]
    [code] = query["code"]
    assert code

    # The browser is bound by plain (non-__Host-) cookies on http loopback.
    cookies = {c["name"]: c for c in page.context.cookies(live_proxy.url)}
    assert cookies["mcp_browser"]["httpOnly"] is True
    assert cookies["mcp_browser"]["sameSite"] == "Lax"
    assert cookies["mcp_browser"]["secure"] is False

    # The code the browser carried is the real thing: the client redeems it.
    token = requests.post(
        live_proxy.url + "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": flow.verifier,
            "client_id": flow.client_id,
            "redirect_uri": flow.redirect_uri,
        },
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    assert token.status_code == 200, token.text
    assert token.json()["token_type"] == "Bearer"


def test_deny_returns_access_denied_to_the_client(
    page: Page,
    live_proxy: LiveProxy,
    client_site: Site,
    flow: Authorization,
    idp_url: str,
) -> None:
    """AUTHZ-13: Deny lands on the client's redirect with access_denied, state, iss."""
    requested = record_requests(page)
    page.goto(flow.url)
    page.locator("#deny").click()
    page.wait_for_url(f"{client_site.url}/callback?**")

    [query] = client_site.queries("/callback")
    assert query["error"] == ["access_denied"]
    assert query["state"] == [flow.state]
    assert query["iss"] == [live_proxy.url]
    assert "code" not in query
    assert not [url for url in requested if url.startswith(idp_url)]


def test_consent_page_cannot_be_framed(
    new_context: Callable[[], BrowserContext],
    live_proxy: LiveProxy,
    client_site: Site,
    attacker_site: Site,
    flow: Authorization,
) -> None:
    """CONSENT-4 / SEC-2: anti-framing and no-referrer headers, first-party only,
    and Chromium really refuses to render the page inside another site's frame."""
    page = new_context().new_page()
    requested = record_requests(page)
    response = page.goto(flow.url)
    assert response is not None
    assert response.status == 200
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "no-referrer"
    # SEC-2: the page loads nothing from anywhere else.
    assert requested
    assert {urlsplit(url).netloc for url in requested} == {
        urlsplit(live_proxy.url).netloc
    }

    attacker_site.pages["/"] = (
        "<!doctype html><title>attacker</title>"
        f'<iframe id="victim" src="{html.escape(flow.url)}"'
        ' width="800" height="600"></iframe>'
        f'<iframe id="control" src="{client_site.url}/frameable"></iframe>'
    )
    framed = new_context().new_page()
    with framed.expect_response(lambda r: "/oauth2/authorize" in r.url) as framed_info:
        framed.goto(attacker_site.url + "/")
    # The consent page itself was served (the block is the browser honouring it).
    assert framed_info.value.status == 200
    assert framed_info.value.headers["x-frame-options"] == "DENY"

    # Control: a frameable page from another origin renders in this setup.
    framed.frame_locator("#control").locator("#received").wait_for()
    # Chromium replaces a frame it refuses to render with its own error page.
    victim_frame = framed.locator("#victim").element_handle().content_frame()
    assert victim_frame is not None
    assert victim_frame.url.startswith("chrome-error://")
    victim = framed.frame_locator("#victim")
    assert victim.locator("#approve").count() == 0
    assert victim.locator("form").count() == 0
    assert victim.locator("#client-name").count() == 0


def test_loopback_redirect_shows_a_warning(
    page: Page, live_proxy: LiveProxy, client_site: Site
) -> None:
    """CIMD-11 (warning part): a loopback redirect URI shows #loopback-warning,
    an https one does not."""
    loopback = client_site.url + "/callback"
    client_id = register(live_proxy, loopback)
    page.goto(authorization(live_proxy, client_id, loopback).url)
    assert page.locator("#loopback-warning").is_visible()
    assert page.locator("#redirect-host").inner_text() == "127.0.0.1"

    remote = "https://app.example.com/oauth/callback"
    client_id = register(live_proxy, remote)
    page.goto(authorization(live_proxy, client_id, remote).url)
    assert page.locator("#redirect-host").inner_text() == "app.example.com"
    assert page.locator("#approve").is_visible()
    assert page.locator("#loopback-warning").count() == 0


def _assert_refused(response: t.Any, page: Page) -> None:
    assert response.status == 403
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert page.locator("#error-code").is_visible()
    assert page.locator("#approve").count() == 0


def test_consent_from_a_browser_without_the_cookie_is_refused(
    new_context: Callable[[], BrowserContext],
    live_proxy: LiveProxy,
    attacker_site: Site,
    flow: Authorization,
    idp_url: str,
) -> None:
    """CONSENT-3: the victim's form, posted by another browser (no cookies) from
    another site → 403 page and no request to the IdP."""
    victim = new_context().new_page()
    victim.goto(flow.url)
    fields = hidden_fields(victim)
    assert set(fields) == {"request", "csrf_token"}

    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in fields.items()
    )
    attacker_site.pages["/"] = (
        "<!doctype html><title>attacker</title>"
        f'<form method="post" action="{live_proxy.url}/oauth2/consent">{inputs}'
        '<button type="submit" name="action" value="approve" id="approve">'
        "Win a prize</button></form>"
    )
    other = new_context().new_page()
    requested = record_requests(other)
    other.goto(attacker_site.url + "/")
    with other.expect_navigation() as navigation:
        other.locator("#approve").click()
    response = navigation.value
    assert response is not None
    assert response.url == live_proxy.url + "/oauth2/consent"
    _assert_refused(response, other)
    assert not [url for url in requested if url.startswith(idp_url)]
    assert other.context.cookies(live_proxy.url) == []

    # Control: the same form still works in the browser it was made for.
    victim.locator("#approve").click()
    victim.wait_for_url(f"{idp_url}/**")


def test_consent_with_another_browsers_token_is_refused(
    new_context: Callable[[], BrowserContext],
    flow: Authorization,
    idp_url: str,
) -> None:
    """CONSENT-3: a browser with its own binding cookie submitting another
    browser's form values (foreign CSRF token) → 403 and no request to the IdP."""
    victim = new_context().new_page()
    victim.goto(flow.url)
    stolen = hidden_fields(victim)

    other = new_context().new_page()
    requested = record_requests(other)
    other.goto(flow.url)
    assert hidden_fields(other)["csrf_token"] != stolen["csrf_token"]
    for name, value in stolen.items():
        other.locator(f"form input[name={name}]").evaluate(
            "(input, value) => { input.value = value; }", value
        )
    with other.expect_navigation() as navigation:
        other.locator("#approve").click()
    response = navigation.value
    assert response is not None
    _assert_refused(response, other)
    assert not [url for url in requested if url.startswith(idp_url)]

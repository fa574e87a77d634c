"""GET /account: sign-in through the IdP, the list of connected apps, revoke, sign out.

The IdP is the real oidc-provider-mock; grants come from real OAuth flows
driven by `OAuthTestClient`. Rules about the session itself (expired,
altered, CSRF) use a session sealed here with the test keyring, so each test
changes exactly one thing.
"""

from __future__ import annotations

import re
import time
import typing as t
import uuid
from dataclasses import replace
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
import requests

from proxy import create_app
from proxy.config.limits import Rate
from proxy.config.settings import Settings
from proxy.front_channel import account_session
from proxy.front_channel.account_session import ACCOUNT_SESSION_SECONDS
from proxy.front_channel.account_session import AccountSession
from proxy.keys.keyring import Keyring
from proxy.observability.events import Event
from tests.oauth_client import OAuthTestClient

from ._helpers import assert_json_error
from ._helpers import assert_page
from ._helpers import closed_port
from ._helpers import resource_status

HTML = {"Accept": "text/html"}
ALICE = "alice@example.com"
BOB = "bob@example.com"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


# -- helpers -------------------------------------------------------------------
def sign_in(oauth: OAuthTestClient, user: str = ALICE) -> t.Any:
    """The whole round trip: /account → IdP login → callback → /account page."""
    start = oauth.client.get("/account", headers=HTML)
    assert start.status_code == 302, start.get_data(as_text=True)
    login = oauth.idp.post(
        start.headers["Location"], data={"sub": user}, allow_redirects=False
    )
    assert login.status_code == 302, login.text
    back = urlsplit(login.headers["Location"])
    done = oauth.client.get(f"{back.path}?{back.query}", headers=HTML)
    assert done.status_code == 302, done.get_data(as_text=True)
    assert done.headers["Location"] == "/account"
    page = oauth.client.get("/account", headers=HTML)
    assert page.status_code == 200, page.get_data(as_text=True)
    return page


def seal(
    settings: Settings, sub: str = ALICE, **changes: t.Any
) -> tuple[str, AccountSession]:
    """A session cookie value as the proxy would set it after signing `sub` in."""
    session = AccountSession(
        sub=sub,
        email=sub,
        email_verified=True,
        name=None,
        sid=uuid.uuid4().hex,
        expires_at=int(time.time()) + ACCOUNT_SESSION_SECONDS,
    )
    session = replace(session, **changes)
    return account_session.seal_session(Keyring(settings.secret_key), session), session


def with_session(
    client: t.Any, settings: Settings, sub: str = ALICE, **changes: t.Any
) -> str:
    """Give the test browser a session for `sub`; return its CSRF token."""
    value, session = seal(settings, sub, **changes)
    client.set_cookie("mcp_account", value, path="/account")
    return account_session.csrf_token(Keyring(settings.secret_key), session)


def csrf_of(page: t.Any) -> str:
    return _CSRF.findall(page.get_data(as_text=True))[0]


def grant_id_of(body: dict[str, t.Any]) -> str:
    return str(body["refresh_token"].split(".")[0])


def grant_exists(app: t.Any, grant_id: str) -> bool:
    return bool(app.extensions["proxy"].store.grant_exists(grant_id))


def heard(app: t.Any) -> list[Event]:
    events: list[Event] = []
    app.extensions["proxy"].events.subscribe(events.append)
    return events


# -- signing in ----------------------------------------------------------------
def test_no_session_redirects_to_the_idp_with_its_own_state_pkce_and_nonce(
    client: t.Any, idp_url: str
) -> None:
    response = client.get("/account", headers=HTML)
    assert response.status_code == 302
    assert response.headers["Location"].startswith(idp_url)
    assert response.headers["Cache-Control"] == "no-store"
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["state"][0].startswith("account.")
    assert query["code_challenge_method"] == ["S256"]
    assert query["nonce"][0]
    assert query["redirect_uri"] == ["http://127.0.0.1:9999/oauth2/callback"]
    cookie = client.get_cookie("mcp_account_login", path="/oauth2/callback")
    assert cookie is not None
    assert cookie.http_only
    assert cookie.same_site == "Lax"
    # Sealed: the state is there, but nobody can read it (or the verifier).
    assert query["state"][0] not in cookie.value


def test_sign_in_sets_a_short_sealed_session_cookie_for_account_only(
    oauth: OAuthTestClient,
) -> None:
    page = sign_in(oauth)
    assert "Connected apps" in page.get_data(as_text=True)
    assert ALICE in page.get_data(as_text=True)
    cookie = oauth.client.get_cookie("mcp_account", path="/account")
    assert cookie is not None
    assert cookie.path == "/account"
    assert cookie.http_only
    assert cookie.same_site == "Lax"
    assert not cookie.secure  # http loopback PUBLIC_URL
    assert 15 * 60 <= ACCOUNT_SESSION_SECONDS <= 30 * 60
    assert cookie.expires is not None
    assert cookie.expires.timestamp() - time.time() <= ACCOUNT_SESSION_SECONDS + 1
    # Sealed, not merely signed: who signed in cannot be read from the cookie.
    assert "alice" not in cookie.value
    # The sign-in cookie is spent.
    assert oauth.client.get_cookie("mcp_account_login", path="/oauth2/callback") is None


def test_cookie_paths_follow_the_apps_mount_point(client: t.Any) -> None:
    """Served under a prefix (SCRIPT_NAME), the cookies name the paths the
    browser really uses, or it would never send them back."""
    response = client.get("/account", base_url="http://localhost/auth/", headers=HTML)
    assert response.status_code == 302
    [cookie] = response.headers.getlist("Set-Cookie")
    assert "Path=/auth/oauth2/callback" in cookie


def test_sign_in_is_audited(oauth: OAuthTestClient, app: t.Any) -> None:
    events = heard(app)
    sign_in(oauth)
    assert [e.fields["sub"] for e in events if e.name == "account.signed_in"] == [ALICE]


def test_callback_in_another_browser_is_refused(
    oauth: OAuthTestClient, app: t.Any
) -> None:
    """Login CSRF: the IdP's answer only finishes the sign-in of the browser that
    started it, so nobody can sign a victim in as themselves."""
    start = oauth.client.get("/account", headers=HTML)
    login = oauth.idp.post(
        start.headers["Location"], data={"sub": ALICE}, allow_redirects=False
    )
    back = urlsplit(login.headers["Location"])
    other = app.test_client()
    response = other.get(f"{back.path}?{back.query}", headers=HTML)
    assert_page(response, 400)
    assert response.mimetype == "text/html"
    assert "back-to-account" in response.get_data(as_text=True)
    assert other.get_cookie("mcp_account", path="/account") is None


def test_callback_with_a_foreign_state_is_refused(oauth: OAuthTestClient) -> None:
    """The browser's sign-in cookie names one state; an answer for another fails."""
    start = oauth.client.get("/account", headers=HTML)
    login = oauth.idp.post(
        start.headers["Location"], data={"sub": ALICE}, allow_redirects=False
    )
    back = urlsplit(login.headers["Location"])
    query = {k: v[0] for k, v in parse_qs(back.query).items()}
    query["state"] = "account.someone-elses-state"
    response = oauth.client.get(back.path, query_string=query, headers=HTML)
    assert_page(response, 400)
    assert oauth.client.get_cookie("mcp_account", path="/account") is None


def test_a_replayed_callback_is_a_clear_page_not_a_5xx(
    oauth: OAuthTestClient,
) -> None:
    """The IdP's code works once: the same answer again is a 400 page."""
    start = oauth.client.get("/account", headers=HTML)
    login = oauth.idp.post(
        start.headers["Location"], data={"sub": ALICE}, allow_redirects=False
    )
    back = urlsplit(login.headers["Location"])
    cookie = oauth.client.get_cookie("mcp_account_login", path="/oauth2/callback")
    assert cookie is not None
    assert oauth.client.get(f"{back.path}?{back.query}").status_code == 302
    # The same browser, its sign-in cookie put back, the same IdP answer.
    oauth.client.set_cookie(cookie.key, cookie.value, path="/oauth2/callback")
    response = oauth.client.get(f"{back.path}?{back.query}", headers=HTML)
    assert_page(response, 400)
    assert response.mimetype == "text/html"


@pytest.mark.parametrize(
    ("error", "status"),
    [("access_denied", 403), ("temporarily_unavailable", 503), ("odd", 400)],
)
def test_an_idp_error_is_a_page(
    oauth: OAuthTestClient, error: str, status: int
) -> None:
    start = oauth.client.get("/account", headers=HTML)
    state = parse_qs(urlsplit(start.headers["Location"]).query)["state"][0]
    response = oauth.client.get(
        "/oauth2/callback",
        query_string={"state": state, "error": error},
        headers=HTML,
    )
    assert_page(response, status)
    assert response.mimetype == "text/html"
    assert "back-to-account" in response.get_data(as_text=True)


def test_user_refused_by_the_allow_list_cannot_sign_in(
    settings: Settings, fake_redis: t.Any, idp_url: str
) -> None:
    app = create_app(
        settings.replace(allowed_email_domains=frozenset({"ok.example"})),
        redis_client=fake_redis,
    )
    oauth = OAuthTestClient(app.test_client())
    sub = f"user-{uuid.uuid4().hex[:8]}"
    requests.put(
        f"{idp_url}/users/{sub}",
        json={"email": "b@other.example", "email_verified": True},
        timeout=5,
    ).raise_for_status()
    start = oauth.client.get("/account", headers=HTML)
    login = oauth.idp.post(
        start.headers["Location"], data={"sub": sub}, allow_redirects=False
    )
    back = urlsplit(login.headers["Location"])
    response = oauth.client.get(f"{back.path}?{back.query}", headers=HTML)
    assert_page(response, 403)
    assert response.mimetype == "text/html"
    assert oauth.client.get_cookie("mcp_account", path="/account") is None


def test_session_of_a_user_the_allow_list_now_refuses_sees_nothing(
    settings: Settings, fake_redis: t.Any
) -> None:
    """A session from before ALLOWED_EMAIL_DOMAINS was tightened stops at once."""
    app = create_app(
        settings.replace(allowed_email_domains=frozenset({"ok.example"})),
        redis_client=fake_redis,
    )
    client = app.test_client()
    with_session(client, settings, "mallory@other.example")
    response = client.get("/account", headers=HTML)
    assert_page(response, 403)
    assert "mallory" not in response.get_data(as_text=True)


def test_idp_down_is_a_503_page(settings: Settings, fake_redis: t.Any) -> None:
    down = settings.replace(upstream_issuer=f"http://127.0.0.1:{closed_port()}")
    client = create_app(down, redis_client=fake_redis).test_client()
    response = client.get("/account", headers=HTML)
    assert_page(response, 503)
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"


# -- the session ---------------------------------------------------------------
def test_expired_session_goes_back_to_the_idp(
    client: t.Any, settings: Settings, idp_url: str
) -> None:
    with_session(client, settings, expires_at=int(time.time()) - 1)
    response = client.get("/account", headers=HTML)
    assert response.status_code == 302
    assert response.headers["Location"].startswith(idp_url)
    # The dead cookie is cleared.
    assert client.get_cookie("mcp_account", path="/account") is None


def test_altered_session_cookie_goes_back_to_the_idp(
    client: t.Any, settings: Settings, idp_url: str
) -> None:
    value, _ = seal(settings)
    flipped = value[:-6] + ("A" if value[-6] != "A" else "B") + value[-5:]
    client.set_cookie("mcp_account", flipped, path="/account")
    response = client.get("/account", headers=HTML)
    assert response.status_code == 302
    assert response.headers["Location"].startswith(idp_url)


def test_session_sealed_with_another_key_is_not_accepted(
    client: t.Any, settings: Settings, idp_url: str
) -> None:
    value, _ = seal(settings.replace(secret_key=bytes(32)))
    client.set_cookie("mcp_account", value, path="/account")
    response = client.get("/account", headers=HTML)
    assert response.status_code == 302
    assert response.headers["Location"].startswith(idp_url)


# -- the list ------------------------------------------------------------------
def test_page_lists_the_users_apps_with_name_scopes_and_times(
    oauth: OAuthTestClient,
) -> None:
    client_id = oauth.register(client_name="Alice's Notes App")["client_id"]
    flow = oauth.login(client_id, ALICE, scope="mcp mcp:write")
    assert oauth.token(flow).status_code == 200
    page = sign_in(oauth).get_data(as_text=True)
    assert "Alice&#39;s Notes App" in page
    assert '<span class="app-scopes"><code>mcp</code> <code>mcp:write</code>' in page
    assert client_id in page
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert re.search(f'class="app-created">{today} [0-9:]+ UTC<', page)
    # Redeeming the code used the grant.
    assert re.search(f'class="app-last-used">{today} [0-9:]+ UTC<', page)
    # A DCR client's name is only what it says about itself.
    assert "app-unverified" in page


def test_page_lists_only_the_signed_in_users_apps(oauth: OAuthTestClient) -> None:
    oauth.tokens(BOB, client_name="Bob Only")
    oauth.tokens(ALICE, client_name="Alice Only")
    page = sign_in(oauth, ALICE).get_data(as_text=True)
    assert "Alice Only" in page
    assert "Bob Only" not in page


def test_client_names_are_escaped(oauth: OAuthTestClient) -> None:
    """Client names are chosen by whoever registers: never markup on our page."""
    oauth.tokens(ALICE, client_name='<script>alert(1)</script><img src=x onerror="y">')
    page = sign_in(oauth).get_data(as_text=True)
    assert "<script>alert(1)" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_no_apps_says_so(oauth: OAuthTestClient) -> None:
    page = sign_in(oauth).get_data(as_text=True)
    assert 'id="no-apps"' in page


def test_account_page_headers_forbid_framing_scripts_and_caching(
    oauth: OAuthTestClient,
) -> None:
    page = sign_in(oauth)
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "form-action 'self'" in csp
    assert "script-src" not in csp  # no scripts at all (default-src 'none')
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"


# -- revoking ------------------------------------------------------------------
def test_revoke_ends_the_grant_its_access_and_refresh_tokens(
    oauth: OAuthTestClient, app: t.Any
) -> None:
    client_id, body = oauth.tokens(ALICE, client_name="Doomed")
    assert resource_status(oauth.client, body["access_token"]) == 200
    page = sign_in(oauth)
    events = heard(app)
    response = oauth.client.post(
        "/account/revoke",
        data={"grant_id": grant_id_of(body), "csrf_token": csrf_of(page)},
        headers=HTML,
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/account"
    assert not grant_exists(app, grant_id_of(body))
    assert resource_status(oauth.client, body["access_token"]) == 401
    assert_json_error(
        oauth.refresh(client_id, body["refresh_token"]), 400, "invalid_grant"
    )
    assert "Doomed" not in oauth.client.get("/account").get_data(as_text=True)
    [audit] = [e for e in events if e.name == "account.grant_revoked"]
    assert audit.fields == {
        "sub": ALICE,
        "client_id": client_id,
        "grant": grant_id_of(body)[:8],
    }
    assert [e.fields["reason"] for e in events if e.name == "grant.revoked"] == [
        "account"
    ]


@pytest.mark.parametrize(
    "csrf", [None, "", "not-the-token", "use-another-sessions-token"]
)
def test_revoke_without_this_sessions_csrf_token_is_forbidden(
    oauth: OAuthTestClient, app: t.Any, settings: Settings, csrf: str | None
) -> None:
    _, body = oauth.tokens(ALICE)
    with_session(oauth.client, settings)
    if csrf == "use-another-sessions-token":
        csrf = with_session(app.test_client(), settings)  # same user, other sign-in
    form = {"grant_id": grant_id_of(body)}
    if csrf is not None:
        form["csrf_token"] = csrf
    response = oauth.client.post("/account/revoke", data=form, headers=HTML)
    assert_page(response, 403)
    assert grant_exists(app, grant_id_of(body))


def test_revoking_another_users_grant_is_refused(
    oauth: OAuthTestClient, app: t.Any, settings: Settings
) -> None:
    _, bobs = oauth.tokens(BOB)
    csrf = with_session(oauth.client, settings, ALICE)
    events = heard(app)
    response = oauth.client.post(
        "/account/revoke",
        data={"grant_id": grant_id_of(bobs), "csrf_token": csrf},
        headers=HTML,
    )
    assert_page(response, 404)
    assert grant_exists(app, grant_id_of(bobs))
    assert resource_status(oauth.client, bobs["access_token"]) == 200
    assert not [e for e in events if e.name == "account.grant_revoked"]
    assert [e.fields["reason"] for e in events if e.name == "account.refused"] == [
        "account_grant_unknown"
    ]


@pytest.mark.parametrize("grant_id", ["", "x" * 200, "{tag}:*", "A" * 22])
def test_revoking_an_unknown_grant_is_a_404_page(
    client: t.Any, settings: Settings, grant_id: str
) -> None:
    csrf = with_session(client, settings)
    response = client.post(
        "/account/revoke",
        data={"grant_id": grant_id, "csrf_token": csrf},
        headers=HTML,
    )
    assert_page(response, 404)
    assert response.mimetype == "text/html"


def test_revoke_without_a_session_is_forbidden(
    oauth: OAuthTestClient, app: t.Any, settings: Settings
) -> None:
    _, body = oauth.tokens(ALICE)
    _, session = seal(settings)
    csrf = account_session.csrf_token(Keyring(settings.secret_key), session)
    response = oauth.client.post(
        "/account/revoke",
        data={"grant_id": grant_id_of(body), "csrf_token": csrf},
        headers=HTML,
    )
    assert_page(response, 403)
    assert grant_exists(app, grant_id_of(body))


def test_revoke_with_an_expired_session_is_forbidden(
    oauth: OAuthTestClient, app: t.Any, settings: Settings
) -> None:
    _, body = oauth.tokens(ALICE)
    csrf = with_session(oauth.client, settings, expires_at=int(time.time()) - 1)
    response = oauth.client.post(
        "/account/revoke",
        data={"grant_id": grant_id_of(body), "csrf_token": csrf},
        headers=HTML,
    )
    assert_page(response, 403)
    assert grant_exists(app, grant_id_of(body))


# -- signing out ---------------------------------------------------------------
def test_sign_out_clears_the_session(oauth: OAuthTestClient, idp_url: str) -> None:
    page = sign_in(oauth)
    response = oauth.client.post(
        "/account/sign-out", data={"csrf_token": csrf_of(page)}, headers=HTML
    )
    assert response.status_code == 200
    assert 'id="signed-out"' in response.get_data(as_text=True)
    assert oauth.client.get_cookie("mcp_account", path="/account") is None
    again = oauth.client.get("/account", headers=HTML)
    assert again.status_code == 302
    assert again.headers["Location"].startswith(idp_url)


def test_sign_out_needs_the_csrf_token(oauth: OAuthTestClient) -> None:
    sign_in(oauth)
    response = oauth.client.post(
        "/account/sign-out", data={"csrf_token": "nope"}, headers=HTML
    )
    assert_page(response, 403)
    assert oauth.client.get_cookie("mcp_account", path="/account") is not None


# -- outages and limits --------------------------------------------------------
def test_redis_down_is_a_503_page(
    client: t.Any, settings: Settings, fake_server: t.Any
) -> None:
    csrf = with_session(client, settings)
    fake_server.connected = False
    for response in (
        client.get("/account", headers=HTML),
        client.post(
            "/account/revoke",
            data={"grant_id": "A" * 22, "csrf_token": csrf},
            headers=HTML,
        ),
    ):
        assert_page(response, 503)
        assert response.mimetype == "text/html"
        assert response.headers["Retry-After"]


def test_account_pages_are_rate_limited_per_ip(
    settings: Settings, fake_redis: t.Any
) -> None:
    limits = replace(
        settings.limits,
        per_ip={**settings.limits.per_ip, "account": Rate(2, 60)},
    )
    client = create_app(
        settings.replace(limits=limits), redis_client=fake_redis
    ).test_client()
    assert [client.get("/account", headers=HTML).status_code for _ in range(3)] == [
        302,
        302,
        429,
    ]

"""POST /oauth2/consent and the consent page: confused-deputy controls."""

from __future__ import annotations

import base64
import json
import typing as t
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest

from proxy import create_app
from proxy.config.env import StaticClient
from proxy.oauth.pkce import s256
from tests.oauth_client import REDIRECT_URI
from tests.oauth_client import OAuthTestClient

from ._helpers import ISSUER
from ._helpers import assert_page
from ._helpers import closed_port
from ._helpers import location_base
from ._helpers import redirect_params

IDP_AUTHORIZE = "/oauth2/authorize"


@pytest.fixture
def client_id(oauth: OAuthTestClient) -> str:
    return str(oauth.register(client_name="Acme MCP Client")["client_id"])


def _goes_upstream(response: t.Any, idp_url: str) -> bool:
    return response.status_code in (302, 303) and response.headers[
        "Location"
    ].startswith(idp_url + IDP_AUTHORIZE)


def _shows_consent(response: t.Any) -> bool:
    return response.status_code == 200 and 'name="csrf_token"' in response.get_data(
        as_text=True
    )


def test_new_client_gets_the_consent_page(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """CONSENT-1: a new DCR client → 200 HTML consent, not a 302 upstream."""
    _, response = oauth.authorize(client_id)
    assert _shows_consent(response)
    assert response.mimetype == "text/html"
    assert "Location" not in response.headers


def test_consent_page_names_client_scopes_and_destination(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """CONSENT-2: the page shows client_name, the scopes and the redirect host."""
    _, response = oauth.authorize(client_id, scope="mcp mcp:write")
    page = response.get_data(as_text=True)
    assert "Acme MCP Client" in page
    assert "<code>mcp</code>" in page
    assert "<code>mcp:write</code>" in page
    assert "127.0.0.1" in page
    assert REDIRECT_URI in page


def test_consent_page_escapes_the_client_name(oauth: OAuthTestClient) -> None:
    """CONSENT-2: a hostile client_name is shown as text, not markup."""
    client_id = oauth.register(client_name="<script>alert(1)</script>")["client_id"]
    _, response = oauth.authorize(client_id)
    page = response.get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page


def test_approve_redirects_upstream_with_303(
    oauth: OAuthTestClient, client_id: str, idp_url: str
) -> None:
    """GEN-3: the redirect answering the consent POST is 303, never 307."""
    flow, _ = oauth.authorize(client_id)
    response = oauth.consent(flow)
    assert response.status_code == 303
    assert _goes_upstream(response, idp_url)
    assert response.headers["Cache-Control"] == "no-store"


def test_deny_redirects_to_client_with_access_denied(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """AUTHZ-13, ISS-1: deny → 303 to the client: access_denied, state, iss."""
    flow, _ = oauth.authorize(client_id, state="deny-state")
    response = oauth.consent(flow, "deny")
    query = redirect_params(response, 303)
    assert location_base(response) == REDIRECT_URI
    assert query["error"] == ["access_denied"]
    assert query["state"] == ["deny-state"]
    assert query["iss"] == [ISSUER]
    assert "code" not in query


@pytest.mark.parametrize(
    "override",
    [{"csrf_token": ""}, {"csrf_token": "forged-token-value"}],
)
def test_missing_or_forged_csrf_is_403_and_nothing_upstream(
    oauth: OAuthTestClient, client_id: str, override: dict[str, str]
) -> None:
    """CONSENT-3: a missing or forged CSRF token → 403, no redirect upstream."""
    flow, _ = oauth.authorize(client_id)
    response = oauth.consent(flow, **override)
    assert_page(response, 403)


def test_csrf_field_absent_is_403(oauth: OAuthTestClient, client_id: str) -> None:
    """CONSENT-3: no csrf_token field at all → 403."""
    flow, _ = oauth.authorize(client_id)
    form = {k: v for k, v in flow.consent_form.items() if k != "csrf_token"}
    response = oauth.client.post("/oauth2/consent", data={**form, "action": "approve"})
    assert_page(response, 403)


def test_csrf_from_another_browser_is_403(
    oauth: OAuthTestClient, app: t.Any, client_id: str
) -> None:
    """CONSENT-3: browser A's form posted from browser B (own cookie) → 403."""
    flow, _ = oauth.authorize(client_id)
    other = OAuthTestClient(app.test_client())
    other.authorize(client_id)  # browser B gets its own binding cookie
    response = other.client.post(
        "/oauth2/consent", data={**flow.consent_form, "action": "approve"}
    )
    assert_page(response, 403)


def test_consent_without_browser_cookie_is_403(
    oauth: OAuthTestClient, app: t.Any, client_id: str
) -> None:
    """CONSENT-3: a form posted by a browser with no binding cookie → 403."""
    flow, _ = oauth.authorize(client_id)
    response = app.test_client().post(
        "/oauth2/consent", data={**flow.consent_form, "action": "approve"}
    )
    assert_page(response, 403)


def test_consent_form_is_usable_once(
    oauth: OAuthTestClient, client_id: str, idp_url: str
) -> None:
    """CONSENT-3: submitting the same approved form twice → 400 the second time."""
    flow, _ = oauth.authorize(client_id)
    assert _goes_upstream(oauth.consent(flow), idp_url)
    assert_page(oauth.consent(flow), 400)


def test_tampered_request_blob_is_refused(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """AUTHZ-17: changing the bound redirect_uri in the form → 400, no redirect."""
    flow, _ = oauth.authorize(client_id)
    data, _, mac = flow.consent_form["request"].partition(".")
    payload = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    payload["redirect_uri"] = "https://evil.example/cb"
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=")
    response = oauth.consent(flow, request=forged.decode() + "." + mac)
    assert_page(response, 400)


def test_extra_redirect_uri_field_is_ignored(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """AUTHZ-17: a redirect_uri added to the consent POST changes nothing."""
    flow, _ = oauth.authorize(client_id)
    response = oauth.consent(flow, redirect_uri="https://evil.example/cb")
    assert response.status_code == 303
    oauth.upstream_login(flow)
    oauth.callback(flow)
    assert flow.location.startswith(REDIRECT_URI + "?")


@pytest.mark.parametrize("action", ["", "maybe"])
def test_unknown_action_is_refused(
    oauth: OAuthTestClient, client_id: str, action: str
) -> None:
    """CONSENT-3: only approve or deny is accepted; anything else is a page."""
    flow, _ = oauth.authorize(client_id)
    assert_page(oauth.consent(flow, action), 400)


def test_client_deleted_before_consent_is_refused(
    oauth: OAuthTestClient, app: t.Any, client_id: str
) -> None:
    """AUTHZ-1: the client is checked again when consent is answered."""
    flow, _ = oauth.authorize(client_id)
    store = app.extensions["proxy"].store
    store.redis.delete(store.keys.client(client_id))
    assert_page(oauth.consent(flow), 400)


def test_consent_and_error_pages_cannot_be_framed(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """CONSENT-4: frame-ancestors 'none' and X-Frame-Options DENY on the pages."""
    _, consent = oauth.authorize(client_id)
    error = oauth.client.get(
        "/oauth2/authorize?client_id=nope", headers={"Accept": "text/html"}
    )
    assert error.mimetype == "text/html"
    for response in (consent, error):
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"


def test_consent_is_remembered_for_the_same_request(
    oauth: OAuthTestClient, client_id: str, idp_url: str
) -> None:
    """CONSENT-8: same client, redirect_uri and scope → straight upstream."""
    flow, _ = oauth.authorize(client_id, scope="mcp")
    oauth.consent(flow)
    _, again = oauth.authorize(client_id, scope="mcp")
    assert _goes_upstream(again, idp_url)


def test_remembered_consent_covers_a_narrower_scope(
    oauth: OAuthTestClient, client_id: str, idp_url: str
) -> None:
    """CONSENT-8: a scope inside what was approved skips the page."""
    flow, _ = oauth.authorize(client_id, scope="mcp mcp:write")
    oauth.consent(flow)
    _, again = oauth.authorize(client_id, scope="mcp")
    assert _goes_upstream(again, idp_url)


def test_wider_scope_asks_again(oauth: OAuthTestClient, client_id: str) -> None:
    """CONSENT-7: approve mcp, then request mcp:write → consent shown."""
    flow, _ = oauth.authorize(client_id, scope="mcp")
    oauth.consent(flow)
    _, wider = oauth.authorize(client_id, scope="mcp mcp:write")
    assert _shows_consent(wider)


def test_other_redirect_uri_asks_again(oauth: OAuthTestClient) -> None:
    """CONSENT-7: a different redirect_uri of the same client → consent shown."""
    other = "http://127.0.0.1:5555/other"
    client_id = oauth.register(redirect_uris=[REDIRECT_URI, other])["client_id"]
    flow, _ = oauth.authorize(client_id)
    oauth.consent(flow)
    _, response = oauth.authorize(client_id, redirect_uri=other)
    assert _shows_consent(response)


def test_another_client_asks_again(oauth: OAuthTestClient, client_id: str) -> None:
    """CONSENT-5: approve client A, then client B in the same browser → shown."""
    flow, _ = oauth.authorize(client_id)
    oauth.consent(flow)
    other = oauth.register()["client_id"]
    _, response = oauth.authorize(other)
    assert _shows_consent(response)


def test_denied_consent_is_not_remembered(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """CONSENT-5: only an approval is recorded."""
    flow, _ = oauth.authorize(client_id)
    oauth.consent(flow, "deny")
    _, response = oauth.authorize(client_id)
    assert _shows_consent(response)


def test_forged_consent_cookie_does_not_count(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """CONSENT-5: the remembered-consent cookie is signed; a forged one is ignored."""
    flow, _ = oauth.authorize(client_id)
    oauth.consent(flow)
    cookie = oauth.client.get_cookie("mcp_consent")
    data, _, mac = cookie.value.partition(".")
    oauth.client.set_cookie("mcp_consent", data + ".AAAA" + mac[4:])
    _, response = oauth.authorize(client_id)
    assert _shows_consent(response)


def test_remembering_can_be_turned_off(
    settings: t.Any, fake_redis: t.Any, idp_url: str
) -> None:
    """CONSENT-1: with CONSENT_REMEMBER_SECONDS=0 every authorization asks."""
    app = create_app(
        settings.replace(consent_remember_seconds=0), redis_client=fake_redis
    )
    oauth = OAuthTestClient(app.test_client())
    client_id = oauth.register()["client_id"]
    flow, _ = oauth.authorize(client_id)
    assert oauth.consent(flow).status_code == 303
    _, response = oauth.authorize(client_id)
    assert _shows_consent(response)


def test_trusted_redirect_uri_skips_the_page_for_a_static_client(
    settings: t.Any, fake_redis: t.Any, idp_url: str
) -> None:
    """CONSENT-1, J15: operator-trusted redirect URIs of a static client skip
    the page (existing static-client configurations keep working)."""
    static = StaticClient(
        client_id="operator-app", redirect_uris=(REDIRECT_URI,), client_name="App"
    )
    app = create_app(
        settings.replace(
            trusted_redirect_uris=frozenset({REDIRECT_URI}), static_clients=(static,)
        ),
        redis_client=fake_redis,
    )
    oauth = OAuthTestClient(app.test_client())
    _, response = oauth.authorize("operator-app")
    assert _goes_upstream(response, idp_url)


def test_trusted_redirect_uri_never_skips_the_page_for_a_dcr_client(
    settings: t.Any, fake_redis: t.Any
) -> None:
    """J15: anyone can register a trusted redirect URI by DCR; the copy of
    ChatGPT's registration still sees the consent page (MCP 2026-07-28:
    "a proxy with one static upstream client MUST obtain consent per client")."""
    chatgpt = "https://chatgpt.com/connector_platform_oauth_redirect"
    app = create_app(
        settings.replace(trusted_redirect_uris=frozenset({REDIRECT_URI, chatgpt})),
        redis_client=fake_redis,
    )
    oauth = OAuthTestClient(app.test_client())
    for uri in (REDIRECT_URI, chatgpt):
        client_id = oauth.register(redirect_uris=[uri])["client_id"]
        _, response = oauth.authorize(client_id, redirect_uri=uri)
        assert _shows_consent(response), uri


def test_consent_cookies_are_host_prefixed_secure_httponly_lax(
    settings: t.Any, fake_redis: t.Any
) -> None:
    """CONSENT-6: __Host- prefix, Secure, HttpOnly, SameSite=Lax under https."""
    app = create_app(
        settings.replace(
            public_url="https://as.example", resource="https://as.example/mcp"
        ),
        redis_client=fake_redis,
    )
    oauth = OAuthTestClient(app.test_client(use_cookies=False))
    client_id = oauth.register()["client_id"]
    flow, response = oauth.authorize(client_id)
    browser = response.headers["Set-Cookie"]
    approve = oauth.client.post(
        "/oauth2/consent",
        data={**flow.consent_form, "action": "approve"},
        headers={"Cookie": browser.split(";", 1)[0]},
    )
    assert approve.status_code == 303
    cookies = approve.headers.getlist("Set-Cookie") + [browser]
    names = {c.split("=", 1)[0] for c in cookies}
    assert names == {"__Host-mcp_browser", "__Host-mcp_consent"}
    for cookie in cookies:
        attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
        assert {"secure", "httponly", "samesite=lax", "path=/"} <= attributes
        assert not any(a.startswith("domain=") for a in attributes)


def test_upstream_state_is_created_only_after_consent(
    oauth: OAuthTestClient, app: t.Any, client_id: str
) -> None:
    """UP-1: GET /authorize stores no transaction; two flows → two states."""
    store = app.extensions["proxy"].store
    flow_a, _ = oauth.authorize(client_id)
    flow_b, _ = oauth.authorize(client_id)
    assert store.redis.keys(store.keys.txn("*")) == []
    oauth.consent(flow_a)
    oauth.consent(flow_b)
    states = [
        parse_qs(urlsplit(f.upstream_url).query)["state"][0] for f in (flow_a, flow_b)
    ]
    assert states[0] != states[1]
    assert len(store.redis.keys(store.keys.txn("*"))) == 2


def test_upstream_request_uses_static_client_own_callback_and_pkce(
    oauth: OAuthTestClient, client_id: str
) -> None:
    """UP-4: static client_id, the proxy callback, S256 PKCE, and a nonce."""
    flow, _ = oauth.authorize(client_id)
    oauth.consent(flow)
    query = parse_qs(urlsplit(flow.upstream_url).query)
    assert query["client_id"] == ["proxy-client"]
    assert query["redirect_uri"] == [ISSUER + "/oauth2/callback"]
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    # The proxy's own PKCE pair, not the client's challenge passed through.
    assert query["code_challenge"][0] != s256(flow.verifier)
    assert query["nonce"][0]
    assert query["state"][0] != "client-state"


def test_idp_down_at_approval_redirects_temporarily_unavailable(
    settings: t.Any, fake_redis: t.Any
) -> None:
    """AUTHZ-14: IdP unreachable → 303 to the client, temporarily_unavailable."""
    app = create_app(
        settings.replace(upstream_issuer=f"http://127.0.0.1:{closed_port()}"),
        redis_client=fake_redis,
    )
    oauth = OAuthTestClient(app.test_client())
    client_id = oauth.register()["client_id"]
    flow, _ = oauth.authorize(client_id)
    response = oauth.consent(flow)
    query = redirect_params(response, 303)
    assert location_base(response) == REDIRECT_URI
    assert query["error"] == ["temporarily_unavailable"]
    assert query["state"] == ["client-state"]
    assert query["iss"] == [ISSUER]
